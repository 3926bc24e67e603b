"""Run a function right after a module is imported for the first time.

Owns one finder on ``sys.meta_path``. :func:`when_imported` runs the function
at once when the module is loaded already; otherwise the finder lets the
other finders locate the module and wraps the loader they return, so that
the function runs right after the module's own code, before the ``import``
statement that loaded it returns. That is what keeps an integration's
guarantee while importing nothing at start-up: gRPC's gevent mode is on
before the program can create its first channel, because no channel exists
before ``import grpc`` returns.

Invariants: the wrapped loader puts the original one back on the module
(``__loader__`` and ``__spec__.loader``) before the module's code runs, so
nothing in or after the import sees the wrapper; a failing function is one
warning, never an exception in the program's ``import``; each function runs
once per process; the finder removes itself once nothing waits.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from otel_gevent_distro._log import PREFIX, logger

Hook = Callable[[ModuleType], None]

#: module name -> functions waiting for its first import
_waiting: dict[str, list[Hook]] = {}


def when_imported(name: str, hook: Hook) -> bool:
    """Run ``hook(module)`` once ``name`` is imported; return True when it ran now."""
    module = sys.modules.get(name)
    if module is not None:
        _run(name, hook, module)
        return True
    _waiting.setdefault(name, []).append(hook)
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    return False


def waiting() -> list[str]:
    """Names of the modules that functions still wait for."""
    return sorted(_waiting)


def _run(name: str, hook: Hook, module: ModuleType) -> None:
    try:
        hook(module)
    except Exception as exc:  # noqa: BLE001 - never break the program's import
        logger.warning(
            "%swhat the distro does when %s is imported failed (%s: %s).", PREFIX, name, type(exc).__name__, exc
        )


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        if fullname not in _waiting:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader, fullname)
                return spec
        return None


class _Loader(importlib.abc.Loader):
    def __init__(self, loader: Any, name: str) -> None:
        self._loader = loader
        self._name = name

    def create_module(self, spec: Any) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self._loader
        spec = getattr(module, "__spec__", None)
        if spec is not None:
            with contextlib.suppress(AttributeError):
                spec.loader = self._loader
        self._loader.exec_module(module)
        for hook in _waiting.pop(self._name, []):
            _run(self._name, hook, module)
        if not _waiting and _FINDER in sys.meta_path:
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(_FINDER)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


_FINDER = _Finder()
