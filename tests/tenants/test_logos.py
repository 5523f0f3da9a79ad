"""What counts as a logo (tenants/logos.py): decided from the bytes alone; PNG, JPEG and
WebP that decode whole, at most 1 MB and 4096 pixels a side; SVG and anything else
refused with its own code. Also the administration pages' fixed facts that mirror
other parts (the scopes in words, the days kept after a contract ends)."""

from __future__ import annotations

import hashlib
import io
import zlib

import pytest
from PIL import Image

from konsil.compliance.retention.policy import CONTACT_DAYS_AFTER_CONTRACT
from konsil.platform.core import errors
from konsil.tenants import admin_pages, logos
from konsil.tenants.schemas import SCOPES


def encoded(fmt: str, size: tuple[int, int] = (64, 32), mode: str = "RGB", **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, "#1f5fbf" if mode != "P" else 3).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def refusal(data: bytes) -> tuple[int, str]:
    with pytest.raises(errors.AppError) as caught:
        logos.check(data)
    return caught.value.status, caught.value.code


@pytest.mark.parametrize(
    ("fmt", "mode", "content_type"),
    [
        ("PNG", "RGB", "image/png"),
        ("PNG", "RGBA", "image/png"),
        ("PNG", "P", "image/png"),
        ("JPEG", "RGB", "image/jpeg"),
        ("WEBP", "RGB", "image/webp"),
        ("WEBP", "RGBA", "image/webp"),
    ],
)
def test_png_jpeg_and_webp_are_logos(fmt: str, mode: str, content_type: str) -> None:
    data = encoded(fmt, mode=mode)
    logo = logos.check(data)
    assert (logo.content_type, logo.width, logo.height) == (content_type, 64, 32)
    assert logo.sha256 == hashlib.sha256(data).hexdigest() and logo.image == data


def test_an_image_of_exactly_the_limits_is_a_logo() -> None:
    assert logos.check(encoded("PNG", size=(logos.MAX_SIDE, 1))).width == logos.MAX_SIDE
    # Exactly 1 MB: a PNG padded with an ancillary chunk decoders skip.
    data = encoded("PNG")
    pad = logos.MAX_BYTES - len(data) - 12
    chunk = b"zzPd" + b"\0" * pad
    padded = data[:-12] + pad.to_bytes(4, "big") + chunk + zlib.crc32(chunk).to_bytes(4, "big") + data[-12:]
    assert len(padded) == logos.MAX_BYTES
    assert logos.check(padded).content_type == "image/png"
    assert refusal(padded[:-12] + b"\0" + padded[-12:]) == (413, "too_large")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty"),
        (b"Dear clinic, this is a letter.\n", "not_an_image"),
        (b"%PDF-1.7\n", "not_an_image"),
        (b"<html><script>alert(1)</script></html>", "not_an_image"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "svg_refused"),
        (b'\xef\xbb\xbf<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "svg_refused"),
        (b"\n <!DOCTYPE svg><svg/>", "svg_refused"),
        (b"\x89PNG\r\n\x1a\n", "not_an_image"),
        (b"\xff\xd8\xff\xe0" + b"\0" * 40, "not_an_image"),
        (b"RIFF\0\0\0\0WEBPVP8 ", "not_an_image"),
    ],
)
def test_what_is_not_a_logo_is_refused_with_its_own_code(data: bytes, code: str) -> None:
    assert refusal(data) == (400, code)


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "ICO", "PPM"])
def test_other_image_formats_are_refused(fmt: str) -> None:
    assert refusal(encoded(fmt)) == (400, "not_an_image")


def test_an_image_cut_short_or_damaged_is_refused() -> None:
    png, jpeg = encoded("PNG", size=(300, 200)), encoded("JPEG", size=(300, 200))
    assert refusal(png[: len(png) // 2]) == (400, "not_an_image")
    assert refusal(jpeg[: len(jpeg) // 2]) == (400, "not_an_image")
    damaged = png[:40] + bytes(b ^ 0xFF for b in png[40:80]) + png[80:]
    assert refusal(damaged) == (400, "not_an_image")


def test_a_file_named_and_typed_as_an_image_is_judged_by_its_bytes() -> None:
    # A PNG's signature in front of a JPEG: the bytes say PNG, and as a PNG it does not decode.
    assert refusal(b"\x89PNG\r\n\x1a\n" + encoded("JPEG")) == (400, "not_an_image")


def test_too_many_pixels_are_refused_before_decoding() -> None:
    assert refusal(encoded("PNG", size=(logos.MAX_SIDE + 1, 1))) == (400, "image_dimensions")
    # A small file that would decode into a huge picture (a "decompression bomb").
    bomb = encoded("PNG", size=(10_000, 10_000), mode="1", optimize=True)
    assert len(bomb) < logos.MAX_BYTES
    with pytest.warns(Image.DecompressionBombWarning):  # Pillow warns; the size check refuses
        assert refusal(bomb) == (400, "image_dimensions")
    bomb = encoded("PNG", size=(14_000, 14_000), mode="1", optimize=True)
    assert refusal(bomb) == (400, "image_dimensions")  # Pillow refuses it itself


def test_more_than_1_mb_is_refused() -> None:
    assert refusal(b"\x89PNG\r\n\x1a\n" + b"\0" * logos.MAX_BYTES) == (413, "too_large")


def test_every_scope_of_the_api_is_described_in_words() -> None:
    assert tuple(admin_pages.SCOPE_WORDS) == SCOPES


def test_the_settings_page_names_the_day_the_purge_deletes() -> None:
    assert admin_pages.KEPT_AFTER_CONTRACT.days == CONTACT_DAYS_AFTER_CONTRACT
