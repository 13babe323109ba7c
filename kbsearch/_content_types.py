"""File types recognised by their first bytes: the one place kbsearch knows magic numbers.

Used to check what people upload: attachments of a question (`kbsearch.peers.service`: the content
must be the type it claims) and photos shown by the page (`kbsearch.web`: only types a browser shows).
"""

from __future__ import annotations

from collections.abc import Callable

_HEIF_BRANDS = (b"heic", b"heix", b"mif1", b"msf1", b"hevc")

#: Content type -> test of a file's first bytes.
SIGNATURES: dict[str, Callable[[bytes], bool]] = {
    "image/png": lambda b: b[:8] == b"\x89PNG\r\n\x1a\n",
    "image/jpeg": lambda b: b[:3] == b"\xff\xd8\xff",
    "image/gif": lambda b: b[:6] in (b"GIF87a", b"GIF89a"),
    "image/webp": lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP",
    "image/heic": lambda b: b[4:8] == b"ftyp" and b[8:12] in _HEIF_BRANDS,
    "application/pdf": lambda b: b[:5] == b"%PDF-",
}
#: Image types every browser shows inline.
WEB_IMAGES = ("image/png", "image/jpeg", "image/gif", "image/webp")


def sniff(data: bytes) -> str | None:
    """The content type of ``data`` from its first bytes (one of `SIGNATURES`), or None."""
    return next((ctype for ctype, test in SIGNATURES.items() if test(data)), None)


def image_type(data: bytes) -> str | None:
    """The MIME type of a PNG, JPEG, GIF or WebP image from its first bytes (None otherwise)."""
    ctype = sniff(data)
    return ctype if ctype in WEB_IMAGES else None


def contradicts(data: bytes, ctype: str) -> bool:
    """Whether ``data`` is not what ``ctype`` claims; False for types without a signature (text)."""
    test = SIGNATURES.get(ctype)
    return test is not None and not test(data)
