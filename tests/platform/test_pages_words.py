"""The words the signup and login pages use for regions and web addresses, and the API
document as the packaged Swagger UI reads it."""

from __future__ import annotations

from konsil.platform.control.pages import suggest_slug
from konsil.platform.pages import api_docs, jurisdictions


def test_a_region_is_named_by_its_law_never_by_its_id() -> None:
    assert jurisdictions.kind_of("eu", "anything") == "eu"
    assert jurisdictions.kind_of("de", "EU/EEA (GDPR)") == "eu"
    assert jurisdictions.kind_of("va", "United States (HIPAA)") == "us"
    assert jurisdictions.kind_of("zz", "nowhere") == ""
    assert jurisdictions.words("us", "United States").name == "United States"
    other = jurisdictions.words("zz", "Switzerland (revFADP)")
    assert other.name == "Switzerland (revFADP)" and not other.translate


def test_the_web_address_suggested_from_a_name() -> None:
    assert suggest_slug("Legesenteret Ås Øst") == "legesenteret-as-ost"
    assert suggest_slug("Praxis Dr. Müller & Söhne") == "praxis-dr-muller-sohne"
    assert suggest_slug("Æ") == ""  # too short: the person chooses one
    assert len(suggest_slug("x" * 80)) == 40


def test_the_document_in_openapi_30_terms() -> None:
    document = {
        "openapi": "3.1.0",
        "components": {
            "schemas": {
                "A": {
                    "properties": {
                        "n": {"oneOf": [{"type": "integer"}, {"type": "null"}]},
                        "r": {"oneOf": [{"$ref": "#/components/schemas/B"}, {"type": "null"}]},
                        "k": {"const": "x"},
                        "t": {"type": ["string", "null"]},
                    }
                }
            }
        },
    }
    converted = api_docs.as_openapi_30(document)
    props = converted["components"]["schemas"]["A"]["properties"]
    assert converted["openapi"] == "3.0.3"
    assert props["n"] == {"type": "integer", "nullable": True}
    assert props["r"] == {"allOf": [{"$ref": "#/components/schemas/B"}], "nullable": True}
    assert props["k"] == {"enum": ["x"]}
    assert props["t"] == {"type": "string", "nullable": True}
    assert document["openapi"] == "3.1.0", "the original is left as it was"
