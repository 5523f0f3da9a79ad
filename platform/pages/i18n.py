"""The languages of every page a visitor or member sees: English, Norwegian Bokmål,
German and Dutch, from standard gettext catalogs (Babel).

Each area keeps its own catalogs next to its pages (``<area>/locale/<lang>/LC_MESSAGES/
*.po``, one file per group of pages); they are read once and merged per language. The
message ids are the English texts: a page marks them with ``_()`` in its template,
``tr(request, "…")`` or ``N_("…")`` in Python, and ``t("…")`` in its script. Placeholders
are ``%(name)s`` everywhere.

Which language a request gets: the person's own choice (the ``lang`` query parameter,
then remembered in a cookie), else the first of the browser's languages that Konsil
speaks, else the organisation's default, else English.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from babel import Locale
from babel.messages.extract import extract, extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LOCALES: tuple[str, ...] = ("en", "nb", "de", "nl")
DEFAULT_LOCALE = "en"
# Each language named in itself, for the language picker.
LANGUAGE_NAMES: Mapping[str, str] = {"en": "English", "nb": "Norsk bokmål", "de": "Deutsch", "nl": "Nederlands"}
LANG_COOKIE = "konsil_lang"
LANG_QUERY = "lang"
# Browser language tags that map onto a language Konsil speaks.
_ALIASES = {"no": "nb", "nn": "nb", "nb": "nb", "de": "de", "nl": "nl", "en": "en"}

# The folders whose catalogs make up the product's messages (each area registers its own).
_CATALOG_DIRS: list[Path] = [Path(__file__).resolve().parent / "locale"]
# Scripts whose ``t("…")`` messages are handed to the browser with each page.
_SCRIPT_DIRS: list[Path] = [Path(__file__).resolve().parent / "static"]

# Keywords of the extractor, shared with the catalog check (tests/platform/test_catalogs_i18n.py).
PYTHON_KEYWORDS: dict[str, Any] = {"_": None, "N_": None, "gettext": None, "ngettext": (1, 2), "tr": (2,)}
SCRIPT_KEYWORDS: dict[str, Any] = {"t": None}


def N_(message: str) -> str:
    """Marks a message for the catalog where it is defined; it is translated where shown."""
    return message


def register_catalogs(folder: Path, scripts: Path | None = None) -> None:
    """An area adds its ``locale`` folder (and the static folder of its scripts)."""
    if folder not in _CATALOG_DIRS:
        _CATALOG_DIRS.append(folder)
        translations.cache_clear()
    if scripts is not None and scripts not in _SCRIPT_DIRS:
        _SCRIPT_DIRS.append(scripts)
        script_strings.cache_clear()


def catalog_dirs() -> tuple[Path, ...]:
    return tuple(_CATALOG_DIRS)


def script_dirs() -> tuple[Path, ...]:
    return tuple(_SCRIPT_DIRS)


def po_files(locale: str) -> list[Path]:
    found: list[Path] = []
    for folder in _CATALOG_DIRS:
        found.extend(sorted((folder / locale / "LC_MESSAGES").glob("*.po")))
    return found


@functools.cache
def translations(locale: str) -> Translations:
    """All catalogs of one language merged (compiled in memory; English is the ids)."""
    merged = Translations()
    if locale == DEFAULT_LOCALE:
        return merged
    for path in po_files(locale):
        with path.open("rb") as handle:
            catalog = read_po(handle, locale=locale)
        buffer = io.BytesIO()
        write_mo(buffer, catalog, use_fuzzy=False)
        buffer.seek(0)
        merged.merge(Translations(buffer))
    return merged


def gettext(locale: str, message: str, **params: Any) -> str:
    text = translations(locale).gettext(message) if message else message
    return text % params if params else text


def ngettext(locale: str, singular: str, plural: str, n: int, **params: Any) -> str:
    text = translations(locale).ngettext(singular, plural, n)
    return text % {"num": n, **params}


@functools.cache
def _script_ids() -> tuple[str, ...]:
    ids: set[str] = set()
    for folder in _SCRIPT_DIRS:
        for path in sorted(folder.glob("*.js")):
            with path.open("rb") as handle:
                for _lineno, message, _comments, _context in extract(
                    "javascript", handle, keywords=SCRIPT_KEYWORDS, comment_tags=()
                ):
                    if isinstance(message, str):
                        ids.add(message)
    return tuple(sorted(ids))


@functools.cache
def script_strings(locale: str) -> dict[str, str]:
    """The translations of every message the pages' scripts show, for one language."""
    if locale == DEFAULT_LOCALE:
        return {}
    found = translations(locale)
    return {msgid: found.gettext(msgid) for msgid in _script_ids() if found.gettext(msgid) != msgid}


_TAG = re.compile(r"^\s*([A-Za-z]{1,8})(?:[-_][A-Za-z0-9]{1,8})*\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*$")


def from_accept_language(header: str) -> str | None:
    """The best language Konsil speaks among the browser's (``Accept-Language``)."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:20]):
        match = _TAG.match(part)
        if not match:
            continue
        try:
            quality = float(match.group(2)) if match.group(2) else 1.0
        except ValueError:
            continue
        lang = _ALIASES.get(match.group(1).lower())
        if lang and quality > 0:
            ranked.append((-quality, position, lang))
    return min(ranked)[2] if ranked else None


def choose(chosen: str | None, accept_language: str | None, org_default: str | None) -> str:
    if chosen is not None and chosen in LOCALES:
        return chosen
    if accept_language:
        found = from_accept_language(accept_language)
        if found:
            return found
    if org_default is not None and org_default in LOCALES:
        return org_default
    return DEFAULT_LOCALE


def babel_locale(locale: str) -> Locale:
    return Locale.parse({"nb": "nb_NO", "de": "de_DE", "nl": "nl_NL", "en": "en_GB"}.get(locale, "en_GB"))


def every_message_id(sources: Iterable[tuple[Path, str]]) -> set[str]:
    """Message ids in the given (folder, method) sources: what the catalogs must translate."""
    found: set[str] = set()
    for folder, method in sources:
        pattern = {"jinja2": "**.html", "python": "**.py", "javascript": "**.js"}[method]
        keywords = {"javascript": SCRIPT_KEYWORDS, "python": PYTHON_KEYWORDS}.get(method, PYTHON_KEYWORDS)
        options = {"jinja2": {"extensions": "jinja2.ext.i18n"}}.get(method, {})
        for _file, _line, message, _comments, _context in extract_from_dir(
            str(folder), method_map=[(pattern, method)], options_map={pattern: options}, keywords=keywords
        ):
            if isinstance(message, str):
                found.add(message)
            elif isinstance(message, tuple) and isinstance(message[0], str):
                found.add(message[0])  # a plural: the catalog knows it by its singular
    return found
