"""The shared text validator: controls, surrogates, blank labels and trailing line feeds refused."""

from __future__ import annotations

import msgspec
import pytest

from konsil.platform.core.text import is_clean_line, line, multiline


class Form(msgspec.Struct):
    name: line(20)  # type: ignore[valid-type]
    note: multiline(50) = ""  # type: ignore[valid-type]


@pytest.mark.parametrize(
    "value",
    ["x\x00", "\x00", "a\x1fb", "a\x7f", "a\x85b", "a\x9f", "ab\n", "   ", "\u00a0\t", "<b>", "x" * 21, ""],
)
def test_line_refuses(value: str) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(msgspec.json.encode({"name": value}), type=Form)
    assert not is_clean_line(value) or len(value) > 20


@pytest.mark.parametrize("value", ["Åse Ødegård", " x ", "Dr. O'Neil-Smith", "李小龙", "x" * 20])
def test_line_accepts(value: str) -> None:
    assert msgspec.json.decode(msgspec.json.encode({"name": value}), type=Form).name == value
    assert is_clean_line(value)


def test_multiline_keeps_line_breaks_only() -> None:
    assert msgspec.json.decode(b'{"name":"a","note":"one\\r\\ntwo\\tthree"}', type=Form).note == "one\r\ntwo\tthree"
    for bad in ('"a\\u0000"', '"a\\u000b"', '"a\\u0085"'):
        with pytest.raises(msgspec.ValidationError):
            msgspec.json.decode(b'{"name":"a","note":' + bad.encode() + b"}", type=Form)


def test_unpaired_surrogate_is_refused() -> None:
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(b'{"name":"\\ud800x"}', type=Form)
    assert not is_clean_line("a\ud800")
