"""The config system: YAML files, base inheritance, overrides, validation, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from irstd.cli import main
from irstd.config import (
    CONFIG_DIR,
    Config,
    apply_overrides,
    config_from_dict,
    find_config,
    list_configs,
    load_config,
    save_config,
)
from irstd.errors import IRSTDError


def _write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_defaults_are_complete_and_valid():
    cfg = load_config(None)
    assert isinstance(cfg, Config)
    assert cfg.model.name == "acm" and cfg.strategy.name == "supervised"
    assert cfg.optim.betas == [0.9, 0.999]
    assert set(cfg.to_dict()) == {"model", "data", "loss", "optim", "schedule", "train", "eval", "strategy", "output"}


def test_base_inheritance_merges_sections(tmp_path):
    _write(tmp_path / "base.yaml", {"model": {"name": "dnanet", "kwargs": {"a": 1}}, "optim": {"lr": 0.01, "name": "sgd"}})
    (tmp_path / "sub").mkdir()
    child = _write(
        tmp_path / "sub" / "child.yaml",
        {"base": "../base.yaml", "optim": {"lr": 0.002}, "model": {"kwargs": {"b": 2}}},
    )
    grandchild = _write(tmp_path / "gc.yaml", {"base": "sub/child.yaml", "train": {"epochs": 7}})
    cfg = load_config(grandchild)
    assert cfg.model.name == "dnanet"
    assert cfg.model.kwargs == {"a": 1, "b": 2}  # mappings merge recursively
    assert cfg.optim.name == "sgd" and cfg.optim.lr == 0.002
    assert cfg.train.epochs == 7
    assert load_config(child).train.epochs == Config().train.epochs


def test_overrides_parse_yaml_scalars(tmp_path):
    cfg = load_config(
        None,
        [
            "train.epochs=5",
            "optim.lr=1e-3",  # YAML 1.1 reads this as a string: accepted for floats
            "optim.betas=[0.5, 0.9]",
            "train.amp=false",
            "data.root=/some/where",
            "data.test_split=null",
            "model.kwargs.width=16",
            "loss.deep_supervision=[1.0, 0.5, 0.5]",
            "strategy.kwargs.lam=0.5",
        ],
    )
    assert cfg.train.epochs == 5 and isinstance(cfg.train.epochs, int)
    assert cfg.optim.lr == pytest.approx(1e-3) and isinstance(cfg.optim.lr, float)
    assert cfg.optim.betas == [0.5, 0.9]
    assert cfg.train.amp is False
    assert cfg.data.root == "/some/where" and cfg.data.test_split is None
    assert cfg.model.kwargs == {"width": 16}
    assert cfg.loss.deep_supervision == [1.0, 0.5, 0.5]
    assert cfg.strategy.kwargs == {"lam": 0.5}


def test_overrides_do_not_mutate_input():
    data = {"train": {"epochs": 3}}
    out = apply_overrides(data, ["train.epochs=4"])
    assert data["train"]["epochs"] == 3 and out["train"]["epochs"] == 4


@pytest.mark.parametrize(
    "override, message",
    [
        ("trian.epochs=3", "unknown config key 'trian' (did you mean 'train'?)"),
        ("train.epoch=3", "unknown config key 'train.epoch' (did you mean 'epochs'?)"),
        ("train.epochs=three", "'train.epochs' must be int"),
        ("train.epochs=2.5", "'train.epochs' must be int"),
        ("optim.name=rmsprop", "optim.name: unknown optimiser 'rmsprop'; available: adagrad, adam, adamw, sgd"),
        ("schedule.name=cosin", "unknown schedule 'cosin' (did you mean 'cosine'?)"),
        ("model.name=dnanett", "model.name: unknown model 'dnanett' (did you mean 'dnanet'?)"),
        ("strategy.name=hrll", "strategy.name: unknown strategy 'hrll' (did you mean 'hrl'?)"),
        ("loss.name=bce+iou", "unknown loss term 'iou'"),
        ("data.val_fraction=1.5", "data.val_fraction must be in [0, 1)"),
        ("schedule.warmup_epochs=200", "must be < train.epochs"),
        ("train.epochs", "expected key.sub=value"),
        ("base=x.yaml", "'base' cannot be overridden"),
        ("train.epochs.x=1", "'train.epochs' must be int"),
    ],
)
def test_bad_overrides_are_clear_errors(override, message):
    with pytest.raises(IRSTDError) as err:
        load_config(None, [override])
    assert message in str(err.value)


def test_unknown_key_in_file_names_the_file(tmp_path):
    path = _write(tmp_path / "typo.yaml", {"optim": {"lr": 0.1, "wieght_decay": 0.1}})
    with pytest.raises(IRSTDError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert "optim.wieght_decay" in str(err.value) and "weight_decay" in str(err.value)


def test_bad_files(tmp_path):
    with pytest.raises(IRSTDError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(IRSTDError, match="invalid YAML"):
        load_config(_write(tmp_path / "bad.yaml", "model: [unclosed\n"))
    with pytest.raises(IRSTDError, match="must be a YAML mapping"):
        load_config(_write(tmp_path / "list.yaml", "- 1\n- 2\n"))
    _write(tmp_path / "a.yaml", {"base": "b.yaml"})
    _write(tmp_path / "b.yaml", {"base": "a.yaml"})
    with pytest.raises(IRSTDError, match="circular"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(IRSTDError, match="base config .* not found"):
        load_config(_write(tmp_path / "orphan.yaml", {"base": "nope.yaml"}))


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(None, ["model.kwargs.x=[1, 2]", "optim.lr=0.003", "data.root=/d"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg
    assert config_from_dict(cfg.to_dict()) == cfg


def test_every_shipped_config_loads():
    names = list_configs()
    assert {"default", "nuaa_acm", "nuaa_dnanet", "nuaa_sctransnet", "nuaa_balistd"} <= set(names)
    for name in names:
        cfg = load_config(name)
        assert cfg.data.root, name
        assert load_config(CONFIG_DIR / f"{name}.yaml") == cfg
    ivan = load_config("nuaa_sctransnet")  # a bare name resolves among the bundled configs
    assert (ivan.optim.name, ivan.optim.lr, ivan.schedule.warmup_epochs, ivan.schedule.min_lr) == ("adam", 1e-3, 10, 1e-5)
    assert (ivan.train.batch_size, ivan.data.crop_size) == (8, 256)
    bal = load_config("nuaa_balistd")
    assert (bal.optim.name, bal.optim.lr, bal.loss.name) == ("adam", 5e-4, "softiou")


def test_cli_reports_config_errors_in_one_line(tmp_path, capsys):
    path = _write(tmp_path / "c.yaml", {"train": {"epohcs": 1}})
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "train.epohcs" in err[0]
    assert main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert main(["train", "data.root=" + str(tmp_path / "nodata"), "--out", str(tmp_path / "r")]) == 2
    assert "dataset folder not found" in capsys.readouterr().err


def test_cli_print_config_is_a_loadable_config(tmp_path, capsys):
    assert main(["train", "--config", "nuaa_acm", "train.epochs=5", "--print-config"]) == 0
    printed = capsys.readouterr().out
    path = _write(tmp_path / "printed.yaml", printed)
    assert load_config(path) == load_config("nuaa_acm", ["train.epochs=5"])


def test_cli_overrides_may_stand_on_both_sides_of_an_option(tmp_path, capsys):
    argv = ["train", "--config", "nuaa_acm", "train.epochs=5", "--out", str(tmp_path / "r"), "train.seed=3", "--print-config"]
    assert main(argv) == 0
    printed = load_config(_write(tmp_path / "printed.yaml", capsys.readouterr().out))
    assert printed == load_config("nuaa_acm", ["train.epochs=5", "train.seed=3"])
    assert not (tmp_path / "r").exists()
    with pytest.raises(SystemExit) as exc:  # anything else left over is still a usage error
        main(["train", "--config", "nuaa_acm", "--out", str(tmp_path / "r"), "--nonsense", "--print-config"])
    assert exc.value.code == 2 and "unrecognized arguments: --nonsense" in capsys.readouterr().err


def test_bundled_names_resolve_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_config("nuaa_acm") == find_config("nuaa_acm.yaml") == CONFIG_DIR / "nuaa_acm.yaml"
    # A user's file anywhere may inherit a bundled config by name, with or without .yaml.
    (tmp_path / "elsewhere").mkdir()
    mine = _write(tmp_path / "elsewhere" / "mine.yaml", {"base": "nuaa_acm", "train": {"epochs": 3}})
    assert load_config(mine) == load_config("nuaa_acm", ["train.epochs=3"])
    _write(tmp_path / "elsewhere" / "hrl.yaml", {"base": "nuaa_hrl.yaml", "output": {"name": "x"}})
    assert load_config(tmp_path / "elsewhere" / "hrl.yaml").strategy.name == "hrl"


def test_a_file_beside_the_config_wins_over_a_bundled_name(tmp_path, monkeypatch):
    _write(tmp_path / "nuaa_acm.yaml", {"model": {"name": "dnanet"}})
    child = _write(tmp_path / "child.yaml", {"base": "nuaa_acm.yaml"})
    assert load_config(child).model.name == "dnanet"
    monkeypatch.chdir(tmp_path)
    assert load_config("nuaa_acm.yaml").model.name == "dnanet"  # a path that exists is a path
    assert load_config("nuaa_acm").model.name == "acm"


def test_unknown_config_name_lists_the_bundled_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(IRSTDError) as err:
        find_config("nuaa_acn")
    assert "did you mean 'nuaa_acm'?" in str(err.value) and "nuaa_dnanet" in str(err.value)
    with pytest.raises(IRSTDError, match="config file not found"):
        find_config("configs/nuaa_acm.yaml")  # the old location is a path now, and nothing is there
    assert main(["train", "--config", "nuaa_acn", "--print-config"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bundled configs: " in err[0]
