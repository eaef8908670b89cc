"""Extra training sources (``data.extra``): config checks, the batch composition of the sampler,
the mixed index space, and a training run that draws hard negatives from a target-free folder's
unlabelled 70 % only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from irstd.config import load_config
from irstd.data import IRSTDDataset
from irstd.data.io import write_image
from irstd.data.mixed import MixedDataset, batch_counts, parse_extra
from irstd.engine.loader import EpochBatchSampler
from irstd.errors import IRSTDError


def _labelled(root: Path, ids, value=50) -> None:
    rng = np.random.default_rng(len(ids))
    for item in ids:
        img = rng.integers(0, 120, (40, 48), dtype=np.uint8)
        img[10:13, 20:23] = 250
        write_image(root / "images" / f"{item}.png", img)
        mask = np.zeros((40, 48), np.uint8)
        mask[10:13, 20:23] = 255
        write_image(root / "masks" / f"{item}.png", mask)
    (root / "img_idx").mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        (root / "img_idx" / f"{split}.txt").write_text("\n".join(ids) + "\n")


def _frames(root: Path, n: int) -> None:
    rng = np.random.default_rng(1)
    for k in range(n):
        write_image(root / "images" / f"bg{k:02d}.png", rng.integers(0, 200, (44, 52), dtype=np.uint8))


def test_parse_extra_and_batch_counts_reject_bad_entries():
    assert parse_extra(None) == [] and parse_extra([]) == []
    (e,) = parse_extra([{"root": "x", "share": 0.25}])
    assert (e.root, e.share, e.split) == ("x", 0.25, "train")
    for bad, msg in [
        ({"root": "x"}, "needs root and share"),
        ({"root": "x", "share": 1.5}, r"share must be in \(0, 1\)"),
        ({"root": "x", "share": "lots"}, "must be a number"),
        ({"root": "x", "share": 0.2, "weight": 1}, "unknown key"),
        ("x", "must be a mapping"),
    ]:
        with pytest.raises(IRSTDError, match=msg):
            parse_extra([bad])
    with pytest.raises(IRSTDError, match="sum to 1"):
        parse_extra([{"root": "a", "share": 0.5}, {"root": "b", "share": 0.5}])
    assert batch_counts([0.125, 0.01], 16) == [2, 1]  # at least one sample of a source
    with pytest.raises(IRSTDError, match="too small"):
        batch_counts([0.3, 0.3], 2)


def test_config_validates_data_extra():
    cfg = load_config(None, ["data.extra=[{root: bg, share: 0.25}]", "train.batch_size=8"])
    assert cfg.data.extra == [{"root": "bg", "share": 0.25}]
    with pytest.raises(IRSTDError, match="share must be in"):
        load_config(None, ["data.extra=[{root: bg, share: 2}]"])
    with pytest.raises(IRSTDError, match="too small"):
        load_config(None, ["data.extra=[{root: bg, share: 0.5}]", "train.batch_size=1"])


@pytest.mark.parametrize("world_size", [1, 2])
def test_sampler_mixes_a_fixed_number_per_batch_and_covers_the_main_set(world_size):
    n, sizes, counts, batch = 30, [7, 5], [3, 1], 8
    samplers = [EpochBatchSampler(n, batch, 0, r, world_size, list(zip(sizes, counts))) for r in range(world_size)]
    steps = samplers[0].steps
    assert steps == n // (batch - sum(counts))  # an epoch is one pass over the main dataset
    for epoch in (0, 3):
        for s in samplers:
            s.set_epoch(epoch)
        per_rank = [list(s) for s in samplers]
        main_seen = []
        for step in range(steps):
            keys = [k for rank in per_rank for k in rank[step]]
            assert len(keys) == batch and all(e == epoch for e, _ in keys)
            idx = np.array([i for _, i in keys])
            assert (idx < n).sum() == batch - sum(counts)
            assert ((idx >= n) & (idx < n + sizes[0])).sum() == counts[0]
            assert (idx >= n + sizes[0]).sum() == counts[1] and idx.max() < n + sum(sizes)
            main_seen += idx[idx < n].tolist()
        assert len(set(main_seen)) == len(main_seen) == steps * (batch - sum(counts))
    # deterministic, and a resume mid-epoch yields the very batches that were next
    s = EpochBatchSampler(n, batch, 0, extra=list(zip(sizes, counts)))
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, start_step=2)
    assert list(s) == full[2:]
    # without extra sources the order is the one runs have always had
    plain = EpochBatchSampler(n, batch, 0)
    plain.set_epoch(1)
    from irstd.engine.seed import epoch_permutation

    assert [i for b in plain for _, i in b] == epoch_permutation(n, 0, 1)[: plain.steps * batch].tolist()


def test_mixed_dataset_index_space(tmp_path):
    _labelled(tmp_path / "main", ["a", "b", "c"])
    _labelled(tmp_path / "other", ["a", "z"])
    _frames(tmp_path / "bg", 4)
    main = IRSTDDataset(tmp_path / "main", split="train")
    other = IRSTDDataset(tmp_path / "other", split="train")
    bg = IRSTDDataset(tmp_path / "bg", target_free=True)
    mixed = MixedDataset(main, [other, bg])
    assert len(mixed) == 9 and mixed.sizes == [3, 2, 4]
    assert mixed.ids[:5] == ["a", "b", "c", "0:a", "0:z"] and mixed.ids[5] == "1:bg00"
    img, mask = mixed.load_arrays(3)  # other's "a"
    np.testing.assert_array_equal(img, other.load_arrays(0)[0])
    img, mask = mixed.load_arrays(8)
    assert img.shape == (44, 52) and not mask.any()
    assert mixed.image_path("0:z") == other.image_path("z") and mixed.mask_path("1:bg01") is None
    assert mixed.image_path("a") == main.image_path("a")
    assert mixed.full_scale == 255.0
    with pytest.raises(IndexError):
        mixed.load_arrays(9)


def test_training_draws_negatives_from_the_unlabelled_split_only(tmp_path, monkeypatch):
    from irstd.domain.frames import split_frames
    from irstd.engine import Trainer
    from irstd.strategies.supervised import Supervised

    _labelled(tmp_path / "main", [f"m{k}" for k in range(8)])
    _frames(tmp_path / "bg", 10)
    seen = []
    original = Supervised.training_step

    def record(self, model, batch, loss_fn, ctx):
        seen.append(list(batch["id"]))
        return original(self, model, batch, loss_fn, ctx)

    monkeypatch.setattr(Supervised, "training_step", record)
    cfg = load_config(None, [
        f"data.root={tmp_path / 'main'}", "model.name=litenet", "data.workers=0", "data.crop_size=32",
        "data.val_fraction=0", "data.test_split=null", "train.batch_size=4", "train.epochs=2",
        "train.progress=false", "train.amp=false",
        f"data.extra=[{{root: {tmp_path / 'bg'}, share: 0.25}}]",
    ])
    trainer = Trainer(cfg, run_dir=tmp_path / "run")
    trainer.fit()
    assert len(seen) == 2 * (8 // 3)
    assert all(len(ids) == 4 and sum(i.startswith("0:") for i in ids) == 1 for ids in seen)
    used = {i[2:] for ids in seen for i in ids if i.startswith("0:")}
    split = split_frames(tmp_path / "bg")
    assert used <= {p.stem for p in split.domain} and not used & {p.stem for p in split.heldout}
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert saved.data.extra == [{"root": str((tmp_path / "bg").resolve()), "share": 0.25}]
    # negatives carry empty masks through the loader
    crops = trainer.train_set
    k = next(i for i, item in enumerate(crops.base.ids) if item.startswith("0:"))
    item = crops[(0, k)]
    assert item["mask"].sum() == 0 and item["image"].shape == (1, 32, 32)
    assert torch.isfinite(item["image"]).all()


def test_a_missing_extra_folder_leaves_no_run_directory(tmp_path, capsys):
    from irstd.cli import main

    _labelled(tmp_path / "main", ["a", "b", "c"])
    rc = main(["train", f"data.root={tmp_path / 'main'}", "model.name=litenet", "data.workers=0",
               "train.epochs=1", f"data.extra=[{{root: {tmp_path / 'nowhere'}, share: 0.25}}]",
               f"output.dir={tmp_path / 'runs'}"])
    err = capsys.readouterr().err
    assert rc == 2 and "nowhere" in err and "data.extra[0]" in err
    assert not (tmp_path / "runs").exists()
