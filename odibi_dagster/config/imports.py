"""Resolve dotted function paths (``pkg.module.func`` or ``pkg.module:func``)."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any


class FunctionImportError(ImportError):
    """A configured function path that does not import or is not callable."""


def _split(path: str) -> tuple[str, str]:
    if ":" in path:
        module, _, attr = path.partition(":")
    else:
        module, _, attr = path.rpartition(".")
    if not module or not attr:
        raise FunctionImportError(f"'{path}' is not a dotted path to a function (expected 'package.module.function')")
    return module, attr


def _import(module_name: str) -> Any:
    """Import a module; a module that exists but fails to import is a FunctionImportError."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError:
        raise
    except (Exception, SystemExit) as exc:  # the module itself is broken (or calls sys.exit)
        raise FunctionImportError(f"importing module '{module_name}' failed: {type(exc).__name__}: {exc}") from None


def resolve_callable(path: str, search_dirs: Iterable[Path] = ()) -> Callable[..., Any]:
    """Import the function at ``path``.

    Modules are looked up on ``sys.path`` first, then in ``search_dirs`` (the config
    file's directory), which is then kept on ``sys.path`` so runs in other processes
    of the same code location find it too.
    """
    module_name, attr = _split(path.strip())
    try:
        module = _import(module_name)
    except ModuleNotFoundError as first:
        module = None
        for d in search_dirs:
            d = str(Path(d).resolve())
            if d in sys.path:
                continue
            sys.path.insert(0, d)
            try:
                module = _import(module_name)
                break
            except ModuleNotFoundError:
                sys.path.remove(d)
            except FunctionImportError:
                sys.path.remove(d)
                raise
        if module is None:
            raise FunctionImportError(f"cannot import module '{module_name}': {first}") from None
    try:
        fn = getattr(module, attr)
    except AttributeError:
        raise FunctionImportError(f"module '{module_name}' has no attribute '{attr}'") from None
    if not callable(fn):
        raise FunctionImportError(f"'{path}' is not callable")
    return fn


def bind_inputs(
    fn: Callable[..., Any], inputs: Mapping[str, Any], params: Mapping[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    """How a ``function`` step calls ``fn``: ``(args, kwargs)``.

    Inputs go by their logical names when the function has parameters of those names (or
    ``**kwargs``). A function written as in ODIBI's docs, ``def calculate_metrics(df)`` for
    ``inputs: {data: raw_sales}``, gets its single input positionally. Raises ``TypeError``
    naming the parameter when the step's inputs cannot be passed (see :func:`binding_problem`).
    """
    problem = binding_problem(fn, list(inputs), list(params))
    if problem is not None:
        raise TypeError(problem)
    if _by_name(fn, list(inputs), list(params)):
        return [], {**inputs, **params}
    return [next(iter(inputs.values()))], dict(params)


def _parameters(fn: Callable[..., Any]) -> list[inspect.Parameter] | None:
    try:
        return list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature: trust the config
        return None


def _by_name(fn: Callable[..., Any], inputs: list[str], params: list[str]) -> bool:
    """Whether inputs go by their logical names: the function names them all, or takes
    ``**kwargs`` and has no required positional parameter they would leave empty."""
    parameters = _parameters(fn)
    if parameters is None:
        return True
    names = {p.name for p in parameters if p.kind is not inspect.Parameter.POSITIONAL_ONLY}
    if set(inputs) <= names:
        return True
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return False
    return not [
        p
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        and p.default is inspect.Parameter.empty
        and p.name not in params
    ]


def binding_problem(fn: Callable[..., Any], inputs: list[str], params: list[str]) -> str | None:
    """Why ``fn`` cannot take a step's inputs and params, naming the parameter; None if it can."""
    parameters = _parameters(fn)
    if parameters is None:
        return None
    name = getattr(fn, "__qualname__", getattr(fn, "__name__", "function"))
    shown = f"{name}({', '.join(str(p) for p in parameters)})"
    keywords = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    accepted = {
        p.name
        for p in parameters
        if p.kind
        not in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }
    if not keywords:
        unknown = [p for p in params if p not in accepted]
        if unknown:
            return f"{shown} has no parameter '{unknown[0]}' for params.{unknown[0]}"
    if _by_name(fn, inputs, params):
        passed = set(inputs) | set(params)
    elif len(inputs) == 1:
        positional = [
            p
            for p in parameters
            if p.kind
            in (
                inspect.Parameter.POSITIONAL_ONLY,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                inspect.Parameter.VAR_POSITIONAL,
            )
        ]
        if not positional or positional[0].name in params:
            return (
                f"{shown} cannot take input '{inputs[0]}': it has no parameter of that name and no free "
                "first parameter to pass it to"
            )
        passed = {positional[0].name} | set(params)
    else:
        missing = [i for i in inputs if i not in accepted]
        return (
            f"{shown} has no parameter '{missing[0]}' for input '{missing[0]}' (several inputs are passed "
            "by name: name the parameters after the step's logical inputs)"
        )
    required = [
        p.name
        for p in parameters
        if p.default is inspect.Parameter.empty
        and p.kind
        in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and p.name not in passed
    ]
    if required:
        return f"{shown}: parameter '{required[0]}' gets no value (not an input of the step, not in its params)"
    return None
