"""MAP test accuracy and AUROC with the default training config, next to MedMNIST v2's ResNet-18
(28) (Yang et al., 2023, Table 3), as the mean ± sd over seeds.

    RASHOMON_DATA=../shared/data .venv/bin/python benchmarks/bench_map.py \\
        [--datasets breastmnist,pneumoniamnist,ham10000,ham10000-binary] [--seeds 0,1,2] \\
        [--archs cnn-small] [--set augment=true --set steps=2000] [--threads 1]

`ham10000` is the 7-class HAM10000 folder at 28 px (`load_folder(HAM, size=28, channels=3)`), a
lesion-grouped split of 5,944 images, not DermaMNIST's split: its paper row is DermaMNIST's, for
scale only. `ham10000-binary` is the same images with malignant/benign labels (no paper row).
Prints one row per training run, then one summary row per (dataset, arch). Scores come from
scikit-learn on the test split; nothing is chosen on test data.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

import rashomon as rs
from rashomon.config import TrainSection
from rashomon.models.registry import count_parameters

# MedMNIST v2, ResNet-18 (28): test ACC, AUC.
PAPER_RESNET18_28 = {
    "pneumoniamnist": (0.854, 0.944),
    "breastmnist": (0.863, 0.901),
    "ham10000": (0.735, 0.917),  # DermaMNIST: same images, a different (non-lesion-grouped) split
}


def load(name: str):
    root = Path(os.environ.get("RASHOMON_DATA", "../shared/data"))
    if name.startswith("ham10000"):
        from rashomon.data.folder import load_folder

        csv = root / "ham10000" / "labels-binary.csv" if name == "ham10000-binary" else None
        return load_folder(root / "ham10000", size=28, channels=3, csv=csv)
    return rs.load_task(name)


@torch.no_grad()
def test_scores(model: torch.nn.Module, x: torch.Tensor, y: np.ndarray) -> tuple[float, float]:
    """Accuracy and AUROC (binary: of class 1; multiclass: one-vs-rest macro average)."""
    model.eval()
    probs = torch.cat([torch.softmax(model(x[i : i + 512]), 1) for i in range(0, len(x), 512)])
    p = probs.numpy()
    acc = float((p.argmax(1) == y).mean())
    if p.shape[1] == 2:
        return acc, float(roc_auc_score(y, p[:, 1]))
    return acc, float(roc_auc_score(y, p, multi_class="ovr", labels=list(range(p.shape[1]))))


def parse_overrides(items: list[str]) -> dict:
    """`key=value` pairs validated by `TrainSection` (e.g. augment=true, steps=2000)."""
    pairs = dict(item.split("=", 1) for item in items)
    return TrainSection(**pairs).model_dump(include=set(pairs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--datasets", default="breastmnist,pneumoniamnist,ham10000")
    ap.add_argument("--archs", default="cnn-small")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--set", action="append", default=[], help="a TrainSection field=value")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.set)
    seeds = [int(s) for s in args.seeds.split(",")]
    print(
        f"# torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}, "
        f"overrides {overrides or 'none'}"
    )
    print(
        f"{'dataset':16} {'arch':10} {'seed':>4} {'params':>9} {'epochs':>6} {'chosen':>6} "
        f"{'test ACC':>8} {'test AUC':>8} {'seconds':>8}"
    )
    summary = []
    for ds in args.datasets.split(","):
        task = load(ds)
        y = task.test.y.numpy()
        for arch in args.archs.split(","):
            section = TrainSection(arch=arch, **overrides)
            runs = []
            for seed in seeds:
                t0 = time.perf_counter()
                model = rs.train(
                    task,
                    section.arch,
                    section.epochs,
                    seed,
                    **section.fit_options(),
                    device=args.device,
                    progress=False,
                )
                secs = time.perf_counter() - t0
                acc, auc = test_scores(model.cpu(), task.test.x, y)
                cfg = model.train_config
                runs.append((acc, auc, secs, cfg["epochs_run"]))
                print(
                    f"{ds:16} {arch:10} {seed:4d} {count_parameters(model):9d} "
                    f"{cfg['epochs_run']:6d} {cfg['selected_epoch']:6d} {acc:8.3f} {auc:8.3f} "
                    f"{secs:8.1f}",
                    flush=True,
                )
            summary.append((ds, arch, np.array(runs)))
    print(f"# load average {os.getloadavg()[0]:.1f}")
    print(
        "| dataset | arch | epochs run | test ACC | test AUC | seconds per run "
        "| MedMNIST v2 ResNet-18 (28) ACC / AUC |"
    )
    print("|---|---|---|---|---|---|---|")
    for ds, arch, r in summary:
        pa, pu = PAPER_RESNET18_28.get(ds, (None, None))
        paper = f"{pa:.3f} / {pu:.3f}" if pa is not None else "—"
        sd = r.std(axis=0, ddof=1) if len(r) > 1 else np.zeros(r.shape[1])
        print(
            f"| {ds} | {arch} | {r[:, 3].min():.0f}–{r[:, 3].max():.0f} "
            f"| {r[:, 0].mean():.3f} ± {sd[0]:.3f} | {r[:, 1].mean():.3f} ± {sd[1]:.3f} "
            f"| {r[:, 2].mean():.0f} | {paper} |"
        )


if __name__ == "__main__":
    main()
