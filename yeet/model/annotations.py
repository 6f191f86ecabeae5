"""Evaluating type annotations written as strings, on every Python yeet runs on.

Invariant owned here: an annotation string means the same type here as it does
to ``typing.get_type_hints`` on Python 3.11, also on Python 3.9 (where
``X | Y`` cannot be evaluated at run time): ``|`` becomes ``typing.Union``.
Only names, attributes, subscripts, tuples, ``|``, ``None``, ``...`` and nested
string annotations are accepted; anything else is rejected, never executed.
Pure: no I/O.
"""

from __future__ import annotations

import ast
import builtins
import sys
import typing
from collections.abc import Callable, Mapping
from typing import Any


class BadAnnotation(TypeError):
    """An annotation this evaluator does not accept."""


def evaluate(expr: str, namespace: Mapping[str, Any]) -> Any:
    """The type an annotation string denotes, looked up in ``namespace``."""
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as err:
        raise BadAnnotation(f"cannot parse annotation {expr!r}: {err}") from None
    return _eval(tree.body, namespace)


def _eval(node: ast.AST, ns: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return typing.Union[_eval(node.left, ns), _eval(node.right, ns)]
    if isinstance(node, ast.Constant):
        if node.value is None or node.value is Ellipsis:
            return node.value
        if isinstance(node.value, str):
            return evaluate(node.value, ns)
        raise BadAnnotation(f"unexpected constant {node.value!r} in an annotation")
    if isinstance(node, ast.Name):
        if node.id in ns:
            return ns[node.id]
        if hasattr(builtins, node.id):
            return getattr(builtins, node.id)
        raise BadAnnotation(f"unknown name {node.id!r} in an annotation")
    if isinstance(node, ast.Attribute):
        return getattr(_eval(node.value, ns), node.attr)
    if isinstance(node, ast.Subscript):
        base = _eval(node.value, ns)
        index = node.slice  # an expression since Python 3.9
        if isinstance(index, ast.Tuple):
            return base[tuple(_eval(e, ns) for e in index.elts)]
        return base[_eval(index, ns)]
    if isinstance(node, ast.Tuple):
        return tuple(_eval(e, ns) for e in node.elts)
    raise BadAnnotation(f"unsupported annotation syntax: {ast.dump(node)}")


def _namespace(module: str) -> dict[str, Any]:
    mod = sys.modules.get(module)
    return dict(vars(mod)) if mod is not None else {}


def class_hints(cls: type) -> dict[str, Any]:
    """Resolved annotations of ``cls`` and its bases (base classes first)."""
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        ann = klass.__dict__.get("__annotations__", {})  # noqa: RUF063 (3.9)
        if not ann:
            continue
        ns = _namespace(klass.__module__)
        ns.setdefault(klass.__name__, klass)
        for name, value in ann.items():
            out[name] = evaluate(value, ns) if isinstance(value, str) else value
    return out


def function_hints(func: Callable[..., Any]) -> dict[str, Any]:
    """Resolved annotations of a function (parameters and ``return``)."""
    ns: dict[str, Any] = dict(getattr(func, "__globals__", {}))
    ann: dict[str, Any] = getattr(func, "__annotations__", {})
    return {k: evaluate(v, ns) if isinstance(v, str) else v for k, v in ann.items()}
