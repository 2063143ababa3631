"""MAP test accuracy and AUROC of our architectures next to the MedMNIST v2 paper's ResNet-18 (28).

    RASHOMON_DATA=../shared/data .venv/bin/python benchmarks/bench_map.py [--epochs-resnet 5]

Prints one row per (dataset, architecture) with the paper's row beside it.
"""

from __future__ import annotations

import argparse
import time

import rashomon as rs
from rashomon.models.registry import count_parameters
from rashomon.models.stage import map_scores
from rashomon.predict import model_probs

PAPER_RESNET18_28 = {"pneumoniamnist": (0.854, 0.944), "breastmnist": (0.863, 0.901)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--datasets", default="pneumoniamnist,breastmnist")
    ap.add_argument("--archs", default="cnn-small,resnet18")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--epochs-resnet", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    print(
        f"{'dataset':16} {'arch':10} {'params':>9} {'epochs':>6} {'test ACC':>8} {'test AUC':>8} "
        f"{'paper ACC':>9} {'paper AUC':>9} {'seconds':>8}"
    )
    for ds in args.datasets.split(","):
        task = rs.load_task(ds)
        for arch in args.archs.split(","):
            epochs = args.epochs_resnet if arch == "resnet18" else args.epochs
            t0 = time.perf_counter()
            hist: list[dict] = []
            model = rs.train(
                task, arch, epochs, args.seed, device=args.device, progress=False, history=hist
            )
            secs = time.perf_counter() - t0
            s = map_scores(
                model_probs(model, task.test.x, task.kind == "multilabel", args.device).numpy(),
                task.test.y.numpy(),
                task.kind,
            )
            pa, pu = PAPER_RESNET18_28.get(ds, (float("nan"), float("nan")))
            print(
                f"{ds:16} {arch:10} {count_parameters(model):9d} {len(hist):6d} "
                f"{s['accuracy']:8.3f} {s['auroc']:8.3f} {pa:9.3f} {pu:9.3f} {secs:8.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
