"""Calling the knowledge base from the API: `call_kb` (501 when a method is missing) and `has_kb`.

Apart from `_app` so the route modules mixed into `WebApp` use them without importing `_app`.
"""

from __future__ import annotations

from typing import Any

from ..errors import KbsearchError


class NotImplementedApi(KbsearchError):
    """The endpoint needs a `KnowledgeBase` feature this installation does not have (yet)."""

    http_status = 501


def call_kb(kb: Any, name: str, *args: Any, **kwargs: Any) -> Any:
    """Call ``kb.<name>``; `NotImplementedApi` (501) when this knowledge base has no such method.

    (A portal may hand `create_app` its own KnowledgeBase subclass or wrapper with fewer features.)
    """
    method = getattr(kb, name, None)
    if method is None or not callable(method):
        raise NotImplementedApi(f"this kbsearch has no {name}()")
    return method(*args, **kwargs)


def has_kb(kb: Any, name: str) -> bool:
    """Whether ``kb`` has a callable ``name``."""
    return callable(getattr(kb, name, None))
