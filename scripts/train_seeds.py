"""Train seeds into the retrain cache ahead of a sweep, so the retrained cell (and multimode,
and `rashomon validate`) find them: every seed is trained once, whoever asks first.

    RASHOMON_DATA=../shared/data .venv/bin/python scripts/train_seeds.py SWEEP.yaml \
        --seeds 0 30 [--set train.width=0.5 ...] [--every 2 --offset 1] [--threads 1]

The base config of the sweep file (its `base:` section) fixes the data and training, as the
sweep's cells do, with `--set KEY=VALUE` overrides (a grid value, e.g. one width of a capacity
sweep); `--every/--offset` split the seeds between processes. One line per seed, with the
seconds it took to train (run one such process at a time on a small machine).
"""

from __future__ import annotations

import argparse
import time

import torch
import yaml

from rashomon.api import load_task
from rashomon.sets.retrain import trained_networks
from rashomon.sweep.spec import _cell_config, load_sweep


def main() -> None:
    """The command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("sweep")
    ap.add_argument("--seeds", type=int, nargs=2, default=(0, 30), metavar=("FIRST", "STOP"))
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    _, base = load_sweep(args.sweep)
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    cfg = _cell_config(base, overrides, "seeds")
    task = load_task(cfg.data.dataset, seed=cfg.seed, **cfg.data.loader_options())
    t = cfg.train
    seeds = list(range(*args.seeds))[args.offset :: args.every]
    for s in seeds:
        start = time.perf_counter()
        _, meta = trained_networks(task, [s], t.arch, t.epochs, **t.fit_options())
        state = "cached" if meta["reused"] else f"trained in {time.perf_counter() - start:.0f} s"
        print(f"seed {s}: {state} ({meta['cache']}) {overrides or ''}", flush=True)


if __name__ == "__main__":
    main()
