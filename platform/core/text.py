"""One validator for every text value a person or a client sends.

Refused everywhere: C0 controls (U+0000-U+001F), DEL, C1 controls (U+0080-U+009F) and
unpaired surrogates (msgspec's JSON decoder already refuses those; the pattern also
covers values built in code). PostgreSQL cannot store a NUL, logs and pages must not
carry control characters, and a label of only spaces names nothing. Free text that
may span lines (notes) keeps tab, line feed and carriage return.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

# One character of single-line text: no controls, no surrogates, no angle brackets
# (names are shown in pages and e-mails).
LINE_CHAR = r"[^\x00-\x1f\x7f-\x9f\ud800-\udfff<>]"
# One character of multi-line text: tab, LF and CR allowed.
MULTILINE_CHAR = r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]"
# At least one character that is not a space.
_NOT_BLANK = r"(?!\s*\Z)"

# \Z, not $: "$" also matches before a final line feed.
LINE_PATTERN = rf"^{_NOT_BLANK}{LINE_CHAR}*\Z"
# The same line, or nothing at all (an optional label whose absence is "").
OPTIONAL_LINE_PATTERN = rf"^(?:{_NOT_BLANK}{LINE_CHAR}*)?\Z"
MULTILINE_PATTERN = rf"^{MULTILINE_CHAR}*\Z"


def line(max_length: int, min_length: int = 1, description: str | None = None) -> Any:
    """A single line of text: no control characters, not only spaces."""
    return Annotated[
        str,
        msgspec.Meta(min_length=min_length, max_length=max_length, pattern=LINE_PATTERN, description=description),
    ]


def multiline(max_length: int, description: str | None = None) -> Any:
    """Free text over several lines (tab, LF, CR kept); no other control characters."""
    return Annotated[str, msgspec.Meta(max_length=max_length, pattern=MULTILINE_PATTERN, description=description)]


_LINE = re.compile(LINE_PATTERN)


def is_clean_line(value: str) -> bool:
    """The same rule for values that arrive outside a msgspec Struct (path or query)."""
    return _LINE.search(value) is not None


# An e-mail address: a local part of printable characters (no controls, spaces,
# surrogates or the characters that end an address in a header), a dotted host name.
EMAIL_PATTERN = (
    r"^[^@\s<>\"(),;:\x00-\x1f\x7f-\x9f\ud800-\udfff]{1,64}"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+\Z"
)
Email = Annotated[str, msgspec.Meta(max_length=254, pattern=EMAIL_PATTERN, description="an e-mail address")]
