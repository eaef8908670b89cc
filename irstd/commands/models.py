"""`irstd models`: list the zoo with parameter counts."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    return sub.add_parser(
        "models",
        help="list the registered networks with parameter counts, and the classic methods",
        description="List every registered network, its parameter count (1 input channel), the "
        "reference count of the published implementation and where the design comes from.",
    )


def run(args) -> int:
    from irstd.models import count_parameters, create, list_models, model_info

    print(f"{'model':<14}{'params (M)':>12}{'reference (M)':>15}  reference")
    for name in list_models():
        info = model_info(name)
        n = count_parameters(create(name))
        ref = info["reference_params"]
        ref_s = f"{ref / 1e6:.3f}" if ref else "-"
        print(f"{name:<14}{n / 1e6:>12.3f}{ref_s:>15}  {info['reference']}")
    _print_classic()
    return 0


def _print_classic() -> None:
    """The classic (non-learning) methods of irstd.classic, usable as --method NAME."""
    from irstd.classic import list_methods, method_info

    print("\nclassic methods (no weights; irstd predict / test --method NAME)")
    print(f"{'method':<14}{'family':<24}{'paper s/frame':>14}  reference")
    for name in list_methods():
        info = method_info(name)
        rt = info.get("published_runtime_s")
        print(f"{name:<14}{info['family']:<24}{(f'{rt:g}' if rt else '-'):>14}  {info['reference']}")
