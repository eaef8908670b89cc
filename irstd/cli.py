"""The ``irstd`` command line: one sub-command per module in :mod:`irstd.commands`.

Each command module defines ``add_parser(subparsers)`` (returns its parser) and ``run(args) -> int``.
Commands import their heavy dependencies inside ``run`` so that ``irstd --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from irstd.errors import IRSTDError

# Order is the order shown in `irstd --help`.
COMMANDS: list[str] = [
    "demo",
    "predict",
    "export",
    "report",
    "train",
    "test",
    "evaluate",
    "robustness",
    "cross_eval",
    "synth",
    "corrupt",
    "dynamic",
    "domain_synth",
    "models",
    "profile",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="irstd",
        description="Infrared small target detection toolkit.",
    )
    from irstd import __version__

    parser.add_argument("--version", action="version", version=f"irstd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"irstd.commands.{name}")
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # argparse cannot split one positional list around an option (`train --config c a=1 --out d
        # b=2`): KEY=VALUE words after an option join the command's overrides
        if hasattr(args, "overrides") and all("=" in w and not w.startswith("-") for w in extra):
            args.overrides = list(args.overrides) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "_run", None) is None:
        # a missing command is a usage error, like an unknown one: the help, then status 2
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except IRSTDError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
