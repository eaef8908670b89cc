"""`irstd models`: list the zoo with parameter counts."""

from __future__ import annotations

import argparse

# The listing must fit a 100-column terminal whatever the reference texts hold.
MAX_WIDTH = 100


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "models",
        help="list the registered networks with parameter counts, and the classic methods",
        description="List every registered network, its parameter count (1 input channel) and the "
        "reference count of the published implementation, with the start of the reference it comes "
        "from; --refs or naming models prints the full references.",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="show these models with their full references")
    p.add_argument("--refs", action="store_true", help="print the full reference of every model")
    return p


def _width() -> int:
    import shutil

    return max(60, min(MAX_WIDTH, shutil.get_terminal_size((MAX_WIDTH, 24)).columns))


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def run(args) -> int:
    import textwrap

    from irstd.errors import IRSTDError
    from irstd.models import count_parameters, create, list_models, model_info

    known = list_models()
    unknown = [n for n in args.names if n.lower() not in known]
    if unknown:
        raise IRSTDError(f"unknown model(s) {', '.join(unknown)}; registered: {', '.join(known)}")
    names = [n.lower() for n in args.names] or known
    full = bool(args.names) or args.refs
    width = _width()
    head = f"{'model':<14}{'params (M)':>12}{'reference (M)':>15}  "
    print((head + ("" if full else "reference")).rstrip())
    for name in names:
        info = model_info(name)
        n = count_parameters(create(name))
        ref = info["reference_params"]
        ref_s = f"{ref / 1e6:.3f}" if ref else "-"
        row = f"{name:<14}{n / 1e6:>12.3f}{ref_s:>15}  "
        if full:
            print(row.rstrip())
            for line in textwrap.wrap(info["reference"], width - 4):
                print(f"    {line}")
        else:
            print(row + _clip(info["reference"], width - len(row)))
    if not args.names:
        _print_classic(full, width)
    if not full:
        print("full references: irstd models --refs, or irstd models NAME")
    return 0


def _print_classic(full: bool, width: int) -> None:
    """The classic (non-learning) methods of irstd.classic, usable as --method NAME."""
    import textwrap

    from irstd.classic import list_methods, method_info

    print("\nclassic methods (no weights; irstd predict / test --method NAME)")
    head = f"{'method':<14}{'family':<24}{'paper s/frame':>14}  "
    print((head + ("" if full else "reference")).rstrip())
    for name in list_methods():
        info = method_info(name)
        rt = info.get("published_runtime_s")
        row = f"{name:<14}{info['family']:<24}{(f'{rt:g}' if rt else '-'):>14}  "
        if full:
            print(row.rstrip())
            for line in textwrap.wrap(info["reference"], width - 4):
                print(f"    {line}")
        else:
            print(row + _clip(info["reference"], width - len(row)))
