"""The `validate` stage: check a run's cheap set against K retrained networks on the user's own
task, so the report can say how much of the retraining truth the set finds.

It trains K seeds like the MAP model (the retrain source's checkpoint cache: resumable, and
seeds trained before are reused; in parallel on Ray when `workers > 1` or a cluster address is
given), filters them at the sample stage's ε on validation, and compares the cheap set with
them on the test patients (`rashomon.compare.compare_sets`: flag recall and precision, rank
correlation of per-patient disagreement, ambiguity, desideratum spreads). The retrained set's
own split-half agreement is the ceiling each figure is read against: two random halves of the
retrained set flag and rank patients only so alike.

Outputs in `validate/`: compare.csv (the cheap set's row and the retrained row), ceiling.csv,
per_patient.csv, probs_test.npy of the retrained models within ε, summary.json.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from rashomon import schema as S
from rashomon.context import StageContext
from rashomon.errors import RashomonError

SPLIT_HALF_ROUNDS = 20


def _finite(value: Any) -> float | None:
    """A summary number, or None where it is undefined (JSON has no NaN)."""
    value = float(value)
    return round(value, 4) if np.isfinite(value) else None


def split_half_ceiling(
    probs: np.ndarray, map_probs: np.ndarray, rounds: int = SPLIT_HALF_ROUNDS, seed: int = 0
) -> dict[str, float]:
    """Agreement of two random halves of one set (the retrained truth): mean over `rounds`
    splits of half A's flag recall and precision against half B's, and the Spearman ρ of their
    per-patient disagreement."""
    from rashomon.metrics.agreement import flag_agreement, rank_agreement, set_multiplicity

    m = probs.shape[0]
    if m < 4:
        raise RashomonError(
            f"the split-half ceiling needs at least 4 models within ε, the retrained set has {m}; "
            "retrain more seeds or use a larger epsilon"
        )
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(rounds):
        perm = rng.permutation(m)
        a, b = perm[: m // 2], perm[m // 2 : 2 * (m // 2)]
        ma = set_multiplicity(probs[a], map_probs)
        mb = set_multiplicity(probs[b], map_probs)
        precision, recall = flag_agreement(ma["flags"], mb["flags"])
        rows.append(
            {
                "flag_recall": recall,
                "flag_precision": precision,
                "spearman_disagreement": rank_agreement(ma["disagreement"], mb["disagreement"]),
                "ambiguity_half": ma["ambiguity"],
            }
        )
    frame = pd.DataFrame(rows)
    out = {k: float(frame[k].mean()) for k in frame.columns}
    out.update({f"{k}_sd": float(frame[k].std()) for k in frame.columns})
    out["models_per_half"] = m // 2
    out["rounds"] = rounds
    return out


def _train_on_ray(task_args: dict[str, Any], seeds: list[int], workers: int, address) -> None:
    """Train the missing seeds as Ray tasks (each writes its checkpoint into the shared cache)."""
    import ray

    from rashomon.cluster import start_ray

    started = start_ray(num_cpus=workers if address is None else None, address=address)

    @ray.remote(num_cpus=1)
    def one(seed: int) -> int:
        import torch

        from rashomon.api import load_task
        from rashomon.sets.retrain import trained_networks

        torch.set_num_threads(1)
        task = load_task(task_args["dataset"], seed=task_args["seed"], **task_args["loader"])
        trained_networks(
            task,
            [seed],
            task_args["arch"],
            task_args["epochs"],
            cache_dir=task_args["cache_dir"],
            **task_args["fit_options"],
        )
        return seed

    try:
        ray.get([one.remote(s) for s in seeds])
    finally:
        if started:
            ray.shutdown()


def run_validate_stage(ctx: StageContext) -> None:
    from rashomon.metrics.agreement import SetArrays, compare_sets
    from rashomon.models.predict import model_probs
    from rashomon.models.train import load_checkpoint
    from rashomon.sets.base import ModelSet
    from rashomon.sets.rashomon import MIN_SET_MODELS, rashomon_mask
    from rashomon.sets.retrain import trained_networks

    cfg, v = ctx.cfg, ctx.cfg.validity
    task = ctx.task()
    sampled = S.sample_record(ctx.run_dir)  # ε and criterion as the sample stage recorded them
    epsilon, on = sampled.epsilon, sampled.on
    model, _ = load_checkpoint(ctx.path("train", S.CHECKPOINT), device=ctx.device)
    t = cfg.train
    seeds = list(range(cfg.seed + 1, cfg.seed + 1 + v.models))  # the MAP model is seed cfg.seed
    if v.workers > 1 or v.address:
        task_args = {
            "dataset": cfg.data.dataset,
            "seed": cfg.seed,
            "loader": cfg.data.loader_options(),
            "arch": t.arch,
            "epochs": t.epochs,
            "cache_dir": v.cache_dir,
            "fit_options": t.fit_options(),
        }
        _train_on_ray(task_args, seeds, v.workers, v.address)
    nets, meta = trained_networks(
        task,
        seeds,
        t.arch,
        t.epochs,
        cache_dir=v.cache_dir,
        device=ctx.device,
        progress=ctx.progress,
        **t.fit_options(),
    )
    truth = ModelSet.from_models(nets, base=model, source="retrain", meta=meta)
    multilabel = task.kind == "multilabel"
    y_val = task.val.y.numpy()
    map_val = model_probs(model, task.val.x, multilabel, ctx.device).numpy()
    p_val = truth.predict(task.val.x, device=ctx.device).numpy()
    keep = rashomon_mask(
        p_val, y_val, epsilon, on=on, ref=map_val, min_models=0, class_weight=sampled.class_weight
    )
    if keep.sum() < MIN_SET_MODELS:
        raise RashomonError(
            f"only {int(keep.sum())} of {len(keep)} retrained networks are within ε = {epsilon:g} "
            "of the MAP model on validation; retrain more (--retrain K) or use a larger epsilon"
        )
    p_test = truth.subset(keep).predict(task.test.x, device=ctx.device).numpy()
    map_test = model_probs(model, task.test.x, multilabel, ctx.device).numpy()
    np.save(ctx.out / S.probs_file("test"), p_test.astype(np.float32))

    sample_dir = ctx.path("sample")
    per_model_file = S.TABLES["per_model"].path(ctx.run_dir)
    per_model = pd.read_csv(per_model_file)
    col = S.find_in_set_column(per_model.columns, epsilon, str(per_model_file))
    cheap_keep = per_model[col].astype(bool).to_numpy()
    cheap_probs = np.load(sample_dir / S.probs_file("test"), mmap_mode="r")[cheap_keep]
    cheap = SetArrays(
        name=sampled.source,
        probs=np.asarray(cheap_probs, dtype=np.float32),
        map_probs=map_test,
        models=len(per_model),
        source=sampled.source,
        run_dir=str(ctx.run_dir),
    )
    retrained = SetArrays(
        name="retrained",
        probs=p_test,
        map_probs=map_test,
        models=len(nets),
        source="retrain",
        run_dir=str(ctx.run_dir),
    )
    table, patients = compare_sets([cheap], retrained)
    table.to_csv(ctx.out / "compare.csv", index=False)
    patients.to_csv(ctx.out / "per_patient.csv", index=False)
    ceiling = split_half_ceiling(p_test, map_test, seed=cfg.seed)
    pd.DataFrame([ceiling]).to_csv(ctx.out / "ceiling.csv", index=False)
    row = table.iloc[0]
    truth_flags = int(patients["arbitrary:retrained"].sum())
    ctx.summary.update(
        epsilon=epsilon,
        retrained=len(nets),
        retrained_in_set=int(keep.sum()),
        retrained_flags=truth_flags,
        reused=meta["reused"],
        train_seconds=meta["train_seconds"],
        flag_recall=_finite(row["flag_recall"]),
        flag_precision=_finite(row["flag_precision"]),
        spearman_disagreement=_finite(row["spearman_disagreement"]),
        ambiguity_set=_finite(row["ambiguity"]),
        ambiguity_retrained=_finite(table.iloc[-1]["ambiguity"]),
        ceiling={k: _finite(val) for k, val in ceiling.items()},
    )
    if truth_flags == 0:
        # recall over an empty set of truly arbitrary patients is undefined, not 0 or 1
        set_flags = int(patients[f"arbitrary:{cheap.name}"].sum())
        ctx.console.print(
            f"the {int(keep.sum())} retrained networks within ε agree on every test patient, so "
            f"the set's flag recall is undefined; the set flags {set_flags} patients the "
            "retrained networks do not (retrain more, or train longer)"
        )
    else:
        ctx.console.print(
            f"the set flags {row['flag_recall']:.0%} of the {truth_flags} patients "
            f"{int(keep.sum())} retrained networks flag (precision {row['flag_precision']:.0%}); "
            f"two halves of the retrained set agree on {ceiling['flag_recall']:.0%}"
        )
    (ctx.out / "ceiling.json").write_text(
        json.dumps({k: _finite(v) for k, v in ceiling.items()}, indent=2)
    )
