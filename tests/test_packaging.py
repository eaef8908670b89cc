"""The package as users get it: ``import irstd`` and its lazy sub-packages; a built wheel,
installed outside the checkout, that runs the shipped detector and finds its configs.

The package data (bundled configs, the default detector's weights and card) must travel in the
wheel; an editable install cannot show that, because it reads everything from the source tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


def _run(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{args}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def test_import_irstd_is_light_and_exposes_the_sub_packages():
    # A fresh interpreter: this test process has long imported torch.
    probe = textwrap.dedent(
        """
        import json, sys
        import irstd
        light = "torch" not in sys.modules
        listed = dir(irstd)
        model = irstd.models.create("acm")
        try:
            irstd.no_such_thing
            unknown = "no error"
        except AttributeError as exc:
            unknown = str(exc)
        print(json.dumps({
            "light": light, "dir": listed, "model": type(model).__name__,
            "metrics": irstd.metrics.__name__, "corruptions": irstd.corruptions.list_corruptions(),
            "engine": irstd.engine.Trainer.__name__, "configs": irstd.config.list_configs(),
            "unknown": unknown,
        }))
        """
    )
    out = json.loads(_run([sys.executable, "-c", probe], REPO).stdout)
    assert out["light"]
    assert {"config", "corruptions", "data", "engine", "metrics", "models", "strategies"} <= set(out["dir"])
    assert out["model"] == "ACM" and out["metrics"] == "irstd.metrics" and out["engine"] == "Trainer"
    assert "gaussian_noise" in out["corruptions"] and "nuaa_acm" in out["configs"]
    assert "no attribute 'no_such_thing'" in out["unknown"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(wheel, site, work)``: the wheel, the folder it is installed into, an empty folder to run in."""
    tmp = tmp_path_factory.mktemp("packaging")
    # Build from a copy: setuptools writes build/ and *.egg-info next to pyproject.toml, and the
    # checkout is shared with other processes.
    src = tmp / "src"
    shutil.copytree(REPO / "irstd", src / "irstd", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), "."], src)
    (wheel,) = (tmp / "dist").glob("irstd-*.whl")
    site = tmp / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(wheel)], tmp)
    work = tmp / "work"
    work.mkdir()
    return wheel, site, work


def _env(site: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRSTD")}
    env["PYTHONPATH"] = str(site)
    return env


@pytest.mark.slow
def test_wheel_holds_the_configs_and_the_default_detector(installed):
    wheel, _, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = sorted(p.name for p in (REPO / "irstd" / "configs").glob("*.yaml"))
    assert "nuaa_acm.yaml" in configs and "default.yaml" in configs
    assert {f"irstd/configs/{c}" for c in configs} <= names
    assert {"irstd/weights/default.yaml", "irstd/weights/default.safetensors"} <= names


@pytest.mark.slow
def test_installed_wheel_loads_bundled_configs_by_name(installed):
    _, site, work = installed
    (work / "mine.yaml").write_text("base: nuaa_acm\ntrain:\n  epochs: 3\n")
    probe = textwrap.dedent(
        """
        import json, sys
        import irstd
        from irstd.config import CONFIG_DIR, list_configs, load_config
        from irstd.engine.predictor import DEFAULT_CARD, DEFAULT_WEIGHTS
        acm, mine = load_config("nuaa_acm"), load_config("mine.yaml")
        print(json.dumps({
            "irstd": irstd.__file__, "configs": str(CONFIG_DIR), "card": str(DEFAULT_CARD),
            "weights": str(DEFAULT_WEIGHTS), "names": list_configs(),
            "acm": [acm.model.name, acm.optim.name, acm.train.epochs],
            "mine": [mine.model.name, mine.optim.name, mine.train.epochs],
        }))
        """
    )
    out = json.loads(_run([sys.executable, "-c", probe], work, _env(site)).stdout)
    root = site.resolve() / "irstd"
    for key in ("irstd", "configs", "card", "weights"):
        assert Path(out[key]).resolve().is_relative_to(root), (key, out[key])
    assert {"default", "nuaa_acm", "nuaa_hrl"} <= set(out["names"])
    assert out["acm"] == ["acm", "adagrad", 300]
    assert out["mine"] == ["acm", "adagrad", 3]


@pytest.mark.slow
def test_installed_wheel_runs_the_shipped_detector(installed):
    import cv2

    _, site, work = installed
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:96, :128]
    frame = rng.normal(60, 4, (96, 128)) + 150 * np.exp(-((yy - 40) ** 2 + (xx - 70) ** 2) / (2 * 1.5**2))
    assert cv2.imwrite(str(work / "frame.png"), np.clip(frame, 0, 255).astype(np.uint8))
    _run([sys.executable, "-m", "irstd", "predict", "frame.png", "--out", "det", "--quiet"], work, _env(site))
    mask = cv2.imread(str(work / "det" / "frame.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (96, 128) and mask[40, 70] == 255
    lines = (work / "det" / "detections.jsonl").read_text().splitlines()
    assert len(lines) == 1
    x, y = json.loads(lines[0])["centroid"]
    assert abs(x - 70) < 2 and abs(y - 40) < 2
