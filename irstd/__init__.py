"""irstd: infrared small target detection toolkit."""

from irstd.errors import IRSTDError

__version__ = "0.1.0"
__all__ = ["IRSTDError", "__version__"]
