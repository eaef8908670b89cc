"""Lazy re-exports for package ``__init__`` files.

``irstd.data`` and ``irstd.engine`` re-export names from their sub-modules, but importing those
eagerly would pull torch into ``import irstd.data.io`` and slow ``irstd --help``; the names are
resolved on first attribute access instead (PEP 562).
"""

from __future__ import annotations

import importlib


def lazy_exports(package_globals: dict, exports: dict[str, tuple[str, ...]]):
    """``(where, __getattr__, __dir__)`` for a package exporting ``{module: (name, ...)}``.

    A resolved name is cached in the package's globals, so each is imported once.
    """
    where = {name: module for module, names in exports.items() for name in names}
    package = package_globals["__name__"]

    def __getattr__(name: str):
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        package_globals[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(package_globals) | set(where))

    return where, __getattr__, __dir__
