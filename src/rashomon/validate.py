"""The `validate` stage: check a run's cheap set against K retrained networks on the user's own
task, so the report can say how much of the retraining truth the set finds.

It trains K seeds like the MAP model (the retrain source's checkpoint cache: resumable, and
seeds trained before are reused; in parallel on Ray when `workers > 1` or a cluster address is
given), filters them at the sample stage's ε on validation, and compares the cheap set with them
on the test patients (`rashomon.metrics.agreement.compare_with_truth`). The headline is
size-matched: h = ⌊T/2⌋ of the set's models against a random half of the T retrained networks
within ε, read against the retrained set's own split-half ceiling (two disjoint halves of h flag
patients only so alike), as the ratios set / ceiling. Beside it: rank correlation and average
precision of per-patient flip rates, and ambiguity against the number of models (how many
retrained networks show as much arbitrariness as the set). Full-size flag recall and precision
(all of the set against all T) are kept as `flag_*_full`; they grow with the set's size whatever
its quality.

The retrained networks within ε are also audited as any set is (`truth_tables`), because they
are the cleanest test of whether an equally good model is fairer or more robust: each is a
valid model by construction, with no approximation in how the set was drawn. Their per-model
desiderata on validation and test, the spread of each across them, the gaps within acquisition
strata, and best-in-set selection chosen on validation and judged on test (paired bootstrap,
Holm over the desiderata, the `random` attribute as null control, the power of the test split,
fairlearn's ThresholdOptimizer on the MAP model and on each retrained network, the decide
stage's constrained baseline beside it) are written next to the cheap set's, and
selection_vs_set.csv puts the two selections side by side per desideratum. Corruption
robustness is audited (and selected for) when the evaluate stage audited the set on
corruptions; adversarial attacks are not (each retrained network is a full network to attack).

Outputs in `validate/`: compare.csv (the cheap set's row and the retrained row), ceiling.csv,
growth.csv (ambiguity against the number of models, both sets), per_patient.csv, probs_test.npy
of the retrained models within ε, summary.json; and for the retrained networks within ε the
evaluate and decide stages' tables of the same names and columns: per_model_val.csv,
per_model_test.csv, spread.csv (evaluate/metrics.csv's layout), within_stratum.csv,
robustness.csv (with corruptions), selection.csv, selection_values.csv, postprocess.csv,
notes.csv; and selection_vs_set.csv (`rashomon.schema.selection_vs_set_columns`). A `model`
there is the retrained network's index: seed = the run's seed + 1 + model.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from rashomon import schema as S
from rashomon.context import StageContext
from rashomon.errors import RashomonError
from rashomon.metrics.agreement import MATCHED_ROUNDS

if TYPE_CHECKING:
    from rashomon.decide import CorruptedInputs

SPLIT_HALF_ROUNDS = MATCHED_ROUNDS  # the ceiling's rounds are the matched comparison's
MIN_TRUTH_MODELS = 4  # the split-half ceiling compares two halves of at least two models
SPREAD_FILE = "spread.csv"
SELECTION_VS_SET_FILE = "selection_vs_set.csv"
# The evaluate and decide tables written for the retrained truth, under their own file names
TRUTH_TABLES = (
    "per_model_val",
    "per_model_test",
    "within_stratum",
    "robustness",
    "selection",
    "selection_values",
    "postprocess",
    "notes",
)


def _finite(value: Any) -> float | None:
    """A summary number, or None where it is undefined (JSON has no NaN)."""
    value = float(value)
    return round(value, 4) if np.isfinite(value) else None


def split_half_ceiling(
    probs: np.ndarray, map_probs: np.ndarray, rounds: int = SPLIT_HALF_ROUNDS, seed: int = 0
) -> dict[str, float]:
    """Agreement of two disjoint random halves of one set (the retrained truth), over the
    splits `rashomon.metrics.agreement.truth_halves` draws for (models, rounds, seed), so its
    flag figures are the compare table's `flag_*_ceiling`: mean (and sd) of half B's flag recall and
    precision against half A's, the Spearman ρ of their per-patient disagreement and a half's
    ambiguity."""
    from rashomon.metrics.agreement import (
        flag_agreement,
        rank_agreement,
        set_multiplicity,
        truth_halves,
    )

    m = probs.shape[0]
    if m < MIN_TRUTH_MODELS:
        raise RashomonError(
            f"the split-half ceiling needs at least {MIN_TRUTH_MODELS} models within ε, the "
            f"retrained set has {m}; retrain more seeds or use a larger epsilon"
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


def truth_tables(
    *,
    val_probs: np.ndarray,
    test_probs: np.ndarray,
    map_val_probs: np.ndarray,
    map_test_probs: np.ndarray,
    ids: np.ndarray,
    y: dict[str, np.ndarray],
    groups: dict[str, dict[str, np.ndarray]],
    derived: dict[str, bool],
    levels: dict[str, list[str]],
    kind: str,
    epsilon: float,
    threshold: float = 0.5,
    acquisition: list[str] | None = None,
    desiderata: list[Any] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    class_names: Any = (),
    baseline_test: dict[str, float] | None = None,
    threshold_test: dict[str, float] | None = None,
    robustness: pd.DataFrame | None = None,
    corrupted: CorruptedInputs | None = None,
) -> dict[str, pd.DataFrame]:
    """The evaluate and decide stages' per-model tables and selection for the retrained
    networks within ε (`val_probs`/`test_probs` [T, N, C], `ids` [T] their indices among the
    retrained networks), against the MAP model: per_model_val/per_model_test (MAP row −1),
    spread (evaluate/metrics.csv's layout, source "retrain"), within_stratum, selection,
    selection_values and notes (`rashomon.decide.decide_all`, selection only: the same
    desiderata, bootstrap, Holm correction and power). `robustness` (robustness.csv rows of
    these ids) adds the per-model corruption accuracy, `corrupted` (decide_all's
    corrupted_val/test [1 + T, N] with corrupted_models the positions 0..T−1) the
    corruption_accuracy selection row. `model` columns hold `ids`."""
    from rashomon import metrics as rm
    from rashomon.decide import decide_all
    from rashomon.evaluate import per_model_frames, robustness_columns
    from rashomon.metrics.acquisition import within_stratum_table

    ids = np.asarray(ids, np.int64)
    args = dict(attributes_derived=derived, threshold=threshold, kind=kind, level_names=levels)
    probs = {"val": (val_probs, map_val_probs), "test": (test_probs, map_test_probs)}
    out = {
        f"per_model_{s}": per_model_frames(p, mp, ids, y=y[s], groups=groups[s], **args)
        for s, (p, mp) in probs.items()
    }
    if robustness is not None:
        out["robustness"] = robustness
        out["per_model_test"] = out["per_model_test"].merge(
            robustness_columns(robustness), on=S.MODEL, how="left"
        )
    rows = out["per_model_test"]
    set_rows = rows[rows[S.MODEL] >= 0].drop(columns=S.MODEL)
    map_row = rows[rows[S.MODEL] == -1].drop(columns=S.MODEL).iloc[0]
    out["spread"] = rm.spread_table(
        set_rows,
        map_row,
        source="retrain",
        epsilon=epsilon,
        attributes_derived=derived,
        n_boot=n_boot,
        seed=seed,
    )
    test_args = (test_probs, map_test_probs, y["test"], groups["test"], derived, levels)
    out["within_stratum"] = within_stratum_table(*test_args, acquisition, threshold, kind)
    decided = decide_all(
        val_probs=val_probs,
        val_y=y["val"],
        test_probs=test_probs,
        test_y=y["test"],
        map_val_probs=map_val_probs,
        map_test_probs=map_test_probs,
        val_groups=groups["val"],
        test_groups=groups["test"],
        kind=kind,
        desiderata=desiderata,
        n_boot=n_boot,
        seed=seed,
        class_names=class_names,
        baseline_test=baseline_test,
        threshold_test=threshold_test,
        selection_only=True,
        **(corrupted or {}),
    )
    for key in ("selection", "selection_values"):  # positions among the T → retrained ids
        if key in decided and len(decided[key]):
            decided[key][S.MODEL] = ids[decided[key][S.MODEL].to_numpy(np.int64)]
    out.update(decided)
    return out


def selection_side_by_side(cheap: pd.DataFrame | None, truth: pd.DataFrame) -> pd.DataFrame:
    """validate/selection_vs_set.csv: per desideratum (and label), the cheap set's selection
    (`set_*`) and the retrained truth's (`retrained_*`): models within ε, the chosen model's
    test value, its gain over the MAP model with interval, the smallest gain the test split
    detects at 80 % power, the Holm-adjusted p-value, the verdict and the spread of the set's
    test values (q95 − q05), and whether the verdicts agree. Both gains are over the same MAP
    model on the same test patients. A desideratum only one side selected for (e.g.
    corruption_accuracy) has the other side empty."""
    labels = S.LABEL in truth.columns or (cheap is not None and S.LABEL in cheap.columns)
    keys = [S.DESIDERATUM, *([S.LABEL] if labels else [])]
    q05, q95 = S.set_test_quantile(0.05), S.set_test_quantile(0.95)

    def side(table: pd.DataFrame | None, who: str) -> pd.DataFrame:
        names = {c: S.side_column(who, c) for c in S.SIDE_BY_SIDE}
        if table is None or not len(table):
            return pd.DataFrame(columns=[*keys, S.HIGHER_IS_BETTER, S.MAP_TEST, *names.values()])
        t = table.assign(**{S.TEST_SPREAD: table[q95] - table[q05]})
        return t[[*keys, S.HIGHER_IS_BETTER, S.MAP_TEST, *names]].rename(columns=names)

    a, b = side(cheap, S.SET_SIDE), side(truth, S.TRUTH_SIDE)
    both = a.merge(b, on=keys, how="outer", suffixes=("", "_truth"))
    # the truth's rows in its order, then the ones only the set selected for (outer sorts)
    order = pd.concat([b[keys], a[keys]]).drop_duplicates().reset_index(drop=True)
    both = order.merge(both, on=keys, how="left")
    for col in (S.HIGHER_IS_BETTER, S.MAP_TEST):  # the same on both sides where both have it
        both[col] = both[col].where(both[col].notna(), both[f"{col}_truth"])
    verdicts = [S.side_column(w, S.VERDICT) for w in (S.SET_SIDE, S.TRUTH_SIDE)]
    both[S.VERDICTS_AGREE] = both[verdicts[0]].notna() & (both[verdicts[0]] == both[verdicts[1]])
    return both[S.selection_vs_set_columns(labels)]


def _truth_robustness(ctx: Any, task: Any, model: Any, kept: Any, ids: np.ndarray):
    """Corruption robustness of the retrained networks within ε, on test and (for selection)
    validation, with the evaluate stage's seeded corruptions: (robustness rows with the
    networks' ids, decide_all's corrupted inputs), or (None, {}) when the run's set was not
    audited on corruptions (no evaluate/robustness.csv: nothing to set the truth beside, and
    the corruptions' own import and generation cost minutes on a CPU)."""
    from rashomon.evaluate.robustness import robustness_tables
    from rashomon.evaluate.stage import corruption_options

    e = ctx.cfg.evaluate
    cheap = S.TABLES["robustness"].path(ctx.run_dir)
    if "robustness" not in e.metrics or e.corruptions == [] or not cheap.exists():
        ctx.summary["retrained_robustness"] = "skipped: the run's set has no robustness.csv"
        return None, {}
    common = corruption_options(ctx)
    table = robustness_tables(kept, model, task, **common)
    correct = {"test": table.attrs.pop("patient_correct", None)}
    table.attrs.pop("patient_index", None)
    set_rows = table[S.MODEL] >= 0
    table.loc[set_rows, S.MODEL] = ids[table.loc[set_rows, S.MODEL].to_numpy(np.int64)]
    if not e.robustness_selection or correct["test"] is None:
        return table, {}
    val = robustness_tables(kept, model, task, split="val", **common)
    return table, {
        "corrupted_val": val.attrs["patient_correct"],
        "corrupted_test": correct["test"],
        "corrupted_models": np.arange(len(ids)),
    }


def _truth_baselines(ctx: Any, task: Any, arrays: dict[str, Any], ids: np.ndarray):
    """The decide stage's constrained baseline (its test values, from decide/selection.csv)
    and fairlearn's ThresholdOptimizer on the MAP model and the first decide.threshold_models
    retrained networks: (baseline_test, threshold_test, postprocess table or None)."""
    from rashomon.decide.postprocess import threshold_frame
    from rashomon.decide.stage import baseline_attribute

    d = ctx.cfg.decide
    baseline_test = None
    cheap = S.TABLES["selection"].path(ctx.run_dir)
    constrained = S.baseline_columns()[0]
    if task.kind != "multilabel" and cheap.exists():
        frame = pd.read_csv(cheap)
        if constrained in frame.columns:
            baseline_test = dict(zip(frame[S.DESIDERATUM], frame[constrained], strict=True))
    if not (d.threshold_optimizer and task.kind == "binary"):
        return baseline_test, None, None
    attribute = baseline_attribute(task, d.constrained_attribute)
    try:
        k = min(d.threshold_models, len(ids))
        post = threshold_frame(
            arrays["map_val"],
            arrays["map_test"],
            arrays["val"][:k],
            arrays["test"][:k],
            ids[:k],
            arrays["y"]["val"],
            arrays["y"]["test"],
            arrays["groups"]["val"][attribute],
            arrays["groups"]["test"][attribute],
            attribute,
            d.threshold_constraint,
            ctx.cfg.seed,
        )
    except (RashomonError, KeyError) as exc:  # a baseline that cannot be fitted is a note
        ctx.summary["retrained_threshold_baseline"] = f"skipped on {attribute}: {exc}"
        return baseline_test, None, None
    rows = post[(post[S.MODEL] == -1) & (post[S.SPLIT] == "test")]
    threshold_test = dict(zip(rows[S.DESIDERATUM], rows[S.VALUE], strict=True))
    ctx.summary["retrained_threshold_baseline"] = f"{d.threshold_constraint} on {attribute}"
    return baseline_test, threshold_test, post


def audit_truth(ctx: Any, task: Any, model: Any, kept: Any, ids: np.ndarray, probs: dict) -> None:
    """Write the retrained truth's desiderata and selection (`truth_tables`) into the stage
    folder, and selection_vs_set.csv beside the cheap set's selection when decide has run.
    `kept`: the ModelSet of the retrained networks within ε; `probs`: their val and test
    probabilities and the MAP model's (map_val, map_test)."""
    from rashomon.decide.stage import chosen_desiderata
    from rashomon.evaluate import chosen_attributes

    start = time.perf_counter()
    cfg, e = ctx.cfg, ctx.cfg.evaluate
    attributes = chosen_attributes(task, e.groups)
    arrays = dict(probs)
    arrays["y"] = {s: task.split(s).y.numpy() for s in ("val", "test")}
    arrays["groups"] = {
        s: {a: task.split(s).groups[a].numpy() for a in attributes} for s in ("val", "test")
    }
    baseline_test, threshold_test, post = _truth_baselines(ctx, task, arrays, ids)
    robustness, corrupted = _truth_robustness(ctx, task, model, kept, ids)
    tables = truth_tables(
        val_probs=arrays["val"],
        test_probs=arrays["test"],
        map_val_probs=arrays["map_val"],
        map_test_probs=arrays["map_test"],
        ids=ids,
        y=arrays["y"],
        groups=arrays["groups"],
        derived={a: task.attributes[a].derived for a in attributes},
        levels={a: list(task.attributes[a].levels) for a in attributes},
        kind=task.kind,
        epsilon=S.sample_record(ctx.run_dir).epsilon,
        threshold=e.threshold,
        acquisition=e.acquisition,
        desiderata=chosen_desiderata(task, cfg.decide.select),
        n_boot=e.bootstrap,
        seed=cfg.seed,
        class_names=task.class_names,
        baseline_test=baseline_test,
        threshold_test=threshold_test,
        robustness=robustness,
        corrupted=corrupted,
    )
    if post is not None:
        tables["postprocess"] = post
    for key in TRUTH_TABLES:
        if key in tables:
            tables[key].to_csv(ctx.out / S.TABLES[key].file, index=False)
    tables["spread"].to_csv(ctx.out / SPREAD_FILE, index=False)
    truth_sel = tables.get("selection")
    cheap_file = S.TABLES["selection"].path(ctx.run_dir)
    cheap = pd.read_csv(cheap_file) if cheap_file.exists() else None
    ctx.summary["retrained_audit_seconds"] = round(time.perf_counter() - start, 1)
    if truth_sel is None:
        ctx.summary["retrained_selection"] = "skipped (notes.csv says why)"
        return
    side = selection_side_by_side(cheap, truth_sel)
    side.to_csv(ctx.out / SELECTION_VS_SET_FILE, index=False)
    verdict = S.side_column(S.TRUTH_SIDE, S.VERDICT)
    picked = side[side[verdict].notna()]
    names = picked[S.DESIDERATUM].astype(str)
    if S.LABEL in side.columns:  # multilabel: one row per desideratum and label
        names = names + "@" + picked[S.LABEL].astype(str)
    ctx.summary["retrained_selection"] = dict(zip(names, picked[verdict], strict=True))
    ctx.console.print(truth_selection_line(side, len(ids), cheap is not None))


def truth_selection_line(side: pd.DataFrame, models: int, cheap: bool) -> str:
    """One CLI line: which desiderata a model chosen among the retrained networks improves on
    test, and which the cheap set's choice does."""

    def gains(who: str) -> str:
        verdict = side[S.side_column(who, S.VERDICT)]
        names = side.loc[verdict == "real gain", S.DESIDERATUM].astype(str).tolist()
        return ", ".join(dict.fromkeys(names)) or "no desideratum"

    line = (
        f"best-in-set selection among the {models} retrained networks within ε: a real test gain "
        f"for {gains(S.TRUTH_SIDE)}"
    )
    if cheap:
        line += f"; among the set's models: {gains(S.SET_SIDE)}"
    return line + " (validate/selection_vs_set.csv)"


def run_validate_stage(ctx: StageContext) -> None:
    """The validate stage: K retrained seeds as the truth, compared with the run's set."""
    from rashomon.metrics.agreement import SetArrays, compare_with_truth
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
    kept = truth.subset(keep)
    p_test = kept.predict(task.test.x, device=ctx.device).numpy()
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
    table.to_csv(ctx.out / S.COMPARE_FILE, index=False)
    patients.to_csv(ctx.out / S.PER_PATIENT_FILE, index=False)
    c.growth.to_csv(ctx.out / S.GROWTH_FILE, index=False)
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
    probs = {"val": p_val[keep], "test": p_test, "map_val": map_val, "map_test": map_test}
    audit_truth(ctx, task, model, kept, np.flatnonzero(keep), probs)


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
    from rashomon.metrics.agreement import reach_phrase

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
