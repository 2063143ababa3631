"""A synthetic run directory that follows docs/run-directory.md, for report development and tests.

The numbers come from a seeded simulation, not from a network: every test patient has a latent
margin (its distance from the decision boundary); each of the M sampled models adds a fixed bias
and fixed per-patient noise to that margin, so patients near the boundary get different labels
from different models (predictive multiplicity), and models with more noise have a higher
validation loss and drop out of the Rashomon set first. All tables are then computed from those
probabilities the way the real stages define them, so the tables agree with each other.

When a real Task is given its labels, group codes and sizes are used (so images in the report
show the real patients); `train/model.pt` is a real, untrained checkpoint of the configured
architecture (the report reads its spec and parameter count, never its predictions).

Usage: `python tests/fake_run.py OUT_DIR` (uses $RASHOMON_DATA for the real labels if set).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

EPSILONS = (0.005, 0.01, 0.02, 0.05)
EPSILON = 0.02
CORRUPTIONS = ("gaussian_noise", "contrast_down", "pixelate")
ATTACKS = ("fgsm", "pgd")
ATTACK_EPSILONS = (0.0, 1 / 255, 2 / 255, 4 / 255)
ENSEMBLE_SIZES = (1, 3, 5, 10, 20)
AGREEMENT = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _split_arrays(task, split: str, n: int, rng: np.random.Generator):
    """Labels and group codes of one split: the real task's, or synthetic ones."""
    if task is not None:
        s = task.split(split)
        y = s.y.numpy().astype(int)
        groups = {a: s.groups[a].numpy().astype(int) for a in task.attributes}
        return y, groups
    y = (rng.random(n) < 0.625).astype(int)
    groups = {"intensity": rng.integers(0, 3, n), "random": rng.integers(0, 2, n)}
    return y, groups


def _simulate_probs(y, groups, bias, noise_scale, rng, margin_rng):
    """P[M+1, N, 2]; row 0 is the MAP model (no bias, no noise)."""
    n = len(y)
    sign = 2 * y - 1
    # Harder patients in the 'low' intensity tertile: a group difference worth reporting.
    hardness = np.where(groups["intensity"] == 0, 1.25, 1.0)
    margin = sign * margin_rng.normal(1.6, 1.4, n) / hardness
    eps = rng.standard_normal((len(bias), n))
    logits = margin[None, :] + bias[:, None] + noise_scale[:, None] * eps
    logits = np.concatenate([margin[None, :], logits])
    p1 = _sigmoid(logits)
    return np.stack([1 - p1, p1], axis=-1).astype(np.float32)


def _nll(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = np.clip(np.take_along_axis(probs, y[None, :, None], axis=2)[..., 0], 1e-7, 1)
    return -np.log(p).mean(axis=1)


def _ece(p1: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    conf = np.maximum(p1, 1 - p1)
    correct = ((p1 > 0.5).astype(int) == y).astype(float)
    edges = np.linspace(0.5, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges) - 1, 0, bins - 1)
    return float(
        sum(
            abs(correct[idx == b].mean() - conf[idx == b].mean()) * (idx == b).mean()
            for b in range(bins)
            if (idx == b).any()
        )
    )


def _per_model_metrics(probs: np.ndarray, y: np.ndarray, groups: dict) -> pd.DataFrame:
    rows = []
    for m in range(probs.shape[0]):
        p1 = probs[m, :, 1]
        pred = (p1 > 0.5).astype(int)
        correct = pred == y
        row = {
            "accuracy": correct.mean(),
            "auroc": roc_auc_score(y, p1),
            "ece": _ece(p1, y),
            "nll": float(_nll(probs[m : m + 1], y)[0]),
            "brier": float(((p1 - y) ** 2).mean()),
        }
        for attr, g in groups.items():
            accs = [correct[g == k].mean() for k in np.unique(g)]
            tprs = [pred[(g == k) & (y == 1)].mean() for k in np.unique(g)]
            row[f"accuracy_gap[{attr}]"] = max(accs) - min(accs)
            row[f"tpr_gap[{attr}]"] = max(tprs) - min(tprs)
        rows.append(row)
    return pd.DataFrame(rows)


def _capacity(probs: np.ndarray, iters: int = 60) -> np.ndarray:
    """2^(Rashomon capacity) per sample: Blahut–Arimoto over the models as channel inputs."""
    p = np.clip(probs.transpose(1, 0, 2), 1e-12, 1)  # [N, M, C]
    n, m, _ = p.shape
    w = np.full((n, m), 1.0 / m)
    for _ in range(iters):
        q = np.einsum("nm,nmc->nc", w, p)
        d = np.exp((p * np.log(p / q[:, None, :])).sum(axis=2))
        w = w * d
        w /= w.sum(axis=1, keepdims=True)
    q = np.einsum("nm,nmc->nc", w, p)
    cap = (w * (p * np.log2(p / q[:, None, :])).sum(axis=2)).sum(axis=1)
    return 2.0 ** np.clip(cap, 0, None)


def _spread_rows(values: pd.DataFrame, map_row: pd.Series, source: str, eps: float):
    rows = []
    for metric in values.columns:
        v = values[metric].to_numpy(float)
        stats = {
            "map": float(map_row[metric]),
            "mean": v.mean(),
            "std": v.std(),
            "min": v.min(),
            "q05": np.quantile(v, 0.05),
            "q95": np.quantile(v, 0.95),
            "max": v.max(),
        }
        rows += [
            {
                "metric": metric,
                "group": "all",
                "source": source,
                "epsilon": eps,
                "stat": k,
                "value": float(s),
            }
            for k, s in stats.items()
        ]
    return rows


def write_fake_run(
    run_dir: Path,
    task=None,
    *,
    models: int = 200,
    seed: int = 0,
    stages: tuple[str, ...] = ("train", "sample", "evaluate", "decide"),
    robustness: bool = True,
    data_root: str | None = None,
    arch: str = "cnn-small",
) -> Path:
    """Write a synthetic run directory; returns it. `task` (a real Task) supplies labels/groups."""
    import torch

    from rashomon.config import RunConfig, dump_config
    from rashomon.models.registry import build_model, count_parameters
    from rashomon.models.train import save_checkpoint

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    name = task.name if task is not None else "pneumoniamnist"
    cfg = RunConfig.model_validate(
        {
            "seed": seed,
            "data": {"dataset": name, "root": data_root},
            "train": {"arch": arch, "epochs": 20},
            "sample": {
                "source": "laplace",
                "models": models,
                "epsilons": list(EPSILONS),
                "epsilon": EPSILON,
            },
            "evaluate": {
                "corruptions": list(CORRUPTIONS),
                "attacks": list(ATTACKS),
                "attack_epsilons": list(ATTACK_EPSILONS),
            },
            "decide": {"ensemble_sizes": list(ENSEMBLE_SIZES), "agreement": list(AGREEMENT)},
        }
    )
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    env = {
        "python": sys.version.split()[0],
        "platform": "synthetic",
        "packages": {},
        "seed": seed,
        "device": "cpu",
    }
    (run_dir / "environment.json").write_text(json.dumps(env, indent=2))
    records = {}

    # ---- shared simulation -------------------------------------------------------------------
    y_val, g_val = _split_arrays(task, "val", 524, rng)
    y_test, g_test = _split_arrays(task, "test", 624, rng)
    n_train = len(task.train) if task is not None else 4708
    bias = rng.normal(0.0, 0.12, models)
    noise_scale = rng.uniform(0.02, 0.55, models)
    # Same per-model bias/noise scale on both splits: a model noisy on val is noisy on test.
    pv = _simulate_probs(
        y_val,
        g_val,
        bias,
        noise_scale,
        np.random.default_rng(seed + 1),
        np.random.default_rng(seed + 2),
    )
    pt = _simulate_probs(
        y_test,
        g_test,
        bias,
        noise_scale,
        np.random.default_rng(seed + 3),
        np.random.default_rng(seed + 4),
    )
    map_pv, set_pv = pv[0], pv[1:]
    map_pt, set_pt = pt[0], pt[1:]
    val_loss = _nll(set_pv, y_val)
    map_val_loss = float(_nll(map_pv[None], y_val)[0])
    rel = val_loss / map_val_loss - 1.0
    in_set = {e: rel <= e for e in EPSILONS}
    keep = in_set[EPSILON]

    from rashomon.run import data_fingerprint, make_record

    data = data_fingerprint(cfg, run_dir)

    def write_record(stage: str) -> None:
        # Real records (config hash, data fingerprint, upstream ids): the fake run's stages are
        # current for its config, as a finished run's would be.
        records[stage] = make_record(cfg, stage, records, data, seconds=1.0)

    # ---- train -------------------------------------------------------------------------------
    if "train" in stages:
        d = run_dir / "train"
        d.mkdir(exist_ok=True)
        model = build_model(arch, 1, 2, 28)
        save_checkpoint(model, d / "model.pt", task)
        epochs = 14
        ep = np.arange(1, epochs + 1)
        train_loss = 0.22 + 0.45 * np.exp(-ep / 3.0) + rng.normal(0, 0.005, epochs)
        vloss = map_val_loss + 0.35 * np.exp(-ep / 2.5) + 0.004 * np.maximum(ep - 9, 0)
        vacc = ((map_pv[:, 1] > 0.5) == y_val).mean() - 0.12 * np.exp(-ep / 2.5)
        pd.DataFrame(
            {"epoch": ep, "train_loss": train_loss, "val_loss": vloss, "val_acc": vacc}
        ).to_csv(d / "history.csv", index=False)
        summary = {"parameters": count_parameters(model), "epochs_run": epochs, "seconds": 41.2}
        for split, p, y in (("val", map_pv, y_val), ("test", map_pt, y_test)):
            summary[f"{split}_accuracy"] = round(float(((p[:, 1] > 0.5) == y).mean()), 4)
            summary[f"{split}_auroc"] = round(float(roc_auc_score(y, p[:, 1])), 4)
        (d / "summary.json").write_text(json.dumps(summary, indent=2))
        write_record("train")

    # ---- sample ------------------------------------------------------------------------------
    if "sample" in stages:
        d = run_dir / "sample"
        d.mkdir(exist_ok=True)
        torch.save({"synthetic": True, "M": models}, d / "set.pt")
        np.save(d / "probs_val.npy", set_pv)
        np.save(d / "probs_test.npy", set_pt)
        np.save(d / "map_probs_val.npy", map_pv)
        np.save(d / "map_probs_test.npy", map_pt)
        dist = np.sqrt(noise_scale**2 + bias**2) * rng.uniform(0.8, 1.2, models)
        per_model = pd.DataFrame(
            {
                "model": np.arange(models),
                "val_loss": val_loss,
                "val_accuracy": ((set_pv[:, :, 1] > 0.5) == y_val).mean(axis=1),
                "distance_l2": dist * 3.1,
                "distance_rel": dist * 0.021,
            }
        )
        for e in EPSILONS:
            per_model[f"in_set@{e}"] = in_set[e]
        per_model.to_csv(d / "per_model.csv", index=False)
        pd.DataFrame(
            [
                {
                    "epsilon": e,
                    "on": "loss",
                    "models_in_set": int(in_set[e].sum()),
                    "models": models,
                }
                for e in EPSILONS
            ]
        ).to_csv(d / "survival.csv", index=False)
        summary = {
            "source": "laplace",
            "models": models,
            "epsilon": EPSILON,
            "on": "loss",
            "models_in_set": int(keep.sum()),
            "fit_seconds": 3.4,
            "sample_seconds": 0.8,
            "predict_seconds": 5.1,
        }
        (d / "summary.json").write_text(json.dumps(summary, indent=2))
        write_record("sample")

    # ---- evaluate ----------------------------------------------------------------------------
    kept_pt = set_pt[keep]
    map_pred = (map_pt[:, 1] > 0.5).astype(int)
    preds = (kept_pt[:, :, 1] > 0.5).astype(int)
    share1 = preds.mean(axis=0)
    disagreement = 4 * share1 * (1 - share1)
    flips = (preds != map_pred[None]).sum(axis=0)
    capacity = _capacity(kept_pt)
    if "evaluate" in stages:
        d = run_dir / "evaluate"
        d.mkdir(exist_ok=True)
        pm_val = _per_model_metrics(np.concatenate([map_pv[None], set_pv[keep]]), y_val, g_val)
        pm_test = _per_model_metrics(np.concatenate([map_pt[None], kept_pt]), y_test, g_test)
        ids = np.concatenate([[-1], np.flatnonzero(keep)])
        for df in (pm_val, pm_test):
            df.insert(0, "model", ids)
        pm_val.to_csv(d / "per_model_val.csv", index=False)
        pm_test.to_csv(d / "per_model_test.csv", index=False)
        rows = []
        for e in EPSILONS:
            sel = pm_test.iloc[1:][in_set[e][keep] if e <= EPSILON else np.ones(keep.sum(), bool)]
            if len(sel):
                rows += _spread_rows(sel.drop(columns="model"), pm_test.iloc[0], "laplace", e)
        pd.DataFrame(rows).to_csv(d / "metrics.csv", index=False)
        ps = pd.DataFrame(
            {
                "index": np.arange(len(y_test)),
                "label": y_test,
                "map_pred": map_pred,
                "map_prob": map_pt[:, 1],
                "disagreement": disagreement,
                "capacity": capacity,
                "vpr_min": kept_pt[:, :, 1].min(axis=0),
                "vpr_max": kept_pt[:, :, 1].max(axis=0),
                "flips": flips,
            }
        )
        for attr, g in g_test.items():
            ps[attr] = g
        ps.to_csv(d / "per_sample.csv", index=False)
        mult = [
            {"metric": "ambiguity", "group": "all", "value": float((flips > 0).mean())},
            {
                "metric": "discrepancy",
                "group": "all",
                "value": float((preds != map_pred[None]).mean(axis=1).max()),
            },
            {"metric": "mean_disagreement", "group": "all", "value": float(disagreement.mean())},
            {"metric": "mean_capacity", "group": "all", "value": float(capacity.mean())},
        ]
        for attr, g in g_test.items():
            for k in np.unique(g):
                m = g == k
                mult += [
                    {
                        "metric": "ambiguity",
                        "group": f"{attr}={k}",
                        "value": float((flips[m] > 0).mean()),
                    },
                    {
                        "metric": "mean_disagreement",
                        "group": f"{attr}={k}",
                        "value": float(disagreement[m].mean()),
                    },
                ]
        pd.DataFrame(mult).to_csv(d / "multiplicity.csv", index=False)
        conv = []
        order = rng.permutation(len(kept_pt))
        for n in (2, 5, 10, 20, 50, 100, 150, len(kept_pt)):
            if n > len(kept_pt):
                continue
            sub = preds[order[:n]]
            conv.append(
                {
                    "models": n,
                    "ambiguity": float((sub != map_pred).any(0).mean()),
                    "mean_capacity": float(_capacity(kept_pt[order[:n]]).mean()),
                }
            )
        pd.DataFrame(conv).to_csv(d / "convergence.csv", index=False)
        if robustness:
            _write_robustness(d / "robustness.csv", kept_pt, map_pt, y_test, rng)
        summary = {
            "models_in_set": int(keep.sum()),
            "ambiguity": mult[0]["value"],
            "discrepancy": mult[1]["value"],
            "seconds": 12.5,
        }
        (d / "summary.json").write_text(json.dumps(summary, indent=2))
        write_record("evaluate")

        # ---- decide --------------------------------------------------------------------------
        if "decide" in stages:
            d = run_dir / "decide"
            d.mkdir(exist_ok=True)
            _write_decide(
                d, pm_val, pm_test, kept_pt, map_pred, y_test, flips, disagreement, n_train, rng
            )
            write_record("decide")

    (run_dir / "stages.json").write_text(json.dumps(records, indent=2))
    return run_dir


def _write_robustness(path: Path, kept_pt, map_pt, y, rng) -> None:
    rows = []
    ids = [-1] + list(range(min(40, len(kept_pt))))
    for model in ids:
        p = map_pt if model == -1 else kept_pt[model]
        margin = np.log(p[:, 1] / p[:, 0])
        for c_i, corr in enumerate(CORRUPTIONS):
            for sev in range(1, 6):
                shrink = 1.0 - 0.13 * sev * (1 + 0.3 * c_i)
                noisy = margin * shrink + rng.normal(0, 0.35 * sev, len(y)) - 0.2 * sev
                acc = float(((noisy > 0).astype(int) == y).mean())
                rows.append(
                    {
                        "model": model,
                        "corruption": corr,
                        "severity": sev,
                        "metric": "accuracy",
                        "value": acc,
                    }
                )
        for a_i, attack in enumerate(ATTACKS):
            for eps in ATTACK_EPSILONS:
                push = eps * 255 * (0.9 + 0.4 * a_i)
                adv = margin - np.sign(margin) * push * rng.uniform(0.8, 1.2)
                acc = float(((adv > 0).astype(int) == y).mean())
                rows.append(
                    {
                        "model": model,
                        "corruption": attack,
                        "severity": eps,
                        "metric": "accuracy",
                        "value": acc,
                    }
                )
    pd.DataFrame(rows).to_csv(path, index=False)


def _write_decide(d, pm_val, pm_test, kept_pt, map_pred, y, flips, disagreement, n_train, rng):
    desiderata = {
        "accuracy": 1,
        "auroc": 1,
        "ece": -1,
        "accuracy_gap[intensity]": -1,
        "tpr_gap[random]": -1,
    }
    rows = []
    for name, sign in desiderata.items():
        v_val = pm_val[name].to_numpy()[1:]
        v_test = pm_test[name].to_numpy()[1:]
        best = int(np.argmax(sign * v_val))
        gain = float(sign * (v_test[best] - pm_test[name].iloc[0]))
        half = 1.96 * max(float(np.std(v_test)), 1e-3) * 1.6
        rho = float(spearmanr(v_val, v_test).statistic)
        low, high = gain - half, gain + half
        verdict = (
            "real gain" if low > 0 else ("worse than MAP" if high < 0 else "within selection noise")
        )
        rows.append(
            {
                "desideratum": name,
                "direction": "max" if sign > 0 else "min",
                "map_test": float(pm_test[name].iloc[0]),
                "selected_model": int(pm_val["model"].iloc[1 + best]),
                "selected_val": float(v_val[best]),
                "selected_test": float(v_test[best]),
                "gain": gain,
                "gain_low": low,
                "gain_high": high,
                "spearman": rho,
                "verdict": verdict,
            }
        )
    pd.DataFrame(rows).to_csv(d / "selection.csv", index=False)

    vals = pm_val.iloc[1:]
    a, g = vals["accuracy"].to_numpy(), vals["accuracy_gap[intensity]"].to_numpy()
    front = [
        i
        for i in range(len(a))
        if not np.any((a >= a[i]) & (g <= g[i]) & ((a > a[i]) | (g < g[i])))
    ]
    pd.DataFrame(
        {
            "front": "accuracy vs accuracy_gap[intensity]",
            "model": vals["model"].to_numpy()[front],
            "accuracy": a[front],
            "accuracy_gap[intensity]": g[front],
        }
    ).to_csv(d / "pareto.csv", index=False)

    preds = (kept_pt[:, :, 1] > 0.5).astype(int)
    m = len(preds)
    ens_rows = []
    for k in ENSEMBLE_SIZES:
        if k > m:
            continue
        draws = [rng.choice(m, k, replace=False) for _ in range(20)]
        for thr in AGREEMENT:
            decisions = []
            for idx in draws:
                share = preds[idx].mean(axis=0)
                agree = np.maximum(share, 1 - share)
                dec = np.where(agree >= thr - 1e-9, (share > 0.5).astype(int), -1)
                if k == 1:
                    dec = preds[idx[0]]
                decisions.append(dec)
            dec = np.array(decisions)
            covered = dec >= 0
            cov = float(covered.mean())
            acc = float((dec[covered] == np.broadcast_to(y, dec.shape)[covered]).mean())
            both = covered.all(axis=0)
            resid = float((dec[:, both] != dec[0, both]).any(axis=0).mean()) if both.any() else 0
            ens_rows.append(
                {
                    "k": k,
                    "rule": "majority",
                    "threshold": thr,
                    "coverage": cov,
                    "accuracy_covered": acc,
                    "residual_ambiguity": resid,
                }
            )
    pd.DataFrame(ens_rows).to_csv(d / "ensembles.csv", index=False)

    arbitrary = np.flatnonzero(flips > 0)
    arbitrary = arbitrary[np.argsort(-disagreement[arbitrary], kind="stable")]
    share = preds[:10].mean(axis=0)
    abstains = np.maximum(share, 1 - share) < 0.8
    pd.DataFrame(
        {
            "index": arbitrary,
            "label": y[arbitrary],
            "map_pred": map_pred[arbitrary],
            "flips": flips[arbitrary],
            "disagreement": disagreement[arbitrary],
            "ensemble_abstains": abstains[arbitrary],
        }
    ).to_csv(d / "patients.csv", index=False)

    lsi = np.exp(rng.normal(-1.0, 1.0, n_train))
    dis = np.clip(
        0.15 * np.log1p(lsi) * rng.uniform(0.2, 1.8, n_train) + rng.normal(0, 0.02, n_train), 0, 1
    )
    pd.DataFrame({"index": np.arange(n_train), "lsi": lsi, "disagreement": dis}).to_csv(
        d / "lsi.csv", index=False
    )
    (d / "summary.json").write_text(json.dumps({"desiderata": len(rows), "seconds": 4.0}))


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/fake")
    root = os.environ.get("RASHOMON_DATA")
    task = None
    if root:
        from rashomon.api import load_task

        task = load_task("pneumoniamnist", root=root)
    write_fake_run(out, task, data_root=root)
    print(out)
