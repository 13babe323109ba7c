"""File types by their first bytes, in one place for the attachments of questions and the photos
of the page."""

from __future__ import annotations

import pytest

from kbsearch._content_types import SIGNATURES, WEB_IMAGES, contradicts, image_type, sniff

SAMPLES = {
    "image/png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    "image/jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    "image/gif": b"GIF89a\x01\x00\x01\x00",
    "image/webp": b"RIFF\x24\x00\x00\x00WEBPVP8 ",
    "image/heic": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00",
    "application/pdf": b"%PDF-1.7\n%\xe2\xe3",
}


def test_every_signature_has_a_sample() -> None:
    assert set(SAMPLES) == set(SIGNATURES)


@pytest.mark.parametrize("ctype", list(SAMPLES))
def test_each_type_is_recognised_and_only_as_itself(ctype: str) -> None:
    data = SAMPLES[ctype]
    assert sniff(data) == ctype
    assert not contradicts(data, ctype)
    assert all(contradicts(data, other) for other in SIGNATURES if other != ctype)
    assert image_type(data) == (ctype if ctype in WEB_IMAGES else None)


@pytest.mark.parametrize("data", [b"", b"hello", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"GIF90a", b"<svg/>"])
def test_other_bytes_are_nothing(data: bytes) -> None:
    assert sniff(data) is None and image_type(data) is None
    assert contradicts(data, "image/png") and not contradicts(data, "text/plain")
