"""Resolve dotted function paths (``pkg.module.func`` or ``pkg.module:func``)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable
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
        raise FunctionImportError(
            f"'{path}' is not a dotted path to a function (expected 'package.module.function')")
    return module, attr


def _import(module_name: str) -> Any:
    """Import a module; a module that exists but fails to import is a FunctionImportError."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError:
        raise
    except (Exception, SystemExit) as exc:  # the module itself is broken (or calls sys.exit)
        raise FunctionImportError(
            f"importing module '{module_name}' failed: {type(exc).__name__}: {exc}") from None


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
