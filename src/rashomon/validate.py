"""The `validate` stage: check a run's cheap set against K retrained networks on the user's own
task, so the report can say how much of the retraining truth the set finds.

It trains K seeds like the MAP model (the retrain source's checkpoint cache: resumable, and
seeds trained before are reused; in parallel on Ray when `workers > 1` or a cluster address is
given), filters them at the sample stage's ε on validation, and compares the cheap set with
them on the test patients (`rashomon.compare.compare_with_truth`). The headline is size-matched:
h = ⌊T/2⌋ of the set's models against a random half of the T retrained networks within ε, read
against the retrained set's own split-half ceiling (two disjoint halves of h flag patients only
so alike), as the ratios set / ceiling. Beside it: rank correlation and average precision of
per-patient flip rates, and ambiguity against the number of models (how many retrained networks
show as much arbitrariness as the set). Full-size flag recall and precision (all of the set
against all T) are kept as `flag_*_full`; they grow with the set's size whatever its quality.

Outputs in `validate/`: compare.csv (the cheap set's row and the retrained row), ceiling.csv,
growth.csv (ambiguity against the number of models, both sets), per_patient.csv, probs_test.npy
of the retrained models within ε, summary.json.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from rashomon import schema as S
from rashomon.compare import MATCHED_ROUNDS
from rashomon.errors import RashomonError

SPLIT_HALF_ROUNDS = MATCHED_ROUNDS  # the ceiling's rounds are the matched comparison's


def _finite(value: Any) -> float | None:
    """A summary number, or None where it is undefined (JSON has no NaN)."""
    value = float(value)
    return round(value, 4) if np.isfinite(value) else None


def split_half_ceiling(
    probs: np.ndarray, map_probs: np.ndarray, rounds: int = SPLIT_HALF_ROUNDS, seed: int = 0
) -> dict[str, float]:
    """Agreement of two disjoint random halves of one set (the retrained truth), over the
    splits `rashomon.compare.truth_halves` draws for (models, rounds, seed), so its flag figures
    are the compare table's `flag_*_ceiling`: mean (and sd) of half B's flag recall and
    precision against half A's, the Spearman ρ of their per-patient disagreement and a half's
    ambiguity."""
    from rashomon.compare import flag_agreement, rank_agreement, set_multiplicity, truth_halves

    m = probs.shape[0]
    if m < 4:
        raise RashomonError(
            f"the split-half ceiling needs at least 4 models within ε, the retrained set has {m}; "
            "retrain more seeds or use a larger epsilon"
        )
    rows = []
    for a, b in truth_halves(m, rounds, seed):
        ma = set_multiplicity(probs[a], map_probs)
        mb = set_multiplicity(probs[b], map_probs)
        precision, recall = flag_agreement(mb["flags"], ma["flags"])
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

    from rashomon.sweep.execution import start_ray

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


def run_validate_stage(ctx: Any) -> None:
    from rashomon.compare import (
        COMPARE_FILE,
        GROWTH_FILE,
        PER_PATIENT_FILE,
        SetArrays,
        compare_with_truth,
    )
    from rashomon.models.train import load_checkpoint
    from rashomon.predict import model_probs
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
    c = compare_with_truth([cheap], retrained, seed=cfg.seed)
    table, patients = c.table, c.patients
    table.to_csv(ctx.out / COMPARE_FILE, index=False)
    patients.to_csv(ctx.out / PER_PATIENT_FILE, index=False)
    c.growth.to_csv(ctx.out / GROWTH_FILE, index=False)
    ceiling = split_half_ceiling(p_test, map_test, seed=cfg.seed)
    pd.DataFrame([ceiling]).to_csv(ctx.out / "ceiling.csv", index=False)
    (ctx.out / "ceiling.json").write_text(
        json.dumps({k: _finite(v) for k, v in ceiling.items()}, indent=2)
    )
    row = table.iloc[0]
    truth_flags = int(patients["arbitrary:retrained"].sum())
    # the headline first: the CLI's stage summary shows the first numbers of this record
    ctx.summary.update(
        epsilon=epsilon,
        retrained_in_set=int(keep.sum()),
        retrained_flags=truth_flags,
        matched_models=int(row["matched_models"]),
        flag_recall_ratio=_finite(row["flag_recall_ratio"]),
        flag_precision_ratio=_finite(row["flag_precision_ratio"]),
        flip_rate_ap=_finite(row["flip_rate_ap"]),
        ambiguity_set=_finite(row["ambiguity"]),
        retrained_models_for_ambiguity=_finite(row["retrained_models_for_ambiguity"]),
        retrained=len(nets),
        reused=meta["reused"],
        train_seconds=meta["train_seconds"],
        **{
            key: _finite(row[key])
            for key in (
                "flag_recall_matched",
                "flag_recall_matched_sd",
                "flag_precision_matched",
                "flag_precision_matched_sd",
                "flag_recall_ceiling",
                "flag_recall_ceiling_sd",
                "flag_precision_ceiling",
                "flag_precision_ceiling_sd",
                "flip_rate_spearman",
                "flip_rate_ap_base_rate",
                "ambiguity_matched",
                "flag_recall_full",
                "flag_precision_full",
                "spearman_disagreement",
            )
        },
        matched_rounds=int(row["matched_rounds"]),
        matched_with_replacement=bool(row["matched_with_replacement"]),
        ambiguity_retrained=_finite(table.iloc[-1]["ambiguity"]),
        ceiling={k: _finite(val) for k, val in ceiling.items()},
    )
    for line in validity_lines(row, table.iloc[-1], c.growth, truth_flags):
        ctx.console.print(line)


def _growth_points(growth: pd.DataFrame, name: str, ks: list[int]) -> str:
    """'k=1 0.021, k=12 0.151, …' for the growth rows of one set at the k given (those it has)."""
    curve = growth[growth["set"] == name].set_index("k")["ambiguity"]
    return ", ".join(f"k={k} {curve[k]:.3f}" for k in dict.fromkeys(ks) if k in curve.index)


def validity_lines(
    row: pd.Series, truth_row: pd.Series, growth: pd.DataFrame, truth_flags: int
) -> list[str]:
    """The CLI summary of `rashomon validate`: the size-matched ratios against the ceiling, the
    flip-rate agreement, a few points of each ambiguity growth curve, and the full-size figures
    (named as such)."""
    from rashomon.compare import reach_phrase

    t, h, m = int(truth_row["models_in_set"]), int(row["matched_models"]), int(row["models_in_set"])
    if truth_flags == 0:
        # recall over an empty set of truly arbitrary patients is undefined, not 0 or 1
        return [
            f"the {t} retrained networks within ε agree on every test patient, so the set's flag "
            f"recall is undefined; the set flags {row['ambiguity']:.0%} of patients the "
            "retrained networks do not (retrain more, or train longer)"
        ]
    drawn = (
        " (the set has fewer: drawn with replacement)" if row["matched_with_replacement"] else ""
    )
    lines = [
        f"at {h} models each{drawn}, the set flags {row['flag_recall_matched']:.0%} ± "
        f"{row['flag_recall_matched_sd']:.0%} of the patients a retrained half flags (precision "
        f"{row['flag_precision_matched']:.0%} ± {row['flag_precision_matched_sd']:.0%}); two "
        f"retrained halves agree on {row['flag_recall_ceiling']:.0%} (precision "
        f"{row['flag_precision_ceiling']:.0%}): ratios recall {row['flag_recall_ratio']:.2f}, "
        f"precision {row['flag_precision_ratio']:.2f} ({int(row['matched_rounds'])} rounds)",
        f"per-patient flip rates: Spearman ρ {row['flip_rate_spearman']:.2f} with the retrained "
        f"set's; average precision {row['flip_rate_ap']:.2f} for its {truth_flags} flagged "
        f"patients (base rate {row['flip_rate_ap_base_rate']:.2f})",
        "ambiguity by number of models k: retrained "
        f"{_growth_points(growth, truth_row['set'], [1, h, t])}; "
        f"set {_growth_points(growth, row['set'], [1, h, t, m])}",
    ]
    reach = reach_phrase(row["retrained_models_for_ambiguity"], t, float(truth_row["ambiguity"]))
    lines.append(f"the set's full-size ambiguity is {row['ambiguity']:.3f}: {reach}")
    lines.append(
        f"full size, not comparable ({m} models against {t}): recall "
        f"{row['flag_recall_full']:.0%}, precision {row['flag_precision_full']:.0%}"
    )
    return lines
