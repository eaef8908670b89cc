"""Named registries: the one way irstd maps a name in a config or on the command line to code.

Models, training strategies, loss terms, optimisers and learning-rate schedules each have one
:class:`Registry`. Its entries are registered where they are defined (``@MODELS.register("acm")``
beside the network), and everything that accepts a name (config validation, ``create``/``build``
functions, ``irstd models``, help texts) asks the registry, so a new entry needs no edit anywhere
else.

Registries whose entries live in many modules (one file per network or strategy) name those
modules; they are imported on the first lookup, which keeps ``import irstd`` free of torch.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable, Iterable

from irstd.errors import IRSTDError

__all__ = ["Registry"]


class Registry:
    """A mapping from lower-case names to objects, with per-entry facts.

    Args:
        kind: what an entry is, for error messages (``"model"``, ``"loss term"``).
        modules: modules that register entries when imported; imported on the first lookup.
    """

    def __init__(self, kind: str, modules: Iterable[str] = ()):
        self.kind = kind
        self._modules = tuple(modules)
        self._loaded = not self._modules
        self._entries: dict[str, Any] = {}
        self._info: dict[str, dict] = {}

    def register(self, name: str, obj: Any = None, **info) -> Callable:
        """Register ``obj`` under ``name`` (or use as a decorator: ``@REG.register("name")``).

        ``info`` is kept as the entry's facts (:meth:`info`). Names are case-insensitive and
        unique: registering a different object under a taken name is a programming error.
        """

        def deco(value):
            key = name.lower()
            if key in self._entries and self._entries[key] is not value:
                raise ValueError(f"{self.kind} {key!r} registered twice")
            self._entries[key] = value
            self._info[key] = dict(info)
            return value

        return deco if obj is None else deco(obj)

    def unregister(self, name: str) -> None:
        """Remove ``name`` if registered (for entries registered temporarily, as tests do)."""
        self._entries.pop(name.lower(), None)
        self._info.pop(name.lower(), None)

    def _load(self) -> None:
        if not self._loaded:
            # Set first: a module being imported may look itself up while it registers.
            self._loaded = True
            for module in self._modules:
                importlib.import_module(module)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._load()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load()
        return isinstance(name, str) and name.lower() in self._entries

    def get(self, name: str) -> Any:
        """The entry ``name``; an unknown name raises :class:`IRSTDError` listing the choices."""
        self._load()
        key = str(name).lower()
        if key not in self._entries:
            raise IRSTDError(self.unknown_message(name))
        return self._entries[key]

    def info(self, name: str) -> dict:
        """The facts registered with ``name`` (a copy)."""
        self.get(name)
        return dict(self._info[str(name).lower()])

    def unknown_message(self, name: object) -> str:
        """``unknown <kind> 'x' (did you mean 'y'?); available: ...``."""
        self._load()
        hint = difflib.get_close_matches(str(name).lower(), list(self._entries), n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        return f"unknown {self.kind} {name!r}{extra}; available: {', '.join(sorted(self._entries))}"

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"
