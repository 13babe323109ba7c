"""Reading a request: the caller's identity, a size-checked JSON body or form, typed and cleaned
fields, an escalation id, a photo.  Anything malformed is a `BadRequest` (400), never a 500."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Request

from .._content_types import image_type
from .._text import clean_text
from ..config import WebConfig
from ..errors import KbsearchError
from ._auth import Authenticator, Identity

_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


class BadRequest(KbsearchError):
    """The request body or a parameter is not what the endpoint takes."""


def parse_json(raw: bytes, what: str) -> Any:
    """JSON from a request; anything json.loads refuses (bad UTF-8 or syntax, nesting too deep for the
    parser, integers of more than 4300 digits) is a `BadRequest`, never a 500."""
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise BadRequest(f"{what} is nested too deeply") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadRequest(f"{what} is not valid JSON") from None
    except ValueError:  # int() refuses more than sys.get_int_max_str_digits() digits
        raise BadRequest(f"{what} holds a number with too many digits") from None


class RequestInputs:
    """`WebApp`'s request readers (a base class; ``auth`` and ``cfg`` are the app's)."""

    auth: Authenticator
    cfg: WebConfig

    def identity(self, request: Request) -> Identity:
        return self.auth.identify(request.headers)

    def body(self, request: Request, *, form: bool = False) -> dict[str, Any]:
        """The JSON object of a request (or, where ``form``, the fields of a multipart form), size-checked."""
        if form and request.mimetype == "multipart/form-data":
            return {k: v for k, v in request.form.items()}
        if request.mimetype != "application/json":
            raise BadRequest("send a JSON object with Content-Type: application/json"
                             + (" (or multipart/form-data with a photo)" if form else ""))
        length = request.content_length
        if length is not None and length > self.cfg.max_json_bytes:
            raise RequestEntityTooLarge()
        raw = request.get_data(cache=False)
        if len(raw) > self.cfg.max_json_bytes:
            raise RequestEntityTooLarge()
        data = parse_json(raw, "the request body")
        if not isinstance(data, dict):
            raise BadRequest("the request body must be a JSON object")
        return data

    @staticmethod
    def text_field(data: dict[str, Any], name: str, *, required: bool = True, max_chars: int = 20_000) -> str | None:
        """Field ``name`` as clean text (`clean_text`: NFKC, no control characters or lone surrogates).

        Text that is empty once cleaned (only spaces, NUL or other control characters) counts as missing.
        """
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise BadRequest(f"'{name}' must be text")
        if value is not None and len(value) > 4 * max_chars:
            raise BadRequest(f"'{name}' is too long (at most {max_chars} characters)")
        text = clean_text(value) if value is not None else ""
        if not text:
            if required:
                raise BadRequest(f"'{name}' is required")
            return None
        if len(text) > max_chars:
            raise BadRequest(f"'{name}' is too long (at most {max_chars} characters)")
        return text

    @staticmethod
    def int_field(data: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
        value = data.get(name, default)
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value) <= 20:
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise BadRequest(f"'{name}' must be a whole number from {lo} to {hi}")
        return value

    @staticmethod
    def bool_field(data: dict[str, Any], name: str, default: bool = False) -> bool:
        value = data.get(name, default)
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        if not isinstance(value, bool):
            raise BadRequest(f"'{name}' must be true or false")
        return value

    def group_field(self, data: dict[str, Any]) -> str | None:
        group = self.text_field(data, "group", required=False, max_chars=100)
        if group is not None and not re.match(r"^[\w][\w .:@/+-]{0,99}$", group):
            raise BadRequest("'group' must be a group name (letters, digits, spaces, . : @ / + - _)")
        return group

    @staticmethod
    def check_id(esc_id: str) -> str:
        if not _ID.match(esc_id):
            raise BadRequest("invalid escalation id")
        return esc_id

    def photo(self, request: Request) -> dict[str, Any] | None:
        upload = request.files.get("photo")
        if upload is None or not upload.filename and not upload.content_length:
            return None
        data = upload.read(self.cfg.max_photo_bytes + 1)
        if not data:
            return None
        if len(data) > self.cfg.max_photo_bytes:
            raise RequestEntityTooLarge()
        mime = image_type(data)
        if mime is None:
            raise BadRequest("the photo must be a PNG, JPEG, GIF or WebP image")
        name = Path(upload.filename or "photo").name[:100] or "photo"
        return {"name": name, "content_type": mime, "data": data}
