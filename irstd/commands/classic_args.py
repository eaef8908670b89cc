"""``--method`` / ``--rule`` / ``--k``: a classic (non-learning) method as the detector of
``irstd predict`` and ``irstd test`` instead of a network (:mod:`irstd.classic`)."""

from __future__ import annotations

import argparse


def add_method_source(parser: argparse.ArgumentParser) -> None:
    """The classic-method arguments, in their own group."""
    grp = parser.add_argument_group("classic method (instead of a network; see `irstd models`)")
    grp.add_argument("--method", metavar="NAME", help="classic method, e.g. ipi, pstnn, tophat, wslcm")
    grp.add_argument(
        "--rule",
        choices=["minmax", "adaptive"],
        default="minmax",
        help="saliency to mask: min-max normalise then > 0.5 (default, the toolbox convention), "
        "or > mean + k * std",
    )
    grp.add_argument("--k", type=float, default=None, help="k of the adaptive rule (default 3)")


def classic_detector(args):
    """The :class:`~irstd.engine.classic.ClassicDetector` that ``--method`` names, or ``None``."""
    from irstd.errors import IRSTDError

    if getattr(args, "method", None) is None:
        if getattr(args, "k", None) is not None or getattr(args, "rule", "minmax") != "minmax":
            raise IRSTDError("--rule and --k apply to a classic method: give --method NAME")
        return None
    taken = [f"--{a}" for a in ("run", "model", "weights") if getattr(args, a, None) is not None]
    if taken:
        raise IRSTDError(f"give either --method or {'/'.join(taken)}, not both")
    from irstd.classic import DEFAULT_K
    from irstd.engine.classic import ClassicDetector

    k = DEFAULT_K if args.k is None else args.k
    return ClassicDetector(args.method, rule=args.rule, k=k, threshold=getattr(args, "threshold", None))
