"""The 500 page, which no request from outside can reach on a running service (every
failure found there has its own status): a handler that fails unexpectedly shows a
browser the error page in its language, with no trace, and a program the JSON error."""

from __future__ import annotations

from litestar import Litestar, get
from litestar.testing import TestClient

from konsil.platform.core.errors import EXCEPTION_HANDLERS
from konsil.platform.pages.i18n import gettext
from konsil.platform.pages.rendering import for_people, remember_language, template_config


@get("/broken", include_in_schema=False)
async def broken() -> str:
    raise RuntimeError("secret detail from deep inside")


def app() -> Litestar:
    return Litestar(
        route_handlers=[broken],
        exception_handlers=for_people(EXCEPTION_HANDLERS),
        template_config=template_config(),
        before_send=[remember_language],
        debug=False,
    )


def test_an_unexpected_failure_is_a_page_for_people_and_json_for_programs() -> None:
    with TestClient(app()) as client:
        for locale, accept_language in (("en", "en-GB"), ("nb", "nb-NO"), ("de", "de-DE"), ("nl", "nl-NL")):
            page = client.get("/broken", headers={"accept": "text/html", "accept-language": accept_language})
            assert page.status_code == 500
            assert page.headers["content-type"].startswith("text/html")
            title = gettext(locale, "Something went wrong on our side")
            assert f'<html lang="{locale}">' in page.text and f"<h1>{title}</h1>" in page.text
            assert "secret detail" not in page.text and "RuntimeError" not in page.text and "Traceback" not in page.text
        answer = client.get("/broken", headers={"accept": "application/json"})
        assert answer.status_code == 500
        assert answer.json() == {"error": "internal", "message": "something went wrong on our side"}
