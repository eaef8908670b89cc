"""The command line as a whole: usage, help texts, `irstd models` width, file modes under the
umask, failing commands that leave nothing behind, the progress bar of `irstd predict`."""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from irstd.cli import build_parser, main
from irstd.data.io import write_image
from irstd.engine.predictor import DEFAULT_WEIGHTS


def _options(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("irstd",)):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*path, name))
        else:
            yield " ".join(path), action


def test_every_option_of_every_command_has_help():
    seen = list(_options(build_parser()))
    assert {cmd for cmd, _ in seen} >= {"irstd predict", "irstd train", "irstd models", "irstd profile"}
    missing = [
        f"{cmd} {'/'.join(a.option_strings) or a.dest}"
        for cmd, a in seen
        if not (a.help and a.help.strip()) or a.help == argparse.SUPPRESS
    ]
    assert missing == []


def test_no_command_prints_the_usage_and_exits_2(capsys):
    assert main([]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("usage: irstd") and "predict" in err


def test_models_listing_fits_100_columns(monkeypatch, capsys):
    from irstd.models import list_models, model_info

    monkeypatch.setenv("COLUMNS", "240")  # a wider terminal still gets at most 100 columns
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 100
    starts = [line.split()[0] for line in lines if line.strip()]
    assert all(name in starts for name in list_models())  # one line per model
    assert "irstd models --refs" in lines[-1]
    assert main(["models", "ACM", "litenet"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
    text = " ".join(line.strip() for line in out.splitlines()[1:])
    assert model_info("acm")["reference"] in text  # the whole reference, wrapped
    assert "rdian" not in out
    assert main(["models", "no_such_net"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model(s) no_such_net") and len(err.splitlines()) == 1


# ------------------------------------------------------------------------------------ modes


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


def _assert_modes(root: Path, mask: int) -> int:
    modes = _modes(root)
    files = {k: m for k, m in modes.items() if (root / k).is_file()}
    dirs = {k: m for k, m in modes.items() if (root / k).is_dir()}
    assert files and {k: m for k, m in files.items() if m != 0o666 & ~mask} == {}
    assert {k: m for k, m in dirs.items() if m != 0o777 & ~mask} == {}
    return len(files)


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="the default detector is not installed")
def test_outputs_have_the_modes_of_a_plain_open(tmp_path, umask, one_thread, capsys):
    """predict, demo, evaluate, test and train write files 0o666 & ~umask (0644 under umask 022,
    0600 under 077) and folders 0o777 & ~umask, as open() and mkdir() would."""
    from irstd.data.synth import make_dataset

    ds = tmp_path / "ds"
    make_dataset(ds, "t", 8, (32, 32), seed=1, max_targets=1, empty_fraction=0.0, test_fraction=0.25)
    _assert_modes(ds, umask)

    assert main(["predict", str(ds / "images"), "--out", str(tmp_path / "pred"), "--overlay", "--save-prob", "--quiet"]) == 0
    assert (tmp_path / "pred" / "detections.jsonl").is_file()
    _assert_modes(tmp_path / "pred", umask)

    assert main(["demo", "--out", str(tmp_path / "demo"), "--num", "2", "--size", "48", "64"]) == 0
    assert (tmp_path / "demo" / "metrics.json").is_file()
    _assert_modes(tmp_path / "demo", umask)

    out_json = tmp_path / "eval" / "scores.json"
    assert main(["evaluate", "--dataset", str(ds), "--split", "test", "--pred", str(tmp_path / "pred"), "--json", str(out_json)]) == 0
    _assert_modes(tmp_path / "eval", umask)

    assert main(["test", "--weights", str(DEFAULT_WEIGHTS), "--dataset", str(ds), "--out", str(tmp_path / "test"), "--overlay", "--quiet"]) == 0
    assert (tmp_path / "test" / "metrics.json").is_file() and (tmp_path / "test" / "masks").is_dir()
    _assert_modes(tmp_path / "test", umask)

    run = tmp_path / "run"
    overrides = [
        f"data.root={ds}", "model.name=acm", "data.crop_size=32", "data.workers=0", "data.val_fraction=0.25",
        "loss.name=bce", "schedule.warmup_epochs=0", "train.epochs=1", "train.batch_size=2",
        "train.progress=false", "train.threads=1",
    ]
    assert main(["train", *overrides, "--out", str(run)]) == 0
    for name in ("config.yaml", "test_metrics.json", "log.csv", "last/model.safetensors", "last/state.pt", "best/model.safetensors"):
        assert (run / name).is_file(), name
    _assert_modes(run, umask)
    capsys.readouterr()


# ------------------------------------------------------------------------------------ failures


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _assert_clean_failure(rc: int, capsys, before: set[str], root: Path, fragment: str) -> None:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err
    assert _tree(root) == before


def _tiny_dataset(root: Path, ids=("a", "b", "c")) -> None:
    rng = np.random.default_rng(0)
    for item in ids:
        write_image(root / "images" / f"{item}.png", rng.integers(0, 200, (40, 48), dtype=np.uint8))
        mask = np.zeros((40, 48), np.uint8)
        mask[10:13, 20:23] = 255
        write_image(root / "masks" / f"{item}.png", mask)
    (root / "img_idx").mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        (root / "img_idx" / f"{split}.txt").write_text("\n".join(ids) + "\n")


def _litenet_weights(path: Path) -> Path:
    from irstd.engine.checkpoint import save_weights
    from irstd.models import create

    torch.manual_seed(0)
    save_weights(create("litenet"), path, {"model": "litenet", "kwargs": {}, "in_chans": 1, "threshold": 0.5})
    return path


def test_predict_on_only_unreadable_files_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "in"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (bad / "empty.png").write_bytes(b"")
    weights = _litenet_weights(tmp_path / "w.safetensors")
    before = _tree(tmp_path)
    rc = main(["predict", str(bad), "--out", str(tmp_path / "a" / "b" / "out"), "--weights", str(weights)])
    _assert_clean_failure(rc, capsys, before, tmp_path, "none of the 2 input(s) could be processed")
    # into an existing output folder: its contents are left as they were
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "detections.jsonl").write_text("kept\n")
    before = _tree(tmp_path)
    rc = main(["predict", str(bad / "broken.png"), "--out", str(tmp_path / "out"), "--weights", str(weights), "--quiet"])
    _assert_clean_failure(rc, capsys, before, tmp_path, "broken.png")
    assert (tmp_path / "out" / "detections.jsonl").read_text() == "kept\n"


def test_irstd_test_with_a_bad_mask_leaves_no_masks(tmp_path, one_thread, capsys):
    ds = tmp_path / "ds"
    _tiny_dataset(ds)
    (ds / "masks" / "c.png").write_bytes(b"not a png")  # the last one: the others were written before
    weights = _litenet_weights(tmp_path / "w.safetensors")
    before = _tree(tmp_path)
    rc = main(["test", "--weights", str(weights), "--dataset", str(ds), "--out", str(tmp_path / "eval")])
    _assert_clean_failure(rc, capsys, before, tmp_path, "c.png")
    (tmp_path / "eval").mkdir()
    before = _tree(tmp_path)
    rc = main(["test", "--weights", str(weights), "--dataset", str(ds), "--out", str(tmp_path / "eval"), "--quiet"])
    _assert_clean_failure(rc, capsys, before, tmp_path, "c.png")


def test_irstd_train_on_a_dataset_without_masks_leaves_no_run_directory(tmp_path, monkeypatch, capsys):
    ds = tmp_path / "ds"
    _tiny_dataset(ds)
    for p in (ds / "masks").iterdir():
        p.unlink()
    (ds / "masks").rmdir()
    monkeypatch.chdir(tmp_path)
    before = _tree(tmp_path)
    rc = main(["train", f"data.root={ds}", "data.workers=0", "train.epochs=1", "--out", str(tmp_path / "runs" / "x")])
    _assert_clean_failure(rc, capsys, before, tmp_path, "masks")
    (ds / "masks").mkdir()  # masks folder present, one mask missing; default run-directory name
    for item in ("a", "b"):
        write_image(ds / "masks" / f"{item}.png", np.zeros((40, 48), np.uint8))
    before = _tree(tmp_path)
    rc = main(["train", f"data.root={ds}", "data.workers=0", "train.epochs=1", "output.dir=runs"])
    _assert_clean_failure(rc, capsys, before, tmp_path, "no mask file for id 'c'")


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.kwargs.no_such_arg=1", "bad model.kwargs"),
        ("model.kwargs.fuse_act=tanh", "bad model.kwargs"),
        ("strategy.kwargs.no_such_arg=1", "bad strategy.kwargs"),
        ("strategy.name=diffusion", "is a discriminative network"),
        ("model.name=irstd_diff", "use strategy.name: diffusion"),
    ],
)
def test_irstd_train_with_bad_kwargs_leaves_no_run_directory(tmp_path, monkeypatch, capsys, override, message):
    ds = tmp_path / "ds"
    _tiny_dataset(ds)
    monkeypatch.chdir(tmp_path)
    before = _tree(tmp_path)
    rc = main(["train", f"data.root={ds}", "model.name=litenet", "data.workers=0", "train.epochs=1", override,
               "output.dir=runs"])
    _assert_clean_failure(rc, capsys, before, tmp_path, message)


# ------------------------------------------------------------------------------------ progress


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
@pytest.mark.parametrize("quiet", [False, True])
def test_predict_progress_bar_on_a_terminal_and_not_with_quiet(tmp_path, monkeypatch, quiet, one_thread):
    import fcntl
    import pty
    import struct
    import termios

    for k in range(3):
        write_image(tmp_path / "in" / f"f{k}.png", np.full((32, 32), 50 + k, np.uint8))
    weights = _litenet_weights(tmp_path / "w.safetensors")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    terminal = os.fdopen(slave, "w", buffering=1)
    monkeypatch.setattr(sys, "stderr", terminal)  # the bar goes to stderr, here a terminal
    argv = ["predict", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--weights", str(weights)]
    try:
        assert main(argv + (["--quiet"] if quiet else [])) == 0
        terminal.flush()
        os.set_blocking(master, False)
        try:
            shown = os.read(master, 1 << 16).decode(errors="replace")
        except BlockingIOError:
            shown = ""
    finally:
        monkeypatch.undo()
        terminal.close()
        os.close(master)
    if quiet:
        assert shown == ""
    else:
        assert "predict" in shown and "img" in shown
