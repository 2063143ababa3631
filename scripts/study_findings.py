"""Lockfisch et al. (2025)'s four findings, read off the retrained truth of one study config.

    RASHOMON_DATA=../shared/data .venv/bin/python scripts/study_findings.py \
        examples/study/validity-breast.yaml --seeds 0 31 --out runs/study/findings-breast
    RASHOMON_DATA=../shared/data .venv/bin/python scripts/study_findings.py \
        examples/study/capacity-breast.yaml --seeds 0 11 --widths 0.25 0.5 1 2 \
        --out runs/study/capacity-breast

The networks come from the retrain cache (`scripts/train_seeds.py` trains them; nothing here
trains). Seed `first` is the MAP model, the others its retrained truth; the Rashomon filter keeps
those within ε of the MAP model's validation loss (the class-weighted loss it was trained on).

1. Validation metrics do not single out one model: for validation accuracy, AUROC and loss, the
   models whose paired-bootstrap 95 % interval of (best − model) holds 0.
2. Arbitrary predictions: the share of test patients whose label differs between the MAP model
   and at least one retrained model within ε (ambiguity), with a bootstrap interval over
   patients, and as a growth curve over the number of retrained models (exact expectation and a
   5–95 % band, `rashomon.compare.ambiguity_growth`).
3. Ensembles with abstention: disjoint ensembles of k models of the truth, majority vote,
   abstaining below a vote share τ (`rashomon.decide.ensemble.ensemble_curves`): coverage
   against the disagreement left between ensembles; with `--cheap RUN_DIR` (a cell of the
   validity sweep) the same curves for ensembles drawn from that cheap set's models within ε.
4. Capacity (`--widths`): for each width, test accuracy of its seeds and the multiplicity of its
   own truth (ambiguity against its seed `first`, mean pairwise disagreement of its seeds).

For a binary task the summary also holds each network's test balanced accuracy and AUROC (the
MAP model's, and mean, sd, min and max over the networks within ε), the figures the imbalanced
defaults are judged by.

Writes CSV tables and PNG plots into `--out`, and prints the headline numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from rashomon.api import load_task
from rashomon.compare import ambiguity_growth, flip_matrix
from rashomon.decide.ensemble import ensemble_curves
from rashomon.metrics import auroc
from rashomon.sets.base import ModelSet
from rashomon.sets.rashomon import model_scores, rashomon_mask
from rashomon.sets.retrain import trained_networks
from rashomon.sweep.spec import _cell_config, load_sweep

BOOT = 2000
EPSILON = 0.02


def load_truth(sweep: str, seeds: range, overrides: dict[str, Any]):
    """The task and the cached networks of the sweep's base recipe (with `overrides`)."""
    _, base = load_sweep(sweep)
    cfg = _cell_config(base, overrides, "findings")
    task = load_task(cfg.data.dataset, seed=cfg.seed, **cfg.data.loader_options())
    t = cfg.train
    start = time.perf_counter()
    nets, meta = trained_networks(task, list(seeds), t.arch, t.epochs, **t.fit_options())
    if meta["train_seconds"] > 0:
        print(f"note: {len(seeds) - meta['reused']} seeds were not cached and were trained")
    mset = ModelSet.from_models(nets, base=nets[0], source="retrain")
    probs = {s: mset.predict(task.split(s).x).numpy() for s in ("val", "test")}
    print(f"{len(nets)} networks loaded and predicted in {time.perf_counter() - start:.0f} s")
    return task, nets, probs, cfg


def _auroc_rows(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.asarray(auroc(probs, y), dtype=float)


def finding_validation_noise(probs_val: np.ndarray, y: np.ndarray, weight, seed: int = 0):
    """Per metric: the best model on validation and how many models a paired bootstrap over
    validation patients cannot tell from it (95 % interval of best − model holds 0)."""
    rng = np.random.default_rng(seed)
    m, n, _ = probs_val.shape
    idx = rng.integers(0, n, size=(BOOT, n))
    labels = probs_val.argmax(-1)
    correct = (labels == y[None]).astype(float)  # [M, N]
    p_true = probs_val[:, np.arange(n), y]
    w = np.ones(n) if weight is None else np.asarray(weight)[y]
    nll = -np.log(np.clip(p_true, 1e-12, None)) * w[None]
    rows = []
    for metric, values, higher in (
        ("accuracy", correct, True),
        ("loss", nll, False),
    ):
        point = values.mean(1)
        best = int(np.argmax(point) if higher else np.argmin(point))
        boot = values[:, idx].mean(-1)  # [M, BOOT]
        diff = boot[best][None] - boot if higher else boot - boot[best][None]
        lo = np.percentile(diff, 2.5, axis=1)
        tied = int((lo <= 0).sum())
        rows.append(_noise_row(metric, point, best, tied, m))
    # AUROC: resample patients, recompute per model
    aucs = np.stack([_auroc_rows(probs_val[:, i], y[i]) for i in idx[:500]], axis=1)  # [M, B]
    point = _auroc_rows(probs_val, y)
    best = int(np.nanargmax(point))
    lo = np.nanpercentile(aucs[best][None] - aucs, 2.5, axis=1)
    rows.append(_noise_row("auroc", point, best, int((lo <= 0).sum()), m))
    return pd.DataFrame(rows)


def _noise_row(metric: str, point: np.ndarray, best: int, tied: int, m: int) -> dict[str, Any]:
    return {
        "metric": metric,
        "best_model": best,
        "best_value": float(point[best]),
        "map_value": float(point[0]),
        "range_min": float(np.nanmin(point)),
        "range_max": float(np.nanmax(point)),
        "indistinguishable_from_best": tied,
        "models": m,
    }


def patient_bootstrap_ambiguity(flips: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """Ambiguity (share of patients flipped by any model) and its 95 % bootstrap interval."""
    flagged = flips.any(axis=0).astype(float)
    rng = np.random.default_rng(seed)
    boot = flagged[rng.integers(0, len(flagged), size=(BOOT, len(flagged)))].mean(1)
    return float(flagged.mean()), float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def truth_findings(task, nets, probs, cfg, out: Path) -> dict[str, Any]:
    """Findings 1–3 from the truth's probabilities; writes their tables and plots into `out`."""
    y_val, y_test = task.val.y.numpy(), task.test.y.numpy()
    weight = nets[0].train_config.get("class_weight")
    keep = rashomon_mask(
        probs["val"], y_val, EPSILON, ref=probs["val"][0], min_models=0, class_weight=weight
    )
    keep[0] = True  # the MAP model itself
    noise = finding_validation_noise(probs["val"], y_val, weight)
    noise.to_csv(out / "finding1_validation_noise.csv", index=False)
    truth = probs["test"][1:][keep[1:]]  # the retrained models within ε, the MAP model aside
    flips = flip_matrix(truth, probs["test"][0])
    amb, lo, hi = patient_bootstrap_ambiguity(flips)
    growth = ambiguity_growth(flips)
    growth.to_csv(out / "finding2_growth.csv", index=False)
    scores = model_scores(probs["test"], y_test, None)
    in_set = probs["test"][keep]
    curves = ensemble_curves(
        in_set, y_test, ks=(1, 3, 5, 7), taus=(0.5, 0.6, 0.8, 1.0), n_partitions=20
    )
    curves.to_csv(out / "finding3_ensembles.csv", index=False)
    summary = {
        "dataset": cfg.data.dataset,
        "models": len(nets),
        "retrained_within_epsilon": int(keep[1:].sum()),
        "epsilon": EPSILON,
        "test_accuracy_map": float(scores["accuracy"][0]),
        "test_accuracy_mean": float(scores["accuracy"][keep].mean()),
        "test_accuracy_sd": float(scores["accuracy"][keep].std(ddof=1)),
        "ambiguity": amb,
        "ambiguity_ci": [lo, hi],
        "single_model_flip_share": float(growth["ambiguity"].iloc[0]),
        "noise": noise.to_dict(orient="records"),
    }
    if task.kind == "binary":
        summary.update(binary_scores(probs["test"], y_test, keep))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _plots(growth, curves, out, cfg.data.dataset)
    return summary


def binary_scores(probs: np.ndarray, y: np.ndarray, keep: np.ndarray) -> dict[str, float]:
    """Test balanced accuracy (at the 0.5 decision rule) and AUROC of every network [M, N, 2]:
    the MAP model's (index 0), and mean, sd, min and max over the networks kept."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    values = {
        "balanced_accuracy": np.array([balanced_accuracy_score(y, p.argmax(-1)) for p in probs]),
        "auroc": np.array([roc_auc_score(y, p[:, 1]) for p in probs]),
    }
    out = {}
    for name, v in values.items():
        kept = v[keep]
        out[f"test_{name}_map"] = float(v[0])
        out[f"test_{name}_mean"] = float(kept.mean())
        out[f"test_{name}_sd"] = float(kept.std(ddof=1))
        out[f"test_{name}_min"] = float(kept.min())
        out[f"test_{name}_max"] = float(kept.max())
    return out


def cheap_ensembles(run_dir: Path, y_test: np.ndarray, out: Path) -> pd.DataFrame:
    """Finding 3 for a cheap set: the ensemble curves of its models within ε (the sample stage's
    own filter at its ε), written beside the truth's."""
    from rashomon.compare import load_set

    cheap = load_set(run_dir)
    curves = ensemble_curves(
        cheap.probs, y_test, ks=(1, 3, 5, 7), taus=(0.5, 0.6, 0.8, 1.0), n_partitions=20
    )
    curves.insert(0, "set", cheap.name)
    curves.to_csv(out / "finding3_ensembles_cheap.csv", index=False)
    return curves


def _plots(growth: pd.DataFrame, curves: pd.DataFrame, out: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    a = ax[0]
    a.plot(growth["k"], 100 * growth["ambiguity"], color="#1f4e79")
    a.fill_between(
        growth["k"], 100 * growth["ambiguity_p05"], 100 * growth["ambiguity_p95"], alpha=0.25
    )
    a.set(xlabel="retrained models", ylabel="test patients flagged (%)", title="Ambiguity growth")
    b = ax[1]
    vote = curves[(curves["combine"] == "vote") & (curves["rule"] == "share")]
    for k, part in vote.groupby("k"):
        part = part.sort_values("threshold")
        b.plot(
            100 * (1 - part["coverage"]),
            100 * part["pairwise_disagreement"],
            marker="o",
            label=f"k = {k}",
        )
    b.set(
        xlabel="abstained (%)",
        ylabel="disagreement between ensembles (%)",
        title="Ensembles with abstention",
    )
    b.legend(fontsize=8)
    fig.suptitle(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "findings.png", dpi=120)
    plt.close(fig)


def capacity(sweep: str, seeds: range, widths: list[float], out: Path) -> pd.DataFrame:
    """Finding 4: accuracy and the retrained truth's multiplicity per width."""
    rows = []
    for width in widths:
        task, nets, probs, cfg = load_truth(sweep, seeds, {"train.width": width})
        y_val, y_test = task.val.y.numpy(), task.test.y.numpy()
        weight = nets[0].train_config.get("class_weight")
        keep = rashomon_mask(
            probs["val"], y_val, EPSILON, ref=probs["val"][0], min_models=0, class_weight=weight
        )
        acc = model_scores(probs["test"], y_test)["accuracy"]
        labels = probs["test"].argmax(-1)
        pairs = [(a, b) for a in range(len(nets)) for b in range(a + 1, len(nets))]
        disagree = np.array([(labels[a] != labels[b]).mean() for a, b in pairs])
        truth = probs["test"][1:][keep[1:]]
        amb, lo, hi = (
            patient_bootstrap_ambiguity(flip_matrix(truth, probs["test"][0]))
            if len(truth)
            else (float("nan"),) * 3
        )
        params = sum(p.numel() for p in nets[0].parameters())
        rows.append(
            {
                "width": width,
                "parameters": params,
                "seeds": len(nets),
                "test_accuracy_mean": float(acc.mean()),
                "test_accuracy_sd": float(acc.std(ddof=1)),
                "test_auroc_mean": float(np.nanmean(auroc(probs["test"], y_test))),
                "within_epsilon": int(keep[1:].sum()),
                "ambiguity": amb,
                "ambiguity_ci_low": lo,
                "ambiguity_ci_high": hi,
                "pairwise_disagreement_mean": float(disagree.mean()),
                "pairwise_disagreement_sd": float(disagree.std(ddof=1)),
            }
        )
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(out / "finding4_capacity.csv", index=False)
    return table


def main() -> None:
    """The command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("sweep")
    ap.add_argument("--seeds", type=int, nargs=2, default=(0, 31), metavar=("FIRST", "STOP"))
    ap.add_argument("--widths", type=float, nargs="*", default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", required=True)
    ap.add_argument("--cheap", type=Path, default=None, metavar="RUN_DIR")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = range(*args.seeds)
    if args.widths:
        print(capacity(args.sweep, seeds, args.widths, out).to_string())
        return
    overrides = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.set)}
    task, nets, probs, cfg = load_truth(args.sweep, seeds, overrides)
    summary = truth_findings(task, nets, probs, cfg, out)
    if args.cheap:
        cheap_ensembles(args.cheap, task.test.y.numpy(), out)
    print(json.dumps({k: v for k, v in summary.items() if k != "noise"}, indent=2))
    print(pd.DataFrame(summary["noise"]).to_string())


if __name__ == "__main__":
    main()
