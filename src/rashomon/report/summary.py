"""The plain-language summary at the top of the report, computed from the run's tables.

Every number comes from the tables (per_sample.csv first, multiplicity.csv as a fallback); a
sentence whose table is missing is left out rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rashomon import schema as S
from rashomon.metrics.degenerate import (
    Degeneracy,
    MultilabelDegeneracy,
    degeneracy,
    multilabel_degeneracy,
)
from rashomon.report.fairness import SELECTION_VS_SET_FILE, truth_answer
from rashomon.report.load import RunData
from rashomon.report.words import ACQUISITION, NULL_ATTRIBUTE, PATIENT, attribute_kind

# disagreement = 4·p̂·(1−p̂) ≥ 0.64  ⇔  at least 20 % of the set predicts the minority label.
SPLIT_DISAGREEMENT = 0.64
NAMED_LABELS = 5  # multilabel sentences name this many labels, then count the rest


@dataclass(frozen=True)
class Arbitrariness:
    """How many test patients the set leaves arbitrary (at least one flip), and its split share."""

    share: float  # share of test patients with at least one flip across the Rashomon set
    count: int | None
    total: int | None
    split_share: float | None  # share where ≥ 20 % of the set disagrees with the majority


def pct(x: float, digits: int = 0) -> str:
    """`x` as a percentage with `digits` decimals, e.g. '12 %'."""
    return f"{100 * x:.{digits}f} %"


def arbitrariness(data: RunData) -> Arbitrariness:
    """Who would get a different diagnosis from an equally good model (the headline number)."""
    ps = data.table("per_sample")
    if ps is not None and len(ps) and S.AMBIGUOUS in ps:
        arbitrary = ps[S.AMBIGUOUS].to_numpy(bool)
        split = None
        if S.DISAGREEMENT in ps:
            dis = ps[S.DISAGREEMENT].to_numpy(float)
            split = float((dis >= SPLIT_DISAGREEMENT - 1e-12).mean())
        return Arbitrariness(float(arbitrary.mean()), int(arbitrary.sum()), len(ps), split)
    mult = data.table("multiplicity")
    if mult is not None:
        row = mult[(mult[S.METRIC] == "ambiguity") & _overall(mult[S.GROUP])]
        if len(row):
            return Arbitrariness(float(row[S.VALUE].iloc[0]), None, None, None)
    raise ValueError("neither per_sample.csv nor multiplicity.csv gives the ambiguity")


def _overall(groups: pd.Series) -> pd.Series:
    g = groups.fillna("all").astype(str).str.lower()
    return g.isin(["all", "overall", "", "none"])


def kept_models(data: RunData) -> tuple[int | None, int | None]:
    """(models kept at the sample stage's ε, models sampled)."""
    kept, total = data.sample.models_in_set, data.sample.models
    surv = data.table("survival")
    if (kept is None or total is None) and surv is not None:
        row = surv[np.isclose(surv[S.EPSILON].astype(float), data.epsilon)]
        if len(row):
            kept = kept if kept is not None else int(row[S.MODELS_IN_SET].iloc[0])
            total = total if total is not None else int(row[S.MODELS].iloc[0])
    return (int(kept) if kept is not None else None, int(total) if total is not None else None)


@dataclass(frozen=True)
class GroupShare:
    """The share of arbitrary test patients in one level of an attribute."""

    attribute: str
    level: str
    kind: str  # words.PATIENT, ACQUISITION, NULL or PROXY: only PATIENT is a patient group
    share: float  # share of the group's test patients who are arbitrary
    count: int  # the group's test patients


def group_extremes(data: RunData) -> list[GroupShare]:
    """The share of arbitrary patients per group of every attribute, most arbitrary first."""
    ps = data.table("per_sample")
    if ps is None or S.AMBIGUOUS not in ps:
        return []
    arbitrary = ps[S.AMBIGUOUS].to_numpy(bool)
    out = []
    for name, info in data.attributes.items():
        levels = list(info.get("levels") or [])
        codes = ps[name].to_numpy()
        for code in np.unique(codes):
            m = codes == code
            label = levels[int(code)] if 0 <= int(code) < len(levels) else str(code)
            out.append(
                GroupShare(
                    name,
                    label,
                    attribute_kind(name, info),
                    float(arbitrary[m].mean()),
                    int(m.sum()),
                )
            )
    return sorted(out, key=lambda g: -g.share)


def null_spread(groups: list[GroupShare], overall: float) -> float | None:
    """How far the random control's groups lie from the overall share at most: the gap that
    chance alone makes on this run (None without a random attribute)."""
    shares = [g.share for g in groups if g.attribute == NULL_ATTRIBUTE]
    return max(abs(x - overall) for x in shares) if shares else None


def _group_sentence(data: RunData, overall: float, per_label: bool) -> list[str]:
    """The patient group the summary names: the most arbitrary group of a real patient
    attribute, only when it lies further from the overall share than the random control's
    groups do. Derived proxies and acquisition attributes (how the image was taken: no patient
    group) are never named here (the multiplicity section shows them)."""
    groups = group_extremes(data)
    if not groups or overall <= 0:
        return []
    real = [g for g in groups if g.kind == PATIENT]
    if not real:
        return [
            "No real patient attribute on this task: the summary names no patient group "
            "(derived proxies are in the multiplicity section)."
        ]
    null = null_spread(groups, overall)
    if null is None:
        return [
            "This run has no random control attribute to tell a group's arbitrariness from "
            "noise: the summary names no patient group."
        ]
    top = real[0]
    points = f"{100 * null:.1f} points"
    if top.share - overall > null:
        some = " on some label" if per_label else ""
        return [
            f"Arbitrariness{some} is highest for {top.attribute} = {top.level}: {pct(top.share)} "
            f"of its {top.count} patients, against {pct(overall)} overall (the random control's "
            f"groups lie within {points} of it)."
        ]
    return [
        f"No patient group stands out beyond the random control's {points}: the most arbitrary "
        f"real group, {top.attribute} = {top.level}, has {pct(top.share)} against "
        f"{pct(overall)} overall."
    ]


# An acquisition attribute's gaps the summary reads (per_model_test.csv's `gap[attr]`), each
# with the per-group rate it is the range of (`rate[attr=level]`) and that rate in words.
ACQUISITION_GAPS = {
    "tpr_gap": ("tpr", "sensitivity", "TPR gap"),
    "fpr_gap": ("fpr", "false-positive rate", "FPR gap"),
    "demographic_parity_diff": ("selection_rate", "share of positive decisions", "DP gap"),
    "accuracy_gap": ("accuracy", "accuracy", "accuracy gap"),
}


@dataclass(frozen=True)
class AcquisitionGap:
    """The trained model's test gap by an acquisition attribute, beside the random control's."""

    attribute: str
    gap_name: str  # a key of ACQUISITION_GAPS
    gap: float  # the trained model's, on test
    noise: float  # the random control's same gap
    high: tuple[str, float]  # (level, rate) with the highest rate
    low: tuple[str, float]


def acquisition_gaps(data: RunData, attribute: str) -> list[AcquisitionGap]:
    """The trained model's test gaps by an acquisition attribute that exceed the random
    control's same gap (per_model_test.csv, the MAP row), largest first; [] without the
    random control or the table."""
    pm = data.table("per_model_test")
    if pm is None or S.MODEL not in pm or data.labels:
        return []
    rows = pm[pm[S.MODEL] == -1]
    if not len(rows):
        return []
    row = rows.iloc[0]
    out = []
    for gap_name, (rate, _, _) in ACQUISITION_GAPS.items():
        mine, noise = f"{gap_name}[{attribute}]", f"{gap_name}[{NULL_ATTRIBUTE}]"
        if mine not in row or noise not in row or pd.isna(row[mine]) or pd.isna(row[noise]):
            continue
        if not float(row[mine]) > float(row[noise]):
            continue
        prefix = f"{rate}[{attribute}="
        rates = {
            c[len(prefix) : -1]: float(row[c])
            for c in row.index
            if c.startswith(prefix) and c.endswith("]") and pd.notna(row[c])
        }
        if len(rates) < 2:
            continue
        high = max(rates.items(), key=lambda kv: kv[1])
        low = min(rates.items(), key=lambda kv: kv[1])
        out.append(
            AcquisitionGap(attribute, gap_name, float(row[mine]), float(row[noise]), high, low)
        )
    return sorted(out, key=lambda g: -g.gap)


def _positives_share(data: RunData, attribute: str) -> str:
    """'AP images hold 78 % of the test positives (49 % of the test patients)': the level of
    a binary task's attribute holding the most positives; '' otherwise."""
    ps = data.table("per_sample")
    if data.kind != "binary" or ps is None or attribute not in ps or S.TRUE_LABEL not in ps:
        return ""
    codes, y = ps[attribute].to_numpy(), ps[S.TRUE_LABEL].to_numpy() == 1
    if not y.any():
        return ""
    top = max(np.unique(codes), key=lambda c: int((y & (codes == c)).sum()))
    levels = list(data.attributes.get(attribute, {}).get("levels") or [])
    name = levels[int(top)] if 0 <= int(top) < len(levels) else str(top)
    pos, share = (y & (codes == top)).sum() / y.sum(), (codes == top).mean()
    return (
        f"; {attribute} {name} holds {pct(pos)} of the test positives and {pct(share)} of the "
        "test patients"
    )


def acquisition_sentences(data: RunData) -> list[str]:
    """Per real acquisition attribute, the trained model's largest test gap beyond the random
    control's same gap, said as an acquisition finding apart from the patient groups."""
    out = []
    for name, info in data.attributes.items():
        if attribute_kind(name, info) != ACQUISITION or NULL_ATTRIBUTE not in data.attributes:
            continue
        found = acquisition_gaps(data, name)
        if not found:
            out.append(
                f"The trained model's gaps by {name} (how the image was taken) are within the "
                "random control's: no acquisition gap stands out."
            )
            continue
        g = found[0]
        _, words, gap_words = ACQUISITION_GAPS[g.gap_name]
        out.append(
            f"The trained model's {words} differs most by {name} ({g.high[0]} {g.high[1]:.2f} vs "
            f"{g.low[0]} {g.low[1]:.2f} on test; {gap_words} {g.gap:.2f} against the random "
            f"control's {g.noise:.2f}): an acquisition gap, how the image was taken, not a "
            f"patient group{_positives_share(data, name)}."
        )
    return out


def map_degeneracy(data: RunData) -> Degeneracy | MultilabelDegeneracy | None:
    """The degeneracy checks of the MAP model on the test patients: per_sample.csv's MAP labels
    against the true ones; multilabel, its finding vectors and its per-label AUROC (the MAP row
    of per_model_test.csv, else the train stage's mean). None when the tables lack them."""
    ps = data.table("per_sample")
    if ps is None or not len(ps):
        return None
    if data.labels:
        cols = S.label_columns(ps.columns, S.MAP_LABEL)
        if not cols:
            return None
        return multilabel_degeneracy(ps[list(cols.values())].to_numpy(), _map_auroc(data, cols))
    if not {S.TRUE_LABEL, S.MAP_LABEL} <= set(ps.columns):
        return None
    return degeneracy(ps[S.MAP_LABEL].to_numpy(), ps[S.TRUE_LABEL].to_numpy())


def _map_auroc(data: RunData, labels: dict[int, str]) -> np.ndarray | float | None:
    """The multilabel MAP model's test AUROC per label, else its mean, else None."""
    pm = data.table("per_model_test")
    if pm is not None and S.MODEL in pm:
        row = pm[pm[S.MODEL] == -1]
        cols = [S.label_column(lab, "auroc") for lab in labels]
        if len(row) and all(c in row for c in cols):
            return row[cols].iloc[0].to_numpy(float)
    auroc = data.summaries.get("train", {}).get("test_auroc")
    return float(auroc) if auroc is not None else None


def degenerate_warning(data: RunData) -> str | None:
    """The headline's warning when the MAP model is near-constant or near chance, else None."""
    d = map_degeneracy(data)
    if d is None or not d.degenerate:
        return None
    if isinstance(d, MultilabelDegeneracy):
        per_sample = data.table("per_sample")
        assert per_sample is not None  # map_degeneracy read it
        cols = S.label_columns(per_sample.columns, S.MAP_LABEL)
        return d.sentence([data.labels[lab] for lab in cols], "test")
    return d.sentence(data.class_names, "test")


def summary_sentences(data: RunData) -> list[str]:
    """The summary as plain sentences (no markup); the first is the headline: the warning of a
    degenerate MAP model when it is one, else the share of arbitrary patients (multilabel: on
    the most arbitrary label, named, then how many labels change at all)."""
    a = arbitrariness(data)
    kept, total = kept_models(data)
    what = "loss" if data.on == "loss" else "accuracy"
    cond = [f"validation {what} within ε = {data.epsilon:g} of the trained model's"]
    if kept is not None and total is not None:
        cond.append(f"{kept} of {total} models of the {set_name(data.sample)}")
    cond_text = f" ({'; '.join(cond)})"
    per_label = label_arbitrariness(data)
    if per_label:
        out = _multilabel_headline(per_label, a, cond_text)
    else:
        count = f" ({a.count} of {a.total})" if a.count is not None else ""
        out = [
            f"{pct(a.share)} of test patients{count} would receive a different diagnosis from at "
            f"least one equally good model{cond_text}."
        ]
    if a.split_share is not None:
        on_label = " on some label" if per_label else ""
        out.append(
            f"For {pct(a.split_share)} of test patients at least one in five of these models "
            f"disagrees with the majority{on_label}: their diagnosis depends on an arbitrary "
            "choice of model."
        )
    t = data.summaries.get("train", {})
    if "test_accuracy" in t:
        auc = f" (AUROC {t['test_auroc']:.3f})" if "test_auroc" in t else ""
        mean = "mean per-label " if per_label else ""
        out.append(f"The trained model's {mean}test accuracy is {pct(t['test_accuracy'], 1)}{auc}.")
    out += _group_sentence(data, a.share, bool(per_label))
    out += acquisition_sentences(data)
    out += _validity_sentences(data)
    out += _extremes_sentence(data)
    out += _selection_sentence(data)
    out += _ensemble_sentence(data)
    warning = degenerate_warning(data)
    return [warning, *out] if warning else out


SOURCE_NAMES = {
    "laplace": "Laplace set",
    "riemannian": "Riemannian Laplace set",
    "retrain": "set of retrained networks",
    "dropout": "MC-dropout set",
    "multimode": "multi-mode Laplace set",
    "swag": "SWAG set",
}


def set_name(sample: S.SampleRecord) -> str:
    """The set in words, as the headline names it: "last-layer Laplace set (kron, ε-scaled)"."""
    o = sample.options or {}
    name = SOURCE_NAMES.get(sample.source, f"{sample.source} set")
    where = {"last_layer": "last-layer ", "all": "all-weights ", "subnetwork": "subnetwork "}
    prefix = where.get(str(o.get("subset", "")), "")
    detail = [str(o["hessian"])] if o.get("hessian") else []
    scale = str(o.get("scale", "posterior"))
    if scale != "posterior":
        detail.append({"epsilon": "ε-scaled", "boundary": "boundary samples"}.get(scale, scale))
    if o.get("metric") and sample.source == "riemannian":
        detail.append(f"{o['metric']} metric")
    return f"{prefix}{name}" + (f" ({', '.join(detail)})" if detail else "")


def figure(summary: dict, key: str) -> float | None:
    """A number of a stage's summary.json, or None where it is undefined (validate writes null
    for NaN; a NaN or a missing key reads the same)."""
    value = summary.get(key)
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def matched_figures(v: dict) -> bool:
    """Whether validate/summary.json holds the size-matched figures (a validate stage from
    before them holds only full-size ones)."""
    return "flag_recall_matched" in v


def _against_ceiling(name: str, v: dict, between: str) -> str:
    """'two retrained halves agree on 80 %: 0.78 of the ceiling' for `name` (flag_recall or
    flag_precision; `between` says what two halves share), and its undefined cases."""
    ceiling, ratio = figure(v, f"{name}_ceiling"), figure(v, f"{name}_ratio")
    if ceiling is None:
        return "undefined between two retrained halves: no ceiling to read it against"
    if ratio is None:
        return f"{between} {pct(ceiling)}: no ratio to the ceiling"
    return f"{between} {pct(ceiling)}: {ratio:.2f} of the ceiling"


def validate_sentences(v: dict, set_models: int | None = None) -> list[str]:
    """The summary's sentences from validate/summary.json: the size-matched flag recall and
    precision against the retrained ceiling, then how many retrained networks show the whole
    set's arbitrariness. Undefined figures (null) are said in words."""
    t = int(v["retrained_in_set"])
    if not v.get("retrained_flags"):
        return [
            f"Checked against {t} retrained networks within ε on this task: they agree on every "
            "test patient, so the set's recall is undefined."
        ]
    if not matched_figures(v):
        return [
            f"This run's validate stage compared the whole set with {t} retrained networks, "
            "which mixes the set's size with its validity: re-run `rashomon validate RUN_DIR "
            "--force` for the size-matched figures."
        ]
    h = int(v["matched_models"])
    recall, precision = figure(v, "flag_recall_matched"), figure(v, "flag_precision_matched")
    drawn = (
        " (drawn with replacement: the set has fewer)" if v.get("matched_with_replacement") else ""
    )
    found = pct(recall) if recall is not None else "an undefined share"
    if precision is None:
        precise = f"precision undefined: its {h} models flag no patient"
    else:
        halves = _against_ceiling("flag_precision", v, "between two retrained halves")
        precise = f"precision {pct(precision)} ({halves})"
    out = [
        f"Against {t} networks retrained on this task (within ε), {h} of this set's models"
        f"{drawn} find {found} of the patients that {h} retrained networks flag "
        f"({_against_ceiling('flag_recall', v, 'two retrained halves agree on')}), {precise}."
    ]
    growth = _growth_sentence(v, t, set_models)
    return out + ([growth] if growth else [])


def truth_sentences(data: RunData) -> list[str]:
    """The fairness hypothesis answered on the retrained truth (validate/selection_vs_set.csv,
    `fairness.truth_answer`); [] without that table."""
    side = data.validate_table(SELECTION_VS_SET_FILE)
    if side is None or not len(side):
        return []
    retrained = (data.summaries.get("validate") or {}).get("retrained_in_set")
    answer = truth_answer(data, side, int(retrained) if retrained else None)
    return [answer.sentence] if answer is not None else []


def _growth_sentence(v: dict, t: int, set_models: int | None) -> str | None:
    """How many retrained networks show as much arbitrariness as the whole set."""
    k = figure(v, "retrained_models_for_ambiguity")
    mine, theirs = figure(v, "ambiguity_set"), figure(v, "ambiguity_retrained")
    if mine is None or theirs is None:
        return None
    whole = f"whole set of {set_models} models" if set_models else "whole set"
    lower = ": read the share above as a lower bound" if mine < theirs else ""
    if k is not None and k == 0:
        return (
            f"The {whole} flags no test patient, while all {t} retrained "
            f"networks flag {pct(theirs, 1)}{lower}."
        )
    if k is not None:
        networks = "network" if k == 1 else "networks"
        return (
            f"It takes {k:g} of the {t} retrained {networks} to see as much arbitrariness as "
            f"the {whole} shows ({pct(mine, 1)} of test patients; all {t} flag {pct(theirs, 1)})"
            f"{lower}."
        )
    return (
        f"The {whole} shows more arbitrariness ({pct(mine, 1)} of test "
        f"patients) than all {t} retrained networks ({pct(theirs, 1)}): seeing as much would "
        "take more retrained networks than were trained."
    )


def _validity_sentences(data: RunData) -> list[str]:
    """How close this kind of set comes to retraining: measured on this task when `rashomon
    validate` ran (size-matched), else the validity study's figure for this dataset,
    architecture and kind of set."""
    if "validate" in data.stale:
        return [
            f"The validate stage's figures are out of date ({data.stale['validate']}): re-run "
            f"`rashomon validate {data.run_dir}`, then `rashomon report {data.run_dir}`."
        ]
    v = data.summaries.get("validate")
    if v and v.get("retrained_in_set"):
        return validate_sentences(v, kept_models(data)[0]) + truth_sentences(data)
    from rashomon.report.study import dataset_key, validity_line

    d, t = data.config.get("data") or {}, data.config.get("train") or {}
    line = validity_line(dataset_key(d), str(t.get("arch", "")), data.sample.summary or {}, t)
    return [line] if line else []


VACUOUS_SHARE = 0.9  # exact extremes flagging this share of test patients bound nothing


def extremes_vacuous(e: dict) -> str | None:
    """Why the exact last-layer extremes (evaluate/summary.json: `extremes_ambiguity`,
    `extremes_set`) bound nothing for this model, or None when they are an upper line. Vacuous
    when they flag at least VACUOUS_SHARE of test patients, or when the training-gradient gap
    is large: the trained head lies further above its training objective's minimum
    (`train_gradient_gap`) than the bound's own slack around it (`train_bound` −
    `train_objective_map`), so the bound admits every head up to their sum above the minimum,
    heads around the objective's optimum that training never came near."""
    share = figure(e, "extremes_ambiguity")
    bound = e.get("extremes_set") or {}
    gap, j_map = figure(bound, "train_gradient_gap"), figure(bound, "train_objective_map")
    j_bound, j_min = figure(bound, "train_bound"), figure(bound, "train_objective_min")
    far = (
        gap is not None
        and j_map is not None
        and j_bound is not None
        and j_min is not None
        and gap > j_bound - j_map
    )
    flags = share is not None and share >= VACUOUS_SHARE
    if not (far or flags):
        return None
    said = f"it flags {pct(share)} of test patients" if share is not None else "it"
    if not far:
        return (
            f"{said}: the validation and training bounds at this ε leave nearly every "
            "patient's label free"
        )
    assert gap is not None and j_map is not None and j_bound is not None and j_min is not None
    return (
        f"{said} because the trained head is far from its training objective's optimum, "
        f"{gap:.1f} above the objective's minimum ({j_min:.1f}) against the bound's slack of "
        f"{j_bound - j_map:.1f}, so the bound admits heads up to {j_bound - j_min:.1f} above the "
        "minimum, which training never came near"
    )


def _extremes_sentence(data: RunData) -> list[str]:
    """The exact upper line of a head-only set, when evaluate computed it; when it is vacuous
    for this model (`extremes_vacuous`), why, instead of the line."""
    e = data.summaries.get("evaluate") or {}
    if "extremes_ambiguity" not in e:
        return []
    bound = e.get("extremes_set") or {}
    eps, eps_t = bound.get("epsilon", data.epsilon), bound.get("train_epsilon", data.epsilon)
    why = extremes_vacuous(e)
    if why is not None:
        return [
            f"The exact last-layer bound (validation loss within ε = {eps:g}, training "
            f"objective within {eps_t:g} of the trained model's) is vacuous for this model: "
            f"{why}."
        ]
    return [
        f"Over every last layer whose validation loss is within ε = {eps:g} and whose training "
        f"objective is within {eps_t:g} of the trained model's, up to "
        f"{pct(e['extremes_ambiguity'])} of test patients could receive a different diagnosis: "
        "the exact upper line that no last-layer set can exceed."
    ]


@dataclass(frozen=True)
class LabelArbitrariness:
    """How many test patients some model of the set flips one label for."""

    label: int
    name: str
    share: float  # share of test patients for whom some model of the set flips this label
    count: int
    total: int


def label_arbitrariness(data: RunData) -> list[LabelArbitrariness]:
    """Multilabel runs: per label, who would get a different finding from an equally good model,
    the most arbitrary label first (ties in label order); [] for other runs."""
    ps = data.table("per_sample")
    labels = data.labels
    if ps is None or not len(ps) or not labels:
        return []
    cols = S.label_columns(ps.columns, S.AMBIGUOUS)
    rows = []
    for lab, name in labels.items():
        flags = ps[cols[lab]].astype(bool).to_numpy()
        rows.append(LabelArbitrariness(lab, name, float(flags.mean()), int(flags.sum()), len(ps)))
    return sorted(rows, key=lambda r: (-r.share, r.label))


def name_list(items: list[str], limit: int = NAMED_LABELS) -> str:
    """'a, b and c'; past `limit` items 'a, b, c and 4 more'."""
    shown = items[:limit]
    rest = len(items) - len(shown)
    if rest:
        return f"{', '.join(shown)} and {rest} more"
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} and {shown[-1]}"


def _multilabel_headline(
    per_label: list[LabelArbitrariness], a: Arbitrariness, cond_text: str
) -> list[str]:
    n_labels = len(per_label)
    worst = per_label[0]
    if worst.count == 0:
        return [
            f"No test patient would receive a different finding on any of the {n_labels} labels "
            f"from an equally good model{cond_text}."
        ]
    head = (
        f"For {worst.name}, the most arbitrary of the {n_labels} labels, {pct(worst.share)} of "
        f"test patients ({worst.count} of {worst.total}) would receive a different finding from "
        f"at least one equally good model{cond_text}."
    )
    changing = [r for r in per_label if r.count]
    others = [f"{r.name} {pct(r.share)}" for r in changing[1:]]
    labels = f"{len(changing)} of the {n_labels} labels change for some test patient"
    if others:
        labels += f" (after {worst.name}: {name_list(others)})"
    count = f" ({a.count} of {a.total})" if a.count is not None else ""
    return [
        head,
        f"{labels}; {pct(a.share)} of test patients{count} have at least one label that changes.",
    ]


def skip_notes(data: RunData, part: str) -> list[str]:
    """Why the decide stage skipped `part` (decide/notes.csv), without the 'skipped: ' prefix;
    multilabel runs: one note per label, prefixed with the label's name."""
    notes = data.table("notes")
    if notes is None:
        return []
    rows = notes[notes[S.PART].astype(str) == part]
    texts = [str(n).removeprefix("skipped: ") for n in rows[S.NOTE]]
    if S.LABEL in rows and data.labels:
        texts = [
            f"{data.labels.get(int(lab), f'label {lab}')}: {t}"
            for lab, t in zip(rows[S.LABEL], texts, strict=True)
        ]
    return list(dict.fromkeys(texts))


def _skipped_labels(data: RunData, part: str) -> list[int]:
    notes = data.table("notes")
    if notes is None or S.LABEL not in notes:
        return []
    rows = notes[notes[S.PART].astype(str) == part]
    return sorted({int(v) for v in rows[S.LABEL]})


def _real_gains(sel: pd.DataFrame) -> pd.DataFrame:
    verdicts = sel[S.VERDICT].astype(str).str.lower()
    return sel[verdicts.str.contains("real gain")]


def _nameable_gains(real: pd.DataFrame, sel: pd.DataFrame, attributes: dict) -> list[str]:
    """The desiderata of `real` (real gains) the summary may name: overall ones, and a gap of a
    real attribute whose gain exceeds the same gap's gain on the random control (in `sel`, the
    rows of the same task or label); a derived proxy's never."""
    null = {}
    for name, gain in zip(sel[S.DESIDERATUM].astype(str), sel[S.TEST_GAIN], strict=True):
        prefix, _, attribute = name.partition(":")
        if attribute == NULL_ATTRIBUTE:
            null[prefix] = float(gain)
    out = []
    for name, gain in zip(real[S.DESIDERATUM].astype(str), real[S.TEST_GAIN], strict=True):
        prefix, _, attribute = name.partition(":")
        if attribute:
            if bool(attributes.get(attribute, {}).get("derived", True)):
                continue  # a derived proxy or the random control itself
            if prefix in null and not float(gain) > null[prefix]:
                continue
        out.append(name)
    return out


ONLY_PROXY_GAINS = (
    "Picking the best model of the set on validation data gives a real test gain only on "
    "derived proxies or within the random control's gain (see the selection section)."
)


def _selection_sentence(data: RunData) -> list[str]:
    sel = data.table("selection")
    labels = data.labels
    if labels:
        return _multilabel_selection_sentence(data, sel, labels)
    if sel is None:
        skipped = skip_notes(data, "selection")
        return [f"Best-in-set selection was skipped: {skipped[0]}."] if skipped else []
    if not len(sel):
        return []
    real = _real_gains(sel)
    if not len(real):
        return [
            "Picking the best model of the set on validation data gives no test gain beyond "
            f"selection noise for any of the {len(sel)} desiderata checked."
        ]
    named = _nameable_gains(real, sel, data.attributes)
    if not named:
        return [ONLY_PROXY_GAINS]
    return [
        f"Picking the best model of the set on validation data gives a real test gain for: "
        f"{', '.join(named)} (see the selection section for the size and its interval)."
    ]


def _multilabel_selection_sentence(
    data: RunData, sel: pd.DataFrame | None, labels: dict[int, str]
) -> list[str]:
    """Per label, not per (label, desideratum): how many labels gain, the labels with the most
    real gains first, and how many labels selection skipped."""
    n_labels = len(labels)
    skipped = _skipped_labels(data, "selection")
    out = []
    if sel is not None and len(sel):
        checked = sel[S.LABEL].nunique()
        real = _real_gains(sel)
        per = {
            lab: _nameable_gains(rows, sel[sel[S.LABEL] == lab], data.attributes)
            for lab, rows in real.groupby(S.LABEL, sort=False)
        }
        ranked = sorted(
            ((lab, names) for lab, names in per.items() if names),
            key=lambda kv: (-len(kv[1]), int(kv[0])),
        )
        if not len(real):
            out.append(
                "Picking the best model of the set on validation data gives no test gain beyond "
                f"selection noise for any desideratum of the {checked} labels checked."
            )
        elif not ranked:
            out.append(ONLY_PROXY_GAINS)
        else:
            items = [
                f"{labels.get(int(lab), f'label {lab}')} ({', '.join(map(str, names))})"
                for lab, names in ranked
            ]
            out.append(
                "Picking the best model of the set on validation data gives a real test gain "
                f"for {len(ranked)} of the {checked} labels checked: {name_list(items)} (see "
                "the selection section for the sizes and their intervals)."
            )
    if skipped:
        notes = skip_notes(data, "selection")
        names = [labels.get(lab, f"label {lab}") for lab in skipped]
        first = f"; for {notes[0]}" if notes else ""
        out.append(
            f"Best-in-set selection was skipped for {len(skipped)} of the {n_labels} labels "
            f"({name_list(names)}){first}."
        )
    return out


def rule_label(rule: object, threshold: float | None) -> str:
    """How an ensemble's abstention rule reads in a legend: 'agree ≥ 80 %', 'no abstention'."""
    r = str(rule).lower() if rule is not None else "share"
    t = float(threshold) if threshold is not None and pd.notna(threshold) else None
    if r in ("none", "nan") or t is None:
        return "no abstention"
    if r == "share":
        return f"agree ≥ {100 * t:.0f} %"
    if r == "binomial":
        return f"binomial test, α = {t:g}"
    return f"{r} {t:g}"


def worst_over_labels(ens: pd.DataFrame) -> pd.DataFrame:
    """Multilabel ensembles.csv (one row per label): per ensemble rule and k, the lowest
    coverage and the highest residual ambiguity over the labels; other tables unchanged."""
    if S.LABEL not in ens:
        return ens
    keys = [S.COMBINE, S.RULE, S.THRESHOLD, S.K]
    return (
        ens.groupby(keys, dropna=False, sort=False)
        .agg({S.COVERAGE: "min", S.RESIDUAL_AMBIGUITY: "max", S.COVERED_ACCURACY: "min"})
        .reset_index()
    )


def _ensemble_sentence(data: RunData) -> list[str]:
    ens = data.table("ensembles")
    if ens is None or not len(ens):
        return []
    every = f" on every one of the {ens[S.LABEL].nunique()} labels" if S.LABEL in ens else ""
    ens = worst_over_labels(ens)
    ens = ens[ens[S.COVERAGE].fillna(0) > 0]
    ens = ens[ens[S.RULE].astype(str).str.lower() != "none"]
    ok = ens[(ens[S.RESIDUAL_AMBIGUITY] <= 0.01) & (ens[S.K] > 1)]
    if not len(ens):
        return []
    if not len(ok):
        best = ens.loc[ens[S.RESIDUAL_AMBIGUITY].idxmin()]
        return [
            f"No ensemble tried removes the arbitrariness{every}: the lowest residual ambiguity "
            f"is {pct(best[S.RESIDUAL_AMBIGUITY], 1)} (k = {int(best[S.K])})."
        ]
    row = ok.sort_values([S.K, S.COVERAGE], ascending=[True, False]).iloc[0]
    rule = str(row[S.RULE]).lower()
    thr = float(row[S.THRESHOLD]) if pd.notna(row[S.THRESHOLD]) else None
    if rule == "share" and thr is not None:
        how = f" that abstains unless at least {pct(thr)} of its models agree"
    elif rule == "binomial" and thr is not None:
        how = f" that abstains unless a binomial test of its votes passes at α = {thr:g}"
    else:
        how = f" (abstention rule {rule_label(rule, thr)})"
    least, each = ("at most ", " on each") if every else ("", "")
    return [
        f"An ensemble of k = {int(row[S.K])} models{how} leaves {least}"
        f"{pct(row[S.RESIDUAL_AMBIGUITY], 1)} residual ambiguity{every} and still decides for "
        f"{'at least ' if every else ''}{pct(row[S.COVERAGE])} of patients{each}."
    ]


def summary_text(data: RunData) -> str:
    """The summary as it is saved to summary.txt: one sentence a line."""
    return "\n".join(summary_sentences(data)) + "\n"
