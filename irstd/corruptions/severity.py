"""The one table of corruption parameters per severity, and the lookups built on it.

Every corruption has five parameter values, one per level of the ImageNet-C scale (Hendrycks &
Dietterich, "Benchmarking neural network robustness to common corruptions and perturbations",
ICLR 2019). Paper 002 (BALISTD) grades its corruptions in three severities without giving their
parameters; its severities 1, 2, 3 are ImageNet-C levels 1, 3 and 5 (:data:`THREE_LEVELS`): the
mildest, the middle and the strongest of the established scale. ``levels=5`` selects the
ImageNet-C scale itself.

Corruptions that ImageNet-C does not define (uniform, salt-and-pepper and Poisson noise, the
composite noise of paper 000) have five-value ladders chosen here, documented in the ``source``
column; paper 000's Dynamic-ISTD proportion 0.05 sits at level 3 of 5 (severity 2 of 3).
"""

from __future__ import annotations

from dataclasses import dataclass

from irstd.errors import IRSTDError

THREE_LEVELS: tuple[int, int, int] = (1, 3, 5)
"""ImageNet-C level used by each of paper 002's severities 1, 2, 3."""

LEVEL_SCALES: tuple[int, ...] = (3, 5)
"""Accepted values of ``levels``: 3 (paper 002's grading, the default) or 5 (ImageNet-C)."""


@dataclass(frozen=True)
class CorruptionSpec:
    """One row of the severity table.

    Attributes:
        name: corruption name as used by :func:`irstd.corruptions.apply`.
        group: ``"noise"``, ``"blur"`` or ``"digital"`` (paper 002's ISP-simulating group).
        params: names of the keyword parameters of the functional form that vary with severity.
        values: five entries (ImageNet-C levels 1..5), each a tuple with one value per param.
        unit: how the parameter is measured.
        source: where the values come from.
        random: True when the output depends on the seed.
    """

    name: str
    group: str
    params: tuple[str, ...]
    values: tuple[tuple[float, ...], ...]
    unit: str
    source: str
    random: bool


def _spec(name, group, params, values, unit, source, random) -> CorruptionSpec:
    values = tuple(v if isinstance(v, tuple) else (v,) for v in values)
    assert len(values) == 5 and all(len(v) == len(params) for v in values), name
    return CorruptionSpec(name, group, tuple(params), values, unit, source, random)


# Units: intensities are fractions of the image's full scale (see irstd.corruptions.functional).
SEVERITY_TABLE: dict[str, CorruptionSpec] = {
    s.name: s
    for s in (
        _spec("gaussian_noise", "noise", ["sigma"], [0.08, 0.12, 0.18, 0.26, 0.38],
              "std of additive N(0, sigma), fraction of full scale", "ImageNet-C", True),
        _spec("shot_noise", "noise", ["photons"], [60, 25, 12, 5, 3],
              "photon count at full scale: Poisson(x * photons) / photons", "ImageNet-C", True),
        _spec("impulse_noise", "noise", ["amount"], [0.03, 0.06, 0.09, 0.17, 0.27],
              "fraction of pixels set to 0 or full scale (half each)", "ImageNet-C", True),
        _spec("speckle_noise", "noise", ["sigma"], [0.15, 0.20, 0.35, 0.45, 0.60],
              "std of multiplicative noise: x + x * N(0, sigma)", "ImageNet-C", True),
        _spec("uniform_noise", "noise", ["half_width"], [0.14, 0.21, 0.31, 0.45, 0.66],
              "additive U(-a, a), fraction of full scale",
              "a = sqrt(3) * gaussian_noise sigma (same std)", True),
        _spec("salt_pepper_noise", "noise", ["amount"], [0.01, 0.02, 0.05, 0.08, 0.12],
              "fraction of pixels set to 0 or full scale (half each)",
              "paper 000 proportion 0.05 at level 3", True),
        _spec("poisson_noise", "noise", ["photons"], [1024, 512, 256, 128, 64],
              "photon count at full scale (as shot_noise)",
              "level 3 = skimage random_noise('poisson') on 8-bit data", True),
        _spec("composite_noise", "noise", ["proportion"], [0.02, 0.03, 0.05, 0.07, 0.10],
              "strength p of each of 5 noises (see composite_noise)",
              "paper 000 proportion 0.05 at level 3", True),
        _spec("defocus_blur", "blur", ["radius", "alias_sigma"],
              [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)],
              "disk radius (px), Gaussian anti-alias sigma (px)", "ImageNet-C", False),
        _spec("motion_blur", "blur", ["length"], [7, 11, 17, 24, 30],
              "line length (px); angle ~ U(-45, 45) deg per image",
              "ImageNet-C (radius, sigma) (10,3) (15,5) (15,8) (15,12) (20,15), same displacement std",
              True),
        _spec("gaussian_blur", "blur", ["sigma"], [1, 2, 3, 4, 6],
              "Gaussian sigma (px), kernel radius round(4 sigma)", "ImageNet-C", False),
        _spec("brightness", "digital", ["shift"], [0.1, 0.2, 0.3, 0.4, 0.5],
              "added to the value (HSV V = grey), fraction of full scale", "ImageNet-C", False),
        _spec("contrast", "digital", ["factor"], [0.4, 0.3, 0.2, 0.1, 0.05],
              "(x - mean) * factor + mean", "ImageNet-C", False),
        _spec("pixelate", "digital", ["factor"], [0.6, 0.5, 0.4, 0.3, 0.25],
              "area downscale to factor x size, nearest upscale", "ImageNet-C", False),
        _spec("jpeg_compression", "digital", ["quality"], [25, 18, 15, 10, 7],
              "JPEG quality (OpenCV, 8-bit codec)", "ImageNet-C", False),
    )
}

PAPER_002_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "motion_blur", "gaussian_blur",
    "brightness", "contrast", "pixelate", "jpeg_compression",
)
"""The ten corruptions of paper 002 (its text lists impulse noise, its tables Gaussian blur)."""

PAPER_002_TABLE2: tuple[str, ...] = tuple(n for n in PAPER_002_CORRUPTIONS if n != "impulse_noise")
"""The nine columns of paper 002's robustness tables (Tables 2-4), in their order."""

PAPER_002_GROUPS: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "motion_blur", "gaussian_blur"),
    "isp": ("brightness", "contrast", "pixelate", "jpeg_compression"),
}
"""Paper 002's corruption groups (its Table 6 trains on one group at a time)."""


def list_corruptions() -> list[str]:
    """Names of all corruptions, in table order."""
    return list(SEVERITY_TABLE)


def check_corruption(name: str) -> CorruptionSpec:
    """The table row of ``name``; :class:`IRSTDError` listing the valid names otherwise."""
    spec = SEVERITY_TABLE.get(name) if isinstance(name, str) else None
    if spec is None:
        raise IRSTDError(
            f"unknown corruption {name!r}; valid names: {', '.join(SEVERITY_TABLE)}"
        )
    return spec


def check_severity(severity: int, levels: int = 3) -> int:
    """Validate ``severity`` (an integer in ``1..levels``) and ``levels`` (3 or 5)."""
    if isinstance(levels, bool) or levels not in LEVEL_SCALES:
        raise IRSTDError(f"levels must be 3 (paper 002) or 5 (ImageNet-C), got {levels!r}")
    try:
        ok = not isinstance(severity, bool) and int(severity) == severity
    except (TypeError, ValueError):
        ok = False
    if not ok or not 1 <= int(severity) <= levels:
        raise IRSTDError(f"severity must be an integer in 1..{levels}, got {severity!r}")
    return int(severity)


def imagenet_level(severity: int, levels: int = 3) -> int:
    """The ImageNet-C level (1..5) of ``severity`` on a ``levels``-step scale."""
    severity = check_severity(severity, levels)
    return THREE_LEVELS[severity - 1] if levels == 3 else severity


def severity_params(name: str, severity: int, levels: int = 3) -> dict[str, float]:
    """Keyword parameters of corruption ``name`` at ``severity`` (1..``levels``).

    Example: ``severity_params("defocus_blur", 2)`` is ``{"radius": 6, "alias_sigma": 0.5}``.
    """
    spec = check_corruption(name)
    level = imagenet_level(severity, levels)
    return dict(zip(spec.params, spec.values[level - 1]))


def corruption_actions(
    names: list[str] | tuple[str, ...] = PAPER_002_CORRUPTIONS, levels: int = 3
) -> list[tuple[str, int]]:
    """All ``(name, severity)`` pairs, name-major: the action space of a corruption policy."""
    for n in names:
        check_corruption(n)
    check_severity(1, levels)
    return [(n, s) for n in names for s in range(1, levels + 1)]


def _fmt(value: tuple[float, ...]) -> str:
    return ", ".join(f"{v:g}" for v in value)


def severity_table_markdown() -> str:
    """The severity table as a markdown table (one row per corruption, ImageNet-C levels 1..5;
    the columns used by the 3-step scale are marked s1, s2, s3)."""
    heads = [f"{lv} ({'s' + str(THREE_LEVELS.index(lv) + 1)})" if lv in THREE_LEVELS else str(lv)
             for lv in range(1, 6)]
    lines = [
        "| corruption | group | parameter | " + " | ".join(heads) + " | unit | source |",
        "|---|---|---|" + "---|" * 5 + "---|---|",
    ]
    for spec in SEVERITY_TABLE.values():
        cells = [_fmt(v) for v in spec.values]
        lines.append(
            f"| {spec.name} | {spec.group} | {', '.join(spec.params)} | "
            + " | ".join(cells)
            + f" | {spec.unit} | {spec.source} |"
        )
    return "\n".join(lines)
