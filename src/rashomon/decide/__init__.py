"""Decisions over a Rashomon set: best-in-set selection (validation -> test), Pareto selection,
ensembles with abstention, and the link between Laplace Sample Information and multiplicity.

``decide_all`` is the whole ``decide`` stage as a pure function of arrays; the stage wrapper only
loads the arrays written by ``sample``/``evaluate`` and writes each returned DataFrame once, as
the file ``rashomon.schema.TABLES[key]`` names (``<key>.csv``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import numpy as np
import pandas as pd

from rashomon import schema as S
from rashomon.decide.desiderata import (
    Desideratum,
    default_desiderata,
    metric_table,
    single_model_values,
)
from rashomon.decide.ensemble import (
    arbitrary_patients,
    binomial_pvalues,
    draw_ensembles,
    ensemble_curves,
    ensemble_predict,
    smallest_k,
)
from rashomon.decide.pareto import pareto_choice, pareto_front, pareto_selection
from rashomon.decide.selection import (
    apply_holm,
    best_in_set,
    bootstrap_gain,
    compare_with_baseline,
    robustness_selection,
    spearman,
)
from rashomon.errors import RashomonError
from rashomon.metrics.degenerate import degeneracy
from rashomon.metrics.validation import check_probs, check_vector, require_array

__all__ = [
    "Desideratum",
    "arbitrary_patients",
    "best_in_set",
    "binomial_pvalues",
    "bootstrap_gain",
    "compare_with_baseline",
    "decide_all",
    "default_desiderata",
    "degenerate_map",
    "draw_ensembles",
    "ensemble_curves",
    "ensemble_predict",
    "metric_table",
    "pareto_choice",
    "pareto_front",
    "pareto_selection",
    "smallest_k",
    "spearman",
]


class CorruptedInputs(TypedDict, total=False):
    """`decide_all`'s inputs for selection on corrupted images (its `corrupted_*` keywords)."""

    corrupted_val: np.ndarray
    corrupted_test: np.ndarray
    corrupted_models: np.ndarray


def decide_all(
    *,
    val_probs: Any,
    val_y: Any,
    test_probs: Any,
    test_y: Any,
    map_val_probs: Any,
    map_test_probs: Any,
    val_groups: Mapping[str, Any] | None = None,
    test_groups: Mapping[str, Any] | None = None,
    rashomon_mask: Any | None = None,
    kind: str = "binary",
    desiderata: Sequence[Desideratum] | None = None,
    val_values: pd.DataFrame | None = None,
    test_values: pd.DataFrame | None = None,
    map_val: Mapping[str, float] | None = None,
    map_test: Mapping[str, float] | None = None,
    ensemble_sizes: Sequence[int] = (1, 3, 5, 10, 20),
    taus: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
    alphas: Sequence[float] = (0.05,),
    n_partitions: int = 5,
    ambiguity_target: float = 0.01,
    patient_threshold: float = 0.8,
    pareto_epsilon: float = 0.01,
    n_boot: int = 1000,
    rho_min: float = 0.2,
    baseline_test: Mapping[str, float] | None = None,
    lsi: Any | None = None,
    train_preds: Any | None = None,
    map_train_preds: Any | None = None,
    lsi_top_k: int = 16,
    seed: int = 0,
    class_names: Sequence[str] = (),
    threshold_test: Mapping[str, float] | None = None,
    corrupted_val: Any | None = None,
    corrupted_test: Any | None = None,
    corrupted_models: Any | None = None,
    selection_only: bool = False,
) -> dict[str, pd.DataFrame]:
    """The ``decide`` stage.

    Inputs (NumPy arrays or tensors):
      - ``val_probs [M, N_val, C]``, ``test_probs [M, N_test, C]``: the model set's
        probabilities (multilabel: ``[M, N, L]`` sigmoid probabilities, audited per label);
        ``rashomon_mask [M]`` (bool) keeps the Rashomon set, None = all models already are;
      - ``val_y``, ``test_y``: labels; ``map_val_probs``, ``map_test_probs``: the MAP model's
        ``[N, C]`` (or ``[N, L]``); ``val_groups``/``test_groups``: attribute -> ``[N]`` codes;
      - ``desiderata``: default accuracy, balanced accuracy, NLL, Brier, ECE and per attribute
        worst-group accuracy and TPR / demographic-parity gaps (binary);
      - ``val_values``/``test_values`` (optional, ``[M_set rows]``, Rashomon-set models only)
        and ``map_val``/``map_test``: extra per-model desiderata computed elsewhere (e.g.
        robustness); give them a ``Desideratum`` without metric in ``desiderata`` (no CI);
      - ``baseline_test``: test values of a constrained baseline (desideratum -> value);
      - ``lsi [N_train]`` with ``train_preds [M, N_train]`` (set labels on the training images,
        mask applied here too) and ``map_train_preds [N_train]``;
      - ``class_names``: the task's, so that notes name a class as the report does;
      - ``threshold_test``: test values of the MAP model post-processed by fairlearn's
        ThresholdOptimizer (desideratum -> value), set beside the selection like the
        constrained baseline;
      - ``corrupted_val``/``corrupted_test`` ``[1 + M', N]``: per-patient correctness on
        corrupted images (row 0 the MAP model) of the set's models ``corrupted_models [M']``
        (ids of the sample stage's set): adds the ``corruption_accuracy`` selection row;
      - ``selection_only``: only ``selection``, ``selection_values`` and ``notes`` (the
        retrained truth's selection in `rashomon validate`, beside the set's).

    Returns DataFrames keyed as ``rashomon.schema.TABLES`` (written as ``<key>.csv``, columns
    as the schema lists them): ``selection`` (best-in-set per desideratum),
    ``selection_values`` (long: model, desideratum, val, test), ``pareto``, ``pareto_front``,
    ``ensembles`` (curves over k and the abstention rule), ``ensemble_min_k``, ``patients``
    (the arbitrary test patients), and with LSI inputs ``lsi`` (per training sample) and
    ``lsi_summary``; ``notes`` lists what was
    skipped and why. Selection and Pareto selection are skipped (a note says why) when the MAP
    model is degenerate, see :func:`degenerate_map`. Multilabel tasks get a ``label`` column in
    every table."""
    if kind == "multilabel":
        return _per_label(locals())
    mask = None if rashomon_mask is None else np.asarray(require_array(rashomon_mask), bool)
    vp = require_array(val_probs, "val_probs")
    tp = require_array(test_probs, "test_probs")
    if mask is not None:
        if mask.shape != vp.shape[:1]:
            raise RashomonError(f"rashomon_mask must be [{len(vp)}] booleans, got {mask.shape}")
        vp, tp = vp[mask], tp[mask]
    # Checked once masked: a model outside the set may have diverged (NaN probabilities).
    vp = check_probs(vp, name="val_probs")
    tp = check_probs(tp, name="test_probs")
    m = vp.shape[0]
    if m < 2:
        raise RashomonError(f"the Rashomon set has {m} model(s); use a larger epsilon")
    vy = check_vector(val_y, vp.shape[1], "val_y").astype(np.int64)
    ty = check_vector(test_y, tp.shape[1], "test_y").astype(np.int64)
    vg = {k: np.asarray(require_array(v)) for k, v in (val_groups or {}).items()}
    tg = {k: np.asarray(require_array(v)) for k, v in (test_groups or {}).items()}
    mvp = np.asarray(require_array(map_val_probs), np.float64)
    mtp = np.asarray(require_array(map_test_probs), np.float64)
    des = (
        list(desiderata)
        if desiderata is not None
        else default_desiderata(sorted(set(vg) & set(tg)), vp.shape[2])
    )
    notes: list[dict[str, str]] = []

    computed = [
        d for d in des if d.metric is not None and (val_values is None or d.name not in val_values)
    ]
    vv = metric_table(vp, vy, vg, computed)
    tv = metric_table(tp, ty, tg, computed)
    mv = single_model_values(mvp, vy, vg, computed)
    mt = single_model_values(mtp, ty, tg, computed)
    if val_values is not None:
        if test_values is None:
            raise RashomonError("val_values needs test_values, the same columns on test; give both")
        vv = pd.concat([vv, val_values.reset_index(drop=True)], axis=1)
        tv = pd.concat([tv, test_values.reset_index(drop=True)], axis=1)
        mv.update(map_val or {})
        mt.update(map_test or {})
    out: dict[str, pd.DataFrame] = {}
    # the set's models by their ids in the sample stage's set (per_model.csv), as `model` is
    # everywhere else
    in_set_ids = np.flatnonzero(mask) if mask is not None else np.arange(m)
    refusal = degenerate_map(mvp, vy, mtp, ty, class_names)
    if refusal:  # Pareto selection is a selection too
        notes += [{S.PART: p, S.NOTE: f"skipped: {refusal}"} for p in ("selection", "pareto")]
    else:
        sel = best_in_set(
            vv,
            tv,
            mv,
            mt,
            des,
            test_probs=tp,
            map_test_probs=mtp,
            test_y=ty,
            test_groups=tg,
            n_boot=n_boot,
            seed=seed,
            rho_min=rho_min,
        )
        for name in sel.attrs.get("undefined_on_validation", []):
            notes.append(
                {
                    S.PART: "selection",
                    S.NOTE: f"{name} skipped: undefined for every model on validation "
                    "(e.g. a group with no patient of a class)",
                }
            )
        if len(sel):
            sel[S.MODEL] = in_set_ids[sel[S.CHOSEN].to_numpy(int)]
        if corrupted_val is not None and corrupted_test is not None:
            row = robustness_selection(
                corrupted_val, corrupted_test, n_boot=n_boot, seed=seed + len(sel), rho_min=rho_min
            )
            ids = np.asarray(require_array(corrupted_models, "corrupted_models"), np.int64)
            row[S.MODEL] = int(ids[row[S.CHOSEN]])
            sel = apply_holm(pd.concat([sel, pd.DataFrame([row])], ignore_index=True))
        if baseline_test:
            sel = compare_with_baseline(sel, baseline_test)
        if threshold_test:
            sel = compare_with_baseline(sel, threshold_test, name="threshold")
        out["selection"] = sel
    out["selection_values"] = pd.concat(
        [
            pd.DataFrame(
                {
                    S.MODEL: in_set_ids,
                    S.DESIDERATUM: d.name,
                    S.VAL: vv[d.name].to_numpy(),
                    S.TEST: tv[d.name].to_numpy(),
                }
            )
            for d in des
        ],
        ignore_index=True,
    )
    if selection_only:
        out["notes"] = pd.DataFrame(notes, columns=[S.PART, S.NOTE])
        return out
    if "accuracy" not in vv:
        notes.append({S.PART: "pareto", S.NOTE: "skipped: no 'accuracy' desideratum"})
    elif not refusal:
        out["pareto"], out["pareto_front"] = pareto_selection(
            vv, tv, mv, mt, des, epsilon=pareto_epsilon
        )

    ks = sorted({int(k) for k in ensemble_sizes})
    feasible = [k for k in ks if k <= m]
    for k in sorted(set(ks) - set(feasible)):
        notes.append(
            {S.PART: "ensembles", S.NOTE: f"k={k} skipped: the Rashomon set has only {m} models"}
        )
    curves = ensemble_curves(tp, ty, feasible, taus, alphas, n_partitions=n_partitions, seed=seed)
    out["ensembles"] = curves
    out["ensemble_min_k"] = smallest_k(curves, ambiguity_target)
    pick = out["ensemble_min_k"]
    row = pick[
        (pick[S.COMBINE] == "vote")
        & (pick[S.RULE] == "share")
        & np.isclose(pick[S.THRESHOLD], patient_threshold)
    ]
    k_pat = (
        int(row[S.K_MIN].iloc[0])
        if len(row) and np.isfinite(row[S.K_MIN].iloc[0])
        else (feasible[-1])
    )
    out["patients"] = arbitrary_patients(
        tp, ty, mtp.argmax(-1), k=k_pat, rule="share", threshold=patient_threshold, seed=seed
    ).assign(**{S.K: k_pat, S.THRESHOLD: patient_threshold})

    if lsi is not None:
        out.update(_lsi_tables(lsi, train_preds, map_train_preds, mask, lsi_top_k))
    out["notes"] = pd.DataFrame(notes, columns=[S.PART, S.NOTE])
    return out


def degenerate_map(
    map_val_probs: Any,
    val_y: Any,
    map_test_probs: Any,
    test_y: Any,
    class_names: Sequence[str] = (),
) -> str:
    """Why selecting from this set is refused ('' when it is not): the MAP model is degenerate
    (near-constant or near chance, `rashomon.metrics.degenerate`) on validation or on test data.

    Test labels are looked at here, but they choose nothing: the check decides whether there is
    a selection to report at all, the same check the report's headline makes on test data, so
    the page never names a degenerate model and a 'real gain' of its set's best model side by
    side."""
    found = {}
    for split, probs, y in (("test", map_test_probs, test_y), ("validation", map_val_probs, val_y)):
        d = degeneracy(np.asarray(probs).argmax(-1), y)
        if d.degenerate:
            found[split] = d.describe(class_names, split=split)
    if not found:
        return ""
    why = next(iter(found.values()))  # test first: the split the headline speaks of
    also = "; on validation patients too" if len(found) == 2 else ""
    return (
        f"the trained model {why}{also}; the best model of a set around a degenerate classifier "
        "is no finding (train longer or check the data)"
    )


def _lsi_tables(lsi, train_preds, map_train_preds, mask, top_k) -> dict[str, pd.DataFrame]:
    from rashomon.lsi import lsi_vs_multiplicity, top_lsi, training_multiplicity

    v = np.asarray(require_array(lsi, "lsi"), np.float64).reshape(-1)
    table = pd.DataFrame({S.SAMPLE: np.arange(len(v)), S.LSI: v})
    table[S.TOP_LSI] = False
    table.loc[top_lsi(v, min(top_k, len(v))), S.TOP_LSI] = True
    out = {}
    if train_preds is not None and map_train_preds is not None:
        tp = np.asarray(require_array(train_preds, "train_preds"))
        if mask is not None:
            tp = tp[mask]
        tm = training_multiplicity(tp, map_train_preds)
        table = pd.concat([table, tm], axis=1)
        out["lsi_summary"] = lsi_vs_multiplicity(v, tm[S.DISAGREEMENT].to_numpy())
    out["lsi"] = table
    return out


def _per_label(args: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """Multilabel: run every label as a binary task ([M, N, 2] from column l) and stack."""
    args = dict(args)
    args.pop("kind")
    args["class_names"] = ()  # each label is audited as a 0/1 task of its own
    # corrupted accuracy counts every label at once: it is not a per-label desideratum
    args.update(corrupted_val=None, corrupted_test=None, corrupted_models=None)
    args["threshold_test"] = None
    vp = np.asarray(require_array(args["val_probs"]), np.float64)
    n_labels = vp.shape[-1]
    tables: dict[str, list[pd.DataFrame]] = {}

    def binary(a):
        return np.stack([1 - a, a], -1).astype(np.float64)

    for label in range(n_labels):
        sub = dict(args)
        for key in ("val_probs", "test_probs", "map_val_probs", "map_test_probs"):
            sub[key] = binary(np.asarray(require_array(args[key]))[..., label])
        for key in ("val_y", "test_y"):
            sub[key] = np.asarray(require_array(args[key]))[:, label]
        if args.get("train_preds") is not None:
            sub["train_preds"] = np.asarray(require_array(args["train_preds"]))[..., label]
            sub["map_train_preds"] = np.asarray(require_array(args["map_train_preds"]))[:, label]
        if args.get("lsi") is not None and label > 0:
            sub["lsi"] = None  # LSI is per training sample, not per label: report it once
        res = decide_all(kind="binary", **sub)
        for key, df in res.items():
            tables.setdefault(key, []).append(df.assign(**{S.LABEL: label}))
    return {k: pd.concat(v, ignore_index=True) for k, v in tables.items()}
