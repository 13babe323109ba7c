"""Text from outside made safe in one place: what a control character becomes on the way in and out.

On the way in (API fields, questions, escalations, documents) `clean_text` normalises (NFKC) and
turns control, format and unpaired-surrogate characters into spaces, so "only NUL characters" is as
empty as "only spaces".  On the way out to a terminal `terminal_safe` shows such characters as
visible escapes (a question can then neither clear the screen nor set the window title), and
`json_safe` does the same inside JSON text without changing what the JSON decodes to.
"""

from __future__ import annotations

import unicodedata

#: Non-printable characters kept on the way in: line breaks and tabs of multi-line text.
_KEEP = "\n\t"


def _printable(ch: str) -> bool:
    return ch.isprintable() or ch in _KEEP


def clean_text(value: str) -> str:
    """``value`` NFKC-normalised, line breaks as ``\\n``, other control/format/surrogate characters
    (not tab) as spaces, stripped.

    The result may be empty: callers decide whether that is an error (it usually is).
    """
    text = unicodedata.normalize("NFKC", value)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not all(map(_printable, text)):
        text = "".join(ch if _printable(ch) else " " for ch in text)
    return text.strip()


def is_blank(value: str) -> bool:
    """Whether ``value`` holds nothing but whitespace and control/format characters (nothing to show)."""
    return not clean_text(value)


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def terminal_safe(text: object, *, multiline: bool = False) -> str:
    """``text`` for a terminal: control and format characters shown as ``\\xNN`` escapes, never sent raw.

    Line breaks are kept where ``multiline`` (a report, an answer body), else shown as spaces (one
    line of a listing must stay one line); tabs become spaces.
    """
    text = str(text)
    if all(ch.isprintable() for ch in text):
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif ch == "\n":
            out.append("\n" if multiline else " ")
        elif ch == "\t":
            out.append(" ")
        else:
            out.append(_escape(ch))
    return "".join(out)


def _json_escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def json_safe(dumped: str) -> str:
    """A ``json.dumps`` result with every non-printable character except newline written as a ``\\u`` escape.

    ``ensure_ascii=False`` leaves C1 controls, bidi overrides and line separators raw; escaped, the
    JSON decodes to the same value but cannot drive a terminal.  (Outside strings JSON only has
    printable characters and the newlines of indentation.)
    """
    if all(ch.isprintable() or ch == "\n" for ch in dumped):
        return dumped
    return "".join(ch if ch.isprintable() or ch == "\n" else _json_escape(ch) for ch in dumped)
