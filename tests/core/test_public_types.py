"""The public API is typed precisely: no `Any` in what `KnowledgeBase`'s public methods take or return,
nor in the public functions of ``kbsearch.__all__`` (the package ships ``py.typed``).

Annotations are resolved with `typing.get_type_hints`, including the names a module imports only
under ``if TYPE_CHECKING:`` (imported there to keep ``import kbsearch`` light).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
import typing
from collections.abc import Callable
from typing import Any

import kbsearch
from kbsearch.kb import KnowledgeBase


def _type_checking_names(module_name: str) -> dict[str, object]:
    """The names ``module_name`` imports under ``if TYPE_CHECKING:``, imported for real."""
    module = sys.modules[module_name]
    tree = ast.parse(inspect.getsource(module))
    namespace: dict[str, object] = {"__name__": module_name, "__package__": module.__package__}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            exec(compile(ast.Module(body=node.body, type_ignores=[]), module.__file__ or module_name, "exec"), namespace)
    return namespace


def _hints(function: Callable[..., object]) -> dict[str, object]:
    module = importlib.import_module(function.__module__)
    localns = _type_checking_names(module.__name__)
    return typing.get_type_hints(function, globalns=vars(module), localns=localns)


def _has_any(hint: object) -> bool:
    if hint is Any:
        return True
    if isinstance(hint, list):  # a Callable's parameters
        return any(_has_any(arg) for arg in hint)
    return any(_has_any(arg) for arg in typing.get_args(hint))


def _public_methods() -> dict[str, Callable[..., object]]:
    out: dict[str, Callable[..., object]] = {}
    for name, value in inspect.getmembers(KnowledgeBase):
        if name.startswith("_"):
            continue
        if isinstance(value, property) and value.fget is not None:
            out[name] = value.fget
        elif inspect.isfunction(value) or inspect.ismethod(value):
            out[name] = value
    return out


def test_the_check_finds_any() -> None:
    assert _has_any(Any) and _has_any(list[Any]) and _has_any(dict[str, Any] | None)
    assert _has_any(Callable[[Any], None])
    assert not _has_any(dict[str, object]) and not _has_any(Callable[[int, int], None])


def test_knowledge_base_methods_have_no_any() -> None:
    methods = _public_methods()
    assert {"search", "ask", "escalate", "reindex", "crawl", "peers", "usage"} <= set(methods)
    loose = []
    for name, method in sorted(methods.items()):
        hints = _hints(method)
        assert "return" in hints or name in ("close",), f"{name} has no return annotation"
        loose += [f"{name}({param})" for param, hint in hints.items() if _has_any(hint)]
    assert loose == [], f"give these their precise types: {loose}"


def test_every_parameter_is_annotated() -> None:
    missing = [f"{name}({p.name})" for name, method in _public_methods().items()
               for p in list(inspect.signature(method).parameters.values())[1:]
               if p.annotation is inspect.Parameter.empty]
    assert missing == []


def test_public_functions_have_no_any() -> None:
    loose = []
    for name in kbsearch.__all__:
        value = getattr(kbsearch, name)
        if inspect.isfunction(value):
            loose += [f"{name}({param})" for param, hint in _hints(value).items() if _has_any(hint)]
    assert loose == []
