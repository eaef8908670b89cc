"""`irstd export` and the ONNX Runtime backend of the Detector: metadata, one file, dynamic batch and
size (333x427 goes through the Detector's padding), parity with eager on random and real frames,
tiling, `irstd predict --weights model.onnx` masks, threads, and bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx", reason="needs the onnx extra: pip install -e '.[onnx]'")
pytest.importorskip("onnxruntime", reason="needs the onnx extra: pip install -e '.[onnx]'")

import onnx  # noqa: E402

from irstd.cli import main  # noqa: E402
from irstd.data import normalize_image, pad_to_stride  # noqa: E402
from irstd.data.io import read_image, write_image  # noqa: E402
from irstd.engine.checkpoint import save_weights  # noqa: E402
from irstd.engine.onnx_backend import OnnxNetwork, read_onnx_metadata, require_onnxruntime  # noqa: E402
from irstd.engine.predictor import load_default_detector, load_detector  # noqa: E402
from irstd.errors import IRSTDError  # noqa: E402

SIZES = [(333, 427), (64, 80), (97, 131)]  # H x W; none a multiple of the stride but the middle one


@pytest.fixture(autouse=True)
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The shipped default detector exported by the command with no model arguments."""
    out = tmp_path_factory.mktemp("onnx") / "default.onnx"
    assert main(["export", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def detectors(exported):
    return load_default_detector(device="cpu"), load_detector(weights=exported)


def _random_frame(h, w, seed, dtype=np.uint16):
    rng = np.random.default_rng(seed)
    img = rng.normal(3000, 40, (h, w))
    for _ in range(3):
        y, x = rng.integers(5, h - 5), rng.integers(5, w - 5)
        img[y - 1 : y + 2, x - 1 : x + 2] += 600
    return np.clip(img, 0, 65535).astype(dtype)


def test_metadata_and_single_file(exported, capsys):
    meta = read_onnx_metadata(exported)
    assert meta["model"] == "litenet" and meta["kwargs"] == {"fuse_act": "relu"}
    assert meta["stride"] == 16 and meta["in_chans"] == 1 and meta["threshold"] == 0.5
    assert meta["opset"] == 17 and "TorchScript" in meta["exporter"]
    assert "normalize_image" in meta["normalization"] and "sigmoid" in meta["output"]
    assert meta["tile"] == 512 and meta["overlap"] == 64
    # weights inside the one file: no initializer points at external data, nothing beside it
    proto = onnx.load(str(exported), load_external_data=False)
    assert proto.graph.initializer and all(not t.external_data for t in proto.graph.initializer)
    assert sorted(p.name for p in exported.parent.iterdir()) == ["default.onnx"]
    # the inference form: BatchNorm folded away
    assert not any(n.op_type == "BatchNormalization" for n in proto.graph.node)
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 1, "height", "width"]


@pytest.mark.parametrize("size", SIZES)
def test_detector_parity_on_random_frames(detectors, size):
    eager, ort = detectors
    assert isinstance(ort.model, OnnxNetwork) and not isinstance(eager.model, OnnxNetwork)
    frame = _random_frame(*size, seed=size[0])
    # logits through the same padding: the exported graph at a padded size it was not traced at
    x, _ = pad_to_stride(torch.from_numpy(normalize_image(frame))[None, None], 16)
    with torch.no_grad():
        want = eager.model(x)
    got = ort.model(x)
    assert got.shape == want.shape == x.shape
    assert float((got - want).abs().max()) <= 1e-4
    pe, po = eager.predict(frame), ort.predict(frame)
    assert pe.prob.shape == po.prob.shape == size
    assert float(np.abs(pe.prob - po.prob).max()) <= 1e-5
    decided = np.abs(pe.prob - eager.threshold) > 1e-4
    assert np.array_equal(pe.mask[decided], po.mask[decided])
    assert len(pe.detections) == len(po.detections)


def test_dynamic_batch(exported):
    net = OnnxNetwork(exported)
    eager = load_default_detector(device="cpu").model
    x = torch.randn(3, 1, 48, 80)
    with torch.no_grad():
        want = eager(x)
    got = net(x)
    assert got.shape == (3, 1, 48, 80)
    assert float((got - want).abs().max()) <= 1e-4


def test_tiled_frame_parity(exported):
    # tile 128 on 333x427: 3 x 4 overlapping windows, each one ONNX call, blended in Python
    eager = load_default_detector(device="cpu", tile=128, overlap=32)
    ort = load_detector(weights=exported, tile=128, overlap=32)
    assert ort.tile == 128 and ort.overlap == 32
    frame = _random_frame(333, 427, seed=7, dtype=np.uint8)
    assert float(np.abs(eager.probability(frame) - ort.probability(frame)).max()) <= 1e-5


@pytest.mark.nuaa
def test_parity_on_real_frames(detectors, nuaa_root):
    eager, ort = detectors
    seen = set()
    for path in sorted((nuaa_root / "images").glob("*.png")):
        frame = read_image(path)
        if frame.shape in seen:
            continue
        seen.add(frame.shape)
        pe, po = eager.predict(frame), ort.predict(frame)
        assert float(np.abs(pe.prob - po.prob).max()) <= 1e-5, path
        decided = np.abs(pe.prob - eager.threshold) > 1e-4
        assert np.array_equal(pe.mask[decided], po.mask[decided]), path
        if len(seen) == 3:
            break
    assert len(seen) == 3


def test_predict_with_onnx_writes_the_eager_masks(exported, tmp_path, capsys):
    inputs = tmp_path / "in"
    for k, (h, w) in enumerate(SIZES):
        write_image(inputs / f"f{k}.png", _random_frame(h, w, seed=20 + k))
    assert main(["predict", str(inputs), "--out", str(tmp_path / "eager"), "--quiet"]) == 0
    rc = main(["predict", str(inputs), "--out", str(tmp_path / "ort"), "--weights", str(exported), "--quiet", "--threads", "1"])
    assert rc == 0, capsys.readouterr().err
    for k, (h, w) in enumerate(SIZES):
        a, b = read_image(tmp_path / "eager" / f"f{k}.png"), read_image(tmp_path / "ort" / f"f{k}.png")
        assert a.shape == (h, w) and np.array_equal(a, b)
    lines = lambda d: [json.loads(s) for s in (tmp_path / d / "detections.jsonl").read_text().splitlines()]  # noqa: E731
    ea, ob = lines("eager"), lines("ort")
    assert [(d["output"], d["bbox"], d["area"]) for d in ea] == [(d["output"], d["bbox"], d["area"]) for d in ob]
    assert torch.get_num_threads() == 1
    torch.set_num_threads(2)


def test_intra_op_threads_follow_torch(exported):
    net = OnnxNetwork(exported)
    for n in (1, 2):
        torch.set_num_threads(n)
        net(torch.zeros(1, 1, 16, 16))
        assert net._get_session().get_session_options().intra_op_num_threads == n


def test_export_from_a_run_and_weights(tmp_path, capsys):
    from irstd.config import load_config, save_config
    from irstd.models import create

    torch.manual_seed(0)
    net = create("acm")
    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    save_config(load_config(None, ["model.name=acm", "eval.threshold=0.4"]), run / "config.yaml")
    save_weights(net, run / "best" / "model.safetensors", {"model": "acm"})
    out = tmp_path / "acm.onnx"
    assert main(["export", "--run", str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "max |logit difference|" in printed
    meta = read_onnx_metadata(out)
    assert meta["model"] == "acm" and meta["threshold"] == 0.4 and meta["stride"] == 16
    det = load_detector(weights=out)
    eager = load_detector(run=run, device="cpu")
    frame = _random_frame(97, 131, seed=3)
    assert det.threshold == 0.4
    assert float(np.abs(det.probability(frame) - eager.probability(frame)).max()) <= 1e-5
    out2 = tmp_path / "acm2.onnx"
    assert main(["export", "--model", "acm", "--weights", str(run / "best" / "model.safetensors"), "--out", str(out2)]) == 0
    assert read_onnx_metadata(out2)["model"] == "acm"


def test_export_and_onnx_bad_input(exported, tmp_path, capsys):
    def err(argv):
        assert main(argv) == 2
        text = capsys.readouterr().err.strip().splitlines()
        assert len(text) == 1 and text[0].startswith("error: "), text
        return text[0]

    assert ".onnx" in err(["export", "--out", str(tmp_path / "model.txt")])
    assert "no best or last checkpoint" in err(["export", "--run", str(_empty_run(tmp_path)), "--out", str(tmp_path / "m.onnx")])
    assert not (tmp_path / "m.onnx").exists()
    frame = tmp_path / "f.png"
    write_image(frame, _random_frame(40, 40, seed=1))
    assert "ONNX file not found" in err(["predict", str(frame), "--out", str(tmp_path / "o"), "--weights", str(tmp_path / "none.onnx")])
    assert "holds model 'litenet'" in err(
        ["predict", str(frame), "--out", str(tmp_path / "o"), "--weights", str(exported), "--model", "acm"]
    )
    # an ONNX file that irstd did not write: no metadata to rebuild the pipeline from
    foreign = onnx.load(str(exported))
    del foreign.metadata_props[:]
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    assert "not an ONNX file written by irstd export" in err(
        ["predict", str(frame), "--out", str(tmp_path / "o"), "--weights", str(tmp_path / "foreign.onnx")]
    )
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    assert "ONNX Runtime cannot load it" in err(
        ["predict", str(frame), "--out", str(tmp_path / "o"), "--weights", str(tmp_path / "junk.onnx")]
    )
    assert not (tmp_path / "o").exists()


def _empty_run(tmp_path: Path) -> Path:
    from irstd.config import load_config, save_config

    run = tmp_path / "empty_run"
    run.mkdir()
    save_config(load_config(None, ["model.name=litenet"]), run / "config.yaml")
    return run


def test_a_network_that_does_not_export(tmp_path, capsys):
    from irstd.models import create

    save_weights(create("istdunet"), tmp_path / "w.safetensors", {"model": "istdunet"})
    assert main(["export", "--weights", str(tmp_path / "w.safetensors"), "--out", str(tmp_path / "x.onnx")]) == 2
    text = capsys.readouterr().err
    assert "istdunet: cannot be exported to ONNX" in text and "block_diag" in text
    assert not (tmp_path / "x.onnx").exists()


def test_missing_onnxruntime_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(IRSTDError, match=r"pip install"):
        require_onnxruntime()
