"""Lazy re-exports for package ``__init__`` files (PEP 562).

``irstd`` exposes its sub-packages (``irstd.models``, ``irstd.metrics``, ...) and ``irstd.data`` and
``irstd.engine`` re-export names from their sub-modules, but importing those eagerly would pull
torch into ``import irstd`` / ``import irstd.data.io`` and slow ``irstd --help``; they are imported
on first attribute access instead.
"""

from __future__ import annotations

import importlib


def lazy_exports(package_globals: dict, exports: dict[str, tuple[str, ...]], submodules: tuple[str, ...] = ()):
    """``(where, __getattr__, __dir__)`` for a package exporting ``{module: (name, ...)}`` and the
    sub-modules ``submodules`` (names relative to the package).

    A resolved name is cached in the package's globals, so each is imported once.
    """
    package = package_globals["__name__"]
    where = {name: module for module, names in exports.items() for name in names}
    # A sub-module is the attribute its own import sets on the package, so the value to cache is
    # the module itself rather than a name inside it.
    where.update({name: f"{package}.{name}" for name in submodules})
    modules = set(submodules)

    def __getattr__(name: str):
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        imported = importlib.import_module(module)
        value = imported if name in modules else getattr(imported, name)
        package_globals[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(package_globals) | set(where))

    return where, __getattr__, __dir__
