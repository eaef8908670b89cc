"""``irstd train``: train a model from a config file (see :mod:`irstd.config`)."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Train a zoo model from a YAML config, with key.sub=value overrides.

The run directory receives the resolved config.yaml, train_ids.txt / val_ids.txt (validation carved
from the training split), log.csv, checkpoints last/ and best/ (safetensors weights + training state),
and test_metrics.json (test split scored with the best checkpoint at original resolution).

Examples:
  irstd train --config nuaa_acm                          # a bundled config (irstd/configs/)
  irstd train --config my_protocol.yaml                  # or your own (it may say base: nuaa_acm)
  irstd train --config nuaa_acm train.epochs=5 data.workers=0 --out runs/acm-try
  irstd train --resume runs/acm-try                      # continue after a crash or kill
  irstd train --resume runs/acm-try train.epochs=400     # extend a finished run
  torchrun --nproc_per_node=2 -m irstd train --config nuaa_acm --out runs/acm-ddp
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train a model from a config",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", "-c", metavar="FILE", help="YAML config: a path, or the name of a bundled config (default, nuaa_acm, ...; an unknown name lists them); without it the built-in defaults")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.epochs=10")
    p.add_argument("--out", metavar="RUN_DIR", help="run directory (default: <output.dir>/<name>-<timestamp>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    return p


def run(args) -> int:
    from pathlib import Path

    from irstd.config import find_config, load_config
    from irstd.engine.trainer import Trainer
    from irstd.errors import IRSTDError

    if args.resume:
        if args.config:
            raise IRSTDError("--resume uses the run's own config.yaml; do not also give --config")
        if args.out and Path(args.out) != Path(args.resume):
            raise IRSTDError("--resume continues in RUN_DIR; --out cannot name another directory")
        trainer = Trainer.from_run_dir(args.resume, args.overrides)
    else:
        path = find_config(args.config) if args.config else None
        cfg = load_config(path, args.overrides)
        trainer = Trainer(cfg, run_dir=args.out, config_name=path.stem if path else None)
    if args.print_config:
        print(trainer.cfg.to_yaml(), end="")
        return 0
    trainer.fit()
    return 0
