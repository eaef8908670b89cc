"""irstd: infrared small target detection toolkit.

The sub-packages are imported on first use, so ``import irstd`` is fast and does not import torch,
while ``irstd.models.create("acm")`` or ``irstd.metrics`` work after it alone.
"""

from irstd._lazy import lazy_exports as _lazy_exports
from irstd.errors import IRSTDError

__version__ = "0.1.0"

_SUBMODULES = ("config", "corruptions", "data", "engine", "metrics", "models", "profiling", "strategies")
_WHERE, __getattr__, __dir__ = _lazy_exports(globals(), {}, _SUBMODULES)

__all__ = ["IRSTDError", "__version__"]
