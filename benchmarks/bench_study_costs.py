"""What each cell of a validity sweep costs, timed with nothing else running: the seconds the
validity study's cost–validity frontier is drawn with (docs/results.md).

    RASHOMON_DATA=../shared/data .venv/bin/python benchmarks/bench_study_costs.py \
        runs/study/validity-breast --networks 2 --out runs/study/costs-breast.csv

For every cell of the sweep directory (each an ordinary run directory with a finished sample
stage): a set built without training (Laplace, perturb, dropout, SWAG, multimode, Riemannian)
is built and its validation and test predictions made again, as the sample stage does, and
timed (multimode trains the retrained seeds its modes need, into an empty cache); a set of
trained networks (retrained seeds, forks) is timed by training `--networks` of
its networks afresh into an empty cache and scaling the mean to the cell's number of networks
(training cost is linear in the number of networks; the row says it was scaled). The retrained
cell's row is the truth's cost. One thread, as the study ran.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

TRAINING_SOURCES = ("retrain", "fork")
SEED_READING_SOURCES = ("multimode",)  # train the seeds they use, timed whole (a new cache)


def cell_cost(run_dir: Path, networks: int) -> dict[str, object]:
    """Seconds to build one cell's set and predict validation and test, measured now."""
    from rashomon import schema as S
    from rashomon.api import load_task
    from rashomon.config import load_config
    from rashomon.models.train import load_checkpoint
    from rashomon.sets.registry import BuildContext, build_model_set

    cfg = load_config(run_dir / S.CONFIG)
    task = load_task(cfg.data.dataset, seed=cfg.seed, **cfg.data.loader_options())
    model, meta = load_checkpoint(run_dir / "train" / S.CHECKPOINT)
    record = S.sample_record(run_dir)
    s, t = cfg.sample, cfg.train
    options = s.resolved_options
    models = s.models
    total = None  # networks the cell trains, when it trains any
    cache = Path(tempfile.mkdtemp(prefix="study-cost-"))
    if record.source in SEED_READING_SOURCES:
        options = options.model_copy(update={"cache_dir": str(cache)})
    if record.source in TRAINING_SOURCES:
        options = options.model_copy(update={"cache_dir": str(cache)})
        if record.source == "fork" and options.forks:  # forks with a Laplace set each
            total = options.forks
            options = options.model_copy(update={"forks": min(networks, total)})
        else:  # one network per model
            total, models = models, min(networks, models)
    ctx = BuildContext(
        seed=cfg.seed,
        models=models,
        epsilon=float(s.epsilon),
        on=s.on,
        class_weight=record.class_weight,
        train={"arch": t.arch, "epochs": t.epochs, "fit_options": t.fit_options()},
        run_dir=run_dir,
        options=options,
    )
    try:
        start = time.perf_counter()
        mset = build_model_set(record.source, model, task, options, ctx)
        for split in ("val", "test"):
            mset.predict(task.split(split).x)
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    row: dict[str, object] = {"cell": run_dir.name, "source": record.source}
    if total is not None:
        trained = float(mset.meta.get("train_seconds", 0.0))
        timed = min(networks, total)
        per_network = trained / timed
        row.update(
            networks_timed=timed,
            networks=total,
            seconds_per_network=per_network,
            # the set's other work (Laplace fits, predictions) as timed, its training scaled
            seconds=seconds - trained + per_network * total,
            scaled=True,
        )
    else:
        row.update(seconds=seconds, scaled=False)
    return row


def main() -> None:
    from rashomon.errors import RashomonError

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--networks", type=int, default=2, help="networks trained per training cell")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cells", nargs="*", default=None, help="cell names (default: every one)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cells = sorted(p for p in (args.sweep_dir / "cells").iterdir() if (p / "sample").is_dir())
    if args.cells:
        cells = [c for c in cells if c.name in args.cells or c.name.split("set-")[-1] in args.cells]
    rows = []
    for cell in cells:
        try:
            row = cell_cost(cell, args.networks)
        except RashomonError as err:
            # e.g. a handful of late forks that all kept the trained model's weights: the
            # sweep's larger set passed that check, so the row says why it has no seconds
            row = {"cell": cell.name, "error": str(err)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
