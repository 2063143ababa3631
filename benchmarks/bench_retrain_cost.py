"""What a set costs: a last-layer Laplace set of 1000 models (fit + sample + predict val and
test) against retraining 10 cnn-small models (train + predict val and test), PneumoniaMNIST.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_retrain_cost.py [--retrain-models 2]

Alternated in paired rounds (benchmarks/_paired.py). Each round retrains `--retrain-models` k
fresh models (new seeds, empty checkpoint cache) and the ratio to the Laplace set is scaled by
10 / k: training cost is linear in the number of models, and k = 2 over 5 rounds trains 10 in all.
"""

from __future__ import annotations

import itertools
import os
import shutil

import _fixtures as fx
from _paired import run_row, write_json


def main() -> None:
    ap = fx.parser(__doc__.split("\n")[0])
    ap.add_argument("--retrain-models", type=int, default=2, help="k models per round")
    ap.add_argument("--retrain-epochs", type=int, default=None, help="default 3 (--quick 1)")
    args = fx.parse(ap)
    k = args.retrain_models
    epochs = args.retrain_epochs or (1 if args.quick else 3)

    import rashomon as rs
    from rashomon.sets.retrain import retrain

    head = fx.header(args)
    task, model = fx.setup(args)
    splits = [task.split(s).x for s in ("val", "test")]

    def laplace_set():
        post = rs.laplace(
            model, task, subset="last_layer", hessian="kron", prior="marglik", device=args.device
        )
        mset = post.sample(1000, seed=0)
        return [mset.predict(x, device=args.device) for x in splits]

    seeds = itertools.count(100, k)

    def retrained():
        seed = next(seeds)  # fresh seeds and cache: time the training, not the cache
        cache = fx.CACHE / f"retrain-{os.getpid()}-{seed}"
        try:
            rset = retrain(
                task,
                k,
                arch="cnn-small",
                epochs=epochs,
                seed=seed,
                cache_dir=cache,
                device=args.device,
            )
            return [rset.predict(x, device=args.device) for x in splits]
        finally:
            shutil.rmtree(cache, ignore_errors=True)

    row = run_row(
        "vs_retrain",
        f"Laplace set of 1000 vs retraining {k} cnn-small models of {epochs} epochs per round",
        {"laplace": laplace_set, "retrain": retrained},
        args.rounds,
        ratios=[("retrain", "laplace"), ("retrain", "laplace", 10 / k)],
        labels={
            "laplace": "last-layer Laplace: fit + sample 1000 + predict",
            "retrain": f"retrain {k} + predict",
        },
        warmup=False,
        retrain_models_per_round=k,
        retrain_epochs=epochs,
    )
    write_json([row], args.json, head)


if __name__ == "__main__":
    main()
