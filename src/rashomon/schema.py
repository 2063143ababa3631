"""The run directory's schema: stage folders, file names and the column names that more than
one module writes or reads. A name that crosses a module boundary is defined here, once: the
stages write these names, the report, `rashomon compare`, the sweep collector and the tests'
fake run read them, and nothing renames a column on the way.

One quantity has one name in every table that holds it (`sample`, `true_label`, `map_label`,
`flip_rate`, ...). docs/run-directory.md lists every file and its columns; its table section is
`markdown()` (a test keeps the two equal).

Later stages and readers take ε, the set's source and its resolved options from the sample
stage's summary.json (`sample_record`), never from the config's defaults.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rashomon.errors import RashomonError

# --------------------------------------------------------------------------- files

CONFIG = "config.yaml"
RECORDS = "stages.json"
ENVIRONMENT = "environment.json"
SUMMARY = "summary.json"
LOCK = ".lock"  # held (flock) by the command working on the run

CHECKPOINT = "model.pt"  # train/
TRAINING_STATES = "states.pt"  # train/: the training states forks resume from (train.snapshots)
# validate/ and a `rashomon compare` folder: the set-against-truth tables (rashomon.compare)
COMPARE_FILE = "compare.csv"
PER_PATIENT_FILE = "per_patient.csv"
GROWTH_FILE = "growth.csv"  # ambiguity against the number of models, every set
SET = "set.pt"  # sample/
IN_SET = "in_set.npy"  # sample/
CORRUPTED_MODELS = "corrupted_models.npy"  # evaluate/: the set's model ids audited on corruptions


def probs_file(split: str) -> str:
    """sample/probs_<split>.npy: [M, N, C] float32 probabilities of every model."""
    return f"probs_{split}.npy"


def corrupted_correct_file(split: str) -> str:
    """evaluate/: per-patient correctness [1 + models, images] over every corruption and severity
    (row 0 the MAP model, then the models of CORRUPTED_MODELS), on `split`'s audited images."""
    return f"corrupted_correct_{split}.npy"


def map_probs_file(split: str) -> str:
    """sample/map_probs_<split>.npy: [N, C] float32 probabilities of the MAP model."""
    return f"map_probs_{split}.npy"


# --------------------------------------------------------------------------- columns
# Shared by several tables: one name per quantity.

MODEL = "model"  # a model's index in the sample stage's set; -1 is the MAP model
SAMPLE = "sample"  # a patient's (or training image's) row in its split
TRUE_LABEL = "true_label"
MAP_LABEL = "map_label"  # the MAP model's label
MAP_PROB = "map_prob"  # binary: the MAP model's probability of the positive class
FLIP_RATE = "flip_rate"  # share of the set's models whose label differs from the MAP model's
AMBIGUOUS = "ambiguous"  # some model of the set flips the MAP label (an arbitrary patient)
DISAGREEMENT = "disagreement"
SELF_CONSISTENCY = "self_consistency"
CAPACITY = "capacity"  # 2^(Rashomon capacity), in [1, C]
VPR_LOW = "vpr_low"  # viable prediction range: lowest probability over the set
VPR_HIGH = "vpr_high"
VPR_WIDTH = "vpr_width"
LABEL = "label"  # multilabel decide tables: the label (column of the task) a row is about
EPSILON = "epsilon"
ON = "on"
MODELS = "models"  # models built (M)
MODELS_IN_SET = "models_in_set"  # models within ε
THRESHOLD = "threshold"
METRIC = "metric"
GROUP = "group"
ATTRIBUTE = "attribute"
DERIVED = "derived"
VALUE = "value"
SPLIT = "split"
SECONDS = "seconds"
CONSTRAINT = "constraint"
SOURCE = "source"
STAT = "stat"
DESIDERATUM = "desideratum"
HIGHER_IS_BETTER = "higher_is_better"
CHOSEN = "chosen"  # selection, pareto: the chosen model's row in the Rashomon set
CHOSEN_VAL = "chosen_val"
CHOSEN_TEST = "chosen_test"
MAP_VAL = "map_val"
MAP_TEST = "map_test"
TEST_GAIN = "test_gain"  # oriented: > 0 is better than the MAP model
SPEARMAN_RHO = "spearman_rho"
SPEARMAN_P = "spearman_p"
K = "k"
COMBINE = "combine"
RULE = "rule"
COVERAGE = "coverage"
COVERED_ACCURACY = "covered_accuracy"
RESIDUAL_AMBIGUITY = "residual_ambiguity"
LSI = "lsi"
PART = "part"
NOTE = "note"

# train/history.csv
EPOCH, STEP, LR = "epoch", "step", "lr"
TRAIN_LOSS, VAL_LOSS, VAL_ACC = "train_loss", "val_loss", "val_acc"
SELECTED = "selected"  # the epoch whose weights the checkpoint kept

# sample/per_model.csv
MODE = "mode"  # which trained network (mode) a model was sampled around
VAL_ACCURACY, TEST_LOSS, TEST_ACCURACY = "val_accuracy", "test_loss", "test_accuracy"
DISTANCE_L2, DISTANCE_REL = "distance_l2", "distance_rel"

# evaluate/robustness.csv
IS_MAP, FAMILY, CORRUPTION, SEVERITY = "is_map", "family", "corruption", "severity"
CORRUPTION_ACCURACY = "corruption_accuracy"  # per_model_test.csv, when robustness ran

# evaluate/extremes.csv
P_MAP, P_MIN, P_MAX = "p_map", "p_min", "p_max"
FLIP_POSSIBLE = "flip_possible"  # some head within the bound gives the other label at 0.5

# evaluate/convergence.csv
AMBIGUITY, DISCREPANCY, MEAN_CAPACITY = "ambiguity", "discrepancy", "mean_capacity"

# evaluate/within_stratum.csv (rashomon.metrics.acquisition)
STRATUM_ATTRIBUTE = "stratum_attribute"  # the acquisition attribute whose levels are the strata
STRATUM = "stratum"  # a level of it, "all" (the marginal gap) or "pooled" (within, weighted)
PATIENTS = "patients"  # test patients in the stratum
RATE_PATIENTS = "rate_patients"  # those the gap's rates count (TPR: positives; FPR: negatives)
SMALLEST_GROUP = "smallest_group"  # fewest rate_patients in one group of the attribute
MAP_GAP = "map_gap"
SET_GAP_MEAN = "set_gap_mean"
SET_GAP_Q05, SET_GAP_Q50, SET_GAP_Q95 = "set_gap_q05", "set_gap_q50", "set_gap_q95"

# decide/selection.csv
N_TIED_ON_VAL = "n_tied_on_val"
GAIN_CI_LOW, GAIN_CI_HIGH = "gain_ci_low", "gain_ci_high"
GAIN_SE = "gain_se"  # bootstrap standard error of test_gain (sd of the replicates)
# (z_{1−α/2} + z_{0.8}) · gain_se: the true gain the test split detects at 80 % power
MIN_DETECTABLE_GAIN = "min_detectable_gain"
ORACLE_TEST = "oracle_test"
CHOSEN_TEST_PERCENTILE = "chosen_test_percentile"
SELECTION_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
VERDICT = "verdict"
SELECTION_NOISE = "selection_noise"
GAIN_P = "gain_p"  # bootstrap p-value of "no test gain" (pivot: share of |θ* − θ̂| ≥ |θ̂|)
GAIN_P_HOLM = "gain_p_holm"  # Holm-adjusted over the desiderata selected for


# validate/selection_vs_set.csv: the cheap set's selection and the retrained truth's, per
# desideratum, each column of SIDE_BY_SIDE once per side (`set_test_gain`, `retrained_test_gain`)
TEST_SPREAD = "test_spread"  # q95 − q05 of the set's test values: how far a free choice moves it
SET_SIDE, TRUTH_SIDE = "set", "retrained"
VERDICTS_AGREE = "verdicts_agree"


def side_column(side: str, name: str) -> str:
    """A column of one side of validate/selection_vs_set.csv: `retrained_test_gain`."""
    return f"{side}_{name}"


def set_test_quantile(q: float) -> str:
    """selection.csv's column of the q-quantile of the set's test values: `set_test_q05`."""
    return f"set_test_q{int(round(100 * q)):02d}"


SIDE_BY_SIDE = (
    MODELS_IN_SET,
    CHOSEN_TEST,
    TEST_GAIN,
    GAIN_CI_LOW,
    GAIN_CI_HIGH,
    MIN_DETECTABLE_GAIN,
    GAIN_P_HOLM,
    VERDICT,
    TEST_SPREAD,
)


def selection_vs_set_columns(labels: bool = False) -> list[str]:
    """The columns of validate/selection_vs_set.csv (multilabel runs: `label` after
    `desideratum`)."""
    head = [DESIDERATUM, *([LABEL] if labels else []), HIGHER_IS_BETTER, MAP_TEST]
    sides = [side_column(w, c) for w in (SET_SIDE, TRUTH_SIDE) for c in SIDE_BY_SIDE]
    return [*head, *sides, VERDICTS_AGREE]


def baseline_columns(name: str = "constrained") -> tuple[str, str]:
    """selection.csv's columns of a constrained baseline named `name` (when one was trained)."""
    return f"{name}_test", f"selection_minus_{name}"


# decide/selection_values.csv
VAL, TEST = "val", "test"

# decide/pareto.csv and pareto_front.csv
N_FRONT = "n_front"
CHOSEN_VAL_ACCURACY, CHOSEN_TEST_ACCURACY = "chosen_val_accuracy", "chosen_test_accuracy"
MAP_VAL_ACCURACY, MAP_TEST_ACCURACY = "map_val_accuracy", "map_test_accuracy"
TEST_ACCURACY_CHANGE = "test_accuracy_change"
VAL_VALUE, TEST_VALUE = "val_value", "test_value"

# decide/ensembles.csv and ensemble_min_k.csv
N_ENSEMBLES, N_PARTITIONS = "n_ensembles", "n_partitions"
PAIRWISE_DISAGREEMENT = "pairwise_disagreement"
TARGET, K_MIN, COVERAGE_COST = "target", "k_min", "coverage_cost"
SINGLE_MODEL_AMBIGUITY = "single_model_ambiguity"

# decide/patients.csv
MAP_CORRECT = "map_correct"
ENSEMBLE_ABSTAIN_RATE = "ensemble_abstain_rate"
ENSEMBLE_LABEL = "ensemble_label"
ENSEMBLES_DISAGREE = "ensembles_disagree"

# decide/lsi.csv and lsi_summary.csv
TOP_LSI = "top_lsi"
LSI_SUMMARY_COLUMNS = (
    "n_samples",
    SPEARMAN_RHO,
    SPEARMAN_P,
    "top_fraction",
    "n_top",
    "n_disagreement_positive",
    "lsi_mean_top",
    "lsi_mean_rest",
    "lsi_median_top",
    "lsi_median_rest",
    "mannwhitney_p",
)


# --------------------------------------------------------------------------- per-sample layout

LABEL_PREFIX = "label"
# The per-label columns of a multilabel per_sample.csv: `label<l>.<name>` for each.
PER_SAMPLE_BINARY = (
    MAP_LABEL,
    FLIP_RATE,
    AMBIGUOUS,
    DISAGREEMENT,
    SELF_CONSISTENCY,
    CAPACITY,
    MAP_PROB,
    VPR_LOW,
    VPR_HIGH,
    VPR_WIDTH,
)


def label_column(label: int, name: str) -> str:
    """A multilabel per-sample or per-model column of one label: `label3.capacity`."""
    return f"{LABEL_PREFIX}{int(label)}.{name}"


def class_column(name: str, cls: int) -> str:
    """A multiclass per-sample column of one class: `vpr_low_2`."""
    return f"{name}_{int(cls)}"


def label_columns(columns: Iterable[str], name: str) -> dict[int, str]:
    """label -> column of the multilabel columns `label<l>.<name>` that `columns` holds."""
    pattern = re.compile(rf"^{LABEL_PREFIX}(\d+)\.{re.escape(name)}$")
    found = {}
    for col in columns:
        m = pattern.match(str(col))
        if m:
            found[int(m.group(1))] = str(col)
    return dict(sorted(found.items()))


def per_sample_columns(
    kind: str, classes: int, attributes: Sequence[str] = (), labels: int = 0
) -> list[str]:
    """The columns of evaluate/per_sample.csv, in order, for a task of `kind` with `classes`
    classes (multilabel: `labels` labels) and the audited patient attributes."""
    if kind == "multilabel":
        per_label = [label_column(lab, c) for lab in range(labels) for c in PER_SAMPLE_BINARY]
        return [SAMPLE, *per_label, *attributes]
    head = [SAMPLE, TRUE_LABEL, MAP_LABEL, FLIP_RATE, AMBIGUOUS, DISAGREEMENT]
    head += [SELF_CONSISTENCY, CAPACITY]
    if classes == 2:
        ranges = [MAP_PROB, VPR_LOW, VPR_HIGH, VPR_WIDTH]
    else:
        ranges = [
            class_column(n, c) for c in range(classes) for n in (VPR_LOW, VPR_HIGH, VPR_WIDTH)
        ]
    return [*head, *ranges, *attributes]


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class Table:
    """One CSV of the run directory. `columns` are always written, in this order; `optional`
    ones only in the runs `varying` names, which also says what the run-dependent columns
    (ε grid, attributes, metrics, labels) are; `pattern` matches those."""

    key: str
    stage: str
    file: str
    about: str
    columns: tuple[str, ...]
    optional: tuple[str, ...] = ()
    varying: str = ""
    pattern: str = ""

    def path(self, run_dir: Path | str) -> Path:
        """The table's file in `run_dir`."""
        return Path(run_dir) / self.stage / self.file

    def unexpected(self, columns: Iterable[str], allowed: Iterable[str] = ()) -> list[str]:
        """Columns of `columns` this table does not define (`allowed`: the run's attributes)."""
        known = {*self.columns, *self.optional, *allowed}
        pat = re.compile(self.pattern) if self.pattern else None
        return [c for c in columns if c not in known and not (pat and pat.match(str(c)))]

    def missing(self, columns: Iterable[str]) -> list[str]:
        """The table's columns absent from `columns`."""
        present = set(columns)
        return [c for c in self.columns if c not in present]


_MULTILABEL = (
    "multilabel runs: `label`, the task's label the row is about (every label is a binary task)"
)

TABLES: dict[str, Table] = {
    t.key: t
    for t in (
        Table(
            "history",
            "train",
            "history.csv",
            "one row per training epoch of the MAP model (step: optimizer steps so far, lr: "
            "the last step's learning rate; selected: the epoch the checkpoint kept, chosen on "
            "the centred moving mean of the validation loss)",
            (EPOCH, STEP, LR, TRAIN_LOSS, VAL_LOSS, VAL_ACC, SELECTED),
        ),
        Table(
            "per_model",
            "sample",
            "per_model.csv",
            "one row per model of the set: scores, distance from θ*, membership per ε",
            (
                MODEL,
                MODE,
                VAL_LOSS,
                VAL_ACCURACY,
                TEST_LOSS,
                TEST_ACCURACY,
                DISTANCE_L2,
                DISTANCE_REL,
            ),
            varying="`in_set@<ε>` (bool) per ε of sample.epsilons and sample.epsilon",
            pattern=r"^in_set@.+$",
        ),
        Table(
            "survival",
            "sample",
            "survival.csv",
            "models within each ε of the grid",
            (EPSILON, ON, MODELS_IN_SET, MODELS, THRESHOLD),
        ),
        Table(
            "metrics",
            "evaluate",
            "metrics.csv",
            "tidy spread table of every per-model metric over the set (stats: n, mean, std, min, "
            "max, q05, q50, q95, map, map_rank, ci95_low, ci95_high)",
            (METRIC, GROUP, SOURCE, EPSILON, STAT, VALUE, ATTRIBUTE, DERIVED),
        ),
        Table(
            "per_model_val",
            "evaluate",
            "per_model_val.csv",
            "one row per model of the Rashomon set, MAP row first (model = -1): per-model "
            "metrics on validation",
            (MODEL,),
            varying="one column per metric: accuracy, auroc, ece, nll, brier, ...; "
            "`<metric>[<attribute>=<level>]` per group, `<gap>[<attribute>]` per attribute; "
            "multilabel: means over labels and `label<l>.<metric>`",
            pattern=r"^.+$",
        ),
        Table(
            "per_model_test",
            "evaluate",
            "per_model_test.csv",
            "the same on test, plus the robustness summary when robustness ran",
            (MODEL,),
            varying="as per_model_val.csv; robustness: `corruption_accuracy`, "
            "`adv_accuracy_<attack>_<ε·255>of255`",
            pattern=r"^.+$",
        ),
        Table(
            "per_sample",
            "evaluate",
            "per_sample.csv",
            "one row per test patient: the MAP model's label, how the set disagrees on it, "
            "its viable prediction range",
            (
                SAMPLE,
                TRUE_LABEL,
                MAP_LABEL,
                FLIP_RATE,
                AMBIGUOUS,
                DISAGREEMENT,
                SELF_CONSISTENCY,
                CAPACITY,
            ),
            optional=(MAP_PROB, VPR_LOW, VPR_HIGH, VPR_WIDTH),
            varying="binary: `map_prob`, `vpr_low`, `vpr_high`, `vpr_width` (positive class); "
            "multiclass: `vpr_low_<c>`, `vpr_high_<c>`, `vpr_width_<c>` per class; multilabel: "
            "`sample`, then `label<l>.<column>` per label for `map_label` ... `vpr_width` (no "
            "`true_label`); then one column of group codes per audited attribute",
            pattern=r"^(vpr_(low|high|width)_\d+|label\d+\..+)$",
        ),
        Table(
            "multiplicity",
            "evaluate",
            "multiplicity.csv",
            "ambiguity, discrepancy, mean disagreement, ... overall (group = all) and per group",
            (METRIC, GROUP, ATTRIBUTE, DERIVED, VALUE),
        ),
        Table(
            "within_stratum",
            "evaluate",
            "within_stratum.csv",
            "fairness gaps of every non-acquisition attribute (real ones, and the `random` null "
            "control) within each stratum of every acquisition attribute (evaluate.acquisition; "
            "default: attributes named view, scanner, site, device or intensity): per "
            "attribute, stratum attribute and gap the marginal gap (stratum `all`), the gap "
            "among the patients of each stratum and their pooled mean weighted by rate_patients "
            "(stratum `pooled`), for the MAP model and across the set (binary: TPR, FPR, "
            "demographic-parity and accuracy gaps; multiclass: accuracy gap; empty for "
            "multilabel tasks or a task without acquisition attribute)",
            (
                ATTRIBUTE,
                DERIVED,
                STRATUM_ATTRIBUTE,
                STRATUM,
                METRIC,
                PATIENTS,
                RATE_PATIENTS,
                SMALLEST_GROUP,
                MAP_GAP,
                SET_GAP_MEAN,
                SET_GAP_Q05,
                SET_GAP_Q50,
                SET_GAP_Q95,
            ),
        ),
        Table(
            "convergence",
            "evaluate",
            "convergence.csv",
            "multiplicity on the first n models of the set (not for multilabel runs)",
            (MODELS, AMBIGUITY, DISCREPANCY, MEAN_CAPACITY),
        ),
        Table(
            "robustness",
            "evaluate",
            "robustness.csv",
            "corruptions and attacks, MAP model (model = -1) and the set's models "
            "(family: clean, corruption, summary, attack; mode: whitebox, transfer)",
            (MODEL, IS_MAP, FAMILY, CORRUPTION, SEVERITY, EPSILON, MODE, METRIC, VALUE),
        ),
        Table(
            "extremes",
            "evaluate",
            "extremes.csv",
            "head-only binary sets, when evaluate.extremes computed them: per test patient the "
            "exact lowest and highest positive-class probability over every head within the "
            "validation ε bound and the training-objective bound (summary.json: extremes_set)",
            (SAMPLE, P_MAP, P_MIN, P_MAX, FLIP_POSSIBLE),
        ),
        Table(
            "selection",
            "decide",
            "selection.csv",
            "best-in-set selection per desideratum: chosen on validation, its gain over the MAP "
            "model on test with a paired-bootstrap interval, standard error, the smallest gain "
            "the test split detects at 80 % power (min_detectable_gain) and p-value "
            "(Holm-adjusted across the desiderata), the verdict, and `model`, the chosen "
            "model's id in sample/per_model.csv (absent when the MAP model is degenerate: "
            "notes.csv says so)",
            (
                DESIDERATUM,
                HIGHER_IS_BETTER,
                MODELS_IN_SET,
                CHOSEN,
                N_TIED_ON_VAL,
                CHOSEN_VAL,
                MAP_VAL,
                CHOSEN_TEST,
                MAP_TEST,
                TEST_GAIN,
                GAIN_CI_LOW,
                GAIN_CI_HIGH,
                GAIN_SE,
                MIN_DETECTABLE_GAIN,
                ORACLE_TEST,
                CHOSEN_TEST_PERCENTILE,
                *(set_test_quantile(q) for q in SELECTION_QUANTILES),
                SPEARMAN_RHO,
                SPEARMAN_P,
                GAIN_P,
                GAIN_P_HOLM,
                VERDICT,
                SELECTION_NOISE,
            ),
            optional=(MODEL, *baseline_columns(), *baseline_columns("threshold"), LABEL),
            varying="with a constrained baseline: `constrained_test`, "
            f"`selection_minus_constrained`; {_MULTILABEL}",
        ),
        Table(
            "selection_values",
            "decide",
            "selection_values.csv",
            "long table: every model of the Rashomon set (`model`: its id in "
            "sample/per_model.csv), desideratum, its validation and test value",
            (MODEL, DESIDERATUM, VAL, TEST),
            optional=(LABEL,),
            varying=_MULTILABEL,
        ),
        Table(
            "pareto",
            "decide",
            "pareto.csv",
            "per desideratum: the validation Pareto front against accuracy and its chosen model",
            (
                DESIDERATUM,
                HIGHER_IS_BETTER,
                EPSILON,
                N_FRONT,
                CHOSEN,
                CHOSEN_VAL_ACCURACY,
                CHOSEN_VAL,
                CHOSEN_TEST_ACCURACY,
                CHOSEN_TEST,
                MAP_VAL_ACCURACY,
                MAP_VAL,
                MAP_TEST_ACCURACY,
                MAP_TEST,
                TEST_GAIN,
                TEST_ACCURACY_CHANGE,
            ),
            optional=(LABEL,),
            varying=_MULTILABEL,
        ),
        Table(
            "pareto_front",
            "decide",
            "pareto_front.csv",
            "the members of every front (chosen: the one pareto.csv chose)",
            (DESIDERATUM, MODEL, VAL_ACCURACY, VAL_VALUE, TEST_ACCURACY, TEST_VALUE, CHOSEN),
            optional=(LABEL,),
            varying=_MULTILABEL,
        ),
        Table(
            "ensembles",
            "decide",
            "ensembles.csv",
            "selective ensembles of k models of the set per abstention rule and threshold",
            (
                COMBINE,
                RULE,
                THRESHOLD,
                K,
                N_ENSEMBLES,
                N_PARTITIONS,
                COVERAGE,
                COVERED_ACCURACY,
                RESIDUAL_AMBIGUITY,
                PAIRWISE_DISAGREEMENT,
            ),
            optional=(LABEL,),
            varying=_MULTILABEL,
        ),
        Table(
            "ensemble_min_k",
            "decide",
            "ensemble_min_k.csv",
            "per rule and threshold: the smallest k whose residual ambiguity is below target",
            (
                COMBINE,
                RULE,
                THRESHOLD,
                TARGET,
                K_MIN,
                COVERAGE,
                COVERAGE_COST,
                COVERED_ACCURACY,
                RESIDUAL_AMBIGUITY,
                SINGLE_MODEL_AMBIGUITY,
            ),
            optional=(LABEL,),
            varying=_MULTILABEL,
        ),
        Table(
            "patients",
            "decide",
            "patients.csv",
            "one row per arbitrary test patient: what disjoint ensembles of k models do with it",
            (
                SAMPLE,
                TRUE_LABEL,
                MAP_LABEL,
                MAP_CORRECT,
                FLIP_RATE,
                AMBIGUOUS,
                ENSEMBLE_ABSTAIN_RATE,
                ENSEMBLE_LABEL,
                ENSEMBLES_DISAGREE,
                K,
                THRESHOLD,
            ),
            optional=(LABEL,),
            varying=_MULTILABEL,
        ),
        Table(
            "lsi",
            "decide",
            "lsi.csv",
            "one row per training image: Laplace Sample Information and how the set disagrees "
            "on it",
            (SAMPLE, LSI, TOP_LSI),
            optional=(DISAGREEMENT, FLIP_RATE, LABEL),
            varying="`disagreement`, `flip_rate`: when the sample stage stored training "
            "predictions; multilabel runs: `label` (LSI is per image: label 0's rows only)",
        ),
        Table(
            "lsi_summary",
            "decide",
            "lsi_summary.csv",
            "how LSI relates to the set's disagreement on the same training images",
            LSI_SUMMARY_COLUMNS,
            optional=(LABEL,),
            varying=_MULTILABEL,
        ),
        Table(
            "postprocess",
            "decide",
            "postprocess.csv",
            "fairlearn's ThresholdOptimizer fitted on validation scores of the MAP model (model "
            "-1) and of the first decide.threshold_models members of the set: their label "
            "desiderata after post-processing, per split (binary tasks with an attribute)",
            (MODEL, ATTRIBUTE, CONSTRAINT, SPLIT, DESIDERATUM, VALUE, SECONDS),
        ),
        Table(
            "notes",
            "decide",
            "notes.csv",
            "what the decide stage skipped, and why",
            (PART, NOTE),
            optional=(LABEL,),
            varying=_MULTILABEL,
        ),
    )
}

# The tables of each stage, by key (the decide stage writes `decide_all`'s tables by these keys).
STAGE_TABLES: dict[str, tuple[str, ...]] = {}
for _t in TABLES.values():
    STAGE_TABLES[_t.stage] = (*STAGE_TABLES.get(_t.stage, ()), _t.key)
del _t


def table_path(run_dir: Path | str, key: str) -> Path:
    """The file of table `key` in `run_dir`."""
    return TABLES[key].path(run_dir)


def stage_records(run_dir: Path | str) -> dict[str, dict[str, Any]]:
    """The run's stage records (`RECORDS`: each finished stage's id, inputs and config hash);
    empty before any stage finished."""
    path = Path(run_dir) / RECORDS
    if not path.exists():
        return {}
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError):
        records = None
    if not isinstance(records, dict) or not all(isinstance(r, dict) for r in records.values()):
        raise RashomonError(
            f"{path} is unreadable (not the JSON of the stage records); delete it and run "
            f"`rashomon run --out {run_dir}`, which redoes every stage"
        )
    return records


# --------------------------------------------------------------------------- in_set@ε columns

IN_SET_PREFIX = "in_set@"
_IN_SET = re.compile(r"^in_set@(.+)$")


def in_set_column(epsilon: float) -> str:
    """The per_model.csv column marking the models within ε: `in_set@0.02`, `in_set@1`."""
    return f"{IN_SET_PREFIX}{float(epsilon):g}"


def parse_in_set_column(name: str) -> float | None:
    """ε of an `in_set@ε` column name; None for any other column."""
    m = _IN_SET.match(str(name))
    if not m:
        return None
    try:
        return float(m.group(1))
    except ValueError:
        return None


def find_in_set_column(columns: Iterable[str], epsilon: float, where: str) -> str:
    """The column of `columns` for ε, matched as a number (`in_set@2e-2` is ε = 0.02); an error
    listing the ε values present otherwise."""
    found = {}
    for col in columns:
        eps = parse_in_set_column(col)
        if eps is not None:
            found[eps] = col
    for eps, col in found.items():
        if math.isclose(eps, float(epsilon), rel_tol=1e-9, abs_tol=1e-12):
            return col
    raise RashomonError(
        f"{where} has no Rashomon set at ε={float(epsilon):g} (it has "
        f"{[float(f'{e:g}') for e in sorted(found)]}); choose one of those or add ε to "
        "sample.epsilons and re-run the sample stage"
    )


# --------------------------------------------------------------------------- the sample record


@dataclass(frozen=True)
class SampleRecord:
    """What the sample stage recorded about the set (sample/summary.json): the one source of ε,
    the criterion, the source and its resolved options for every later stage and reader."""

    epsilon: float
    on: str
    source: str
    options: dict[str, Any]
    models: int | None = None
    models_in_set: int | None = None
    head_only: bool = False  # the set varies the last layer only
    # The MAP model's training class weights, on which the filter's loss is defined (None:
    # unweighted cross-entropy)
    class_weight: tuple[float, ...] | None = None
    summary: dict[str, Any] | None = None  # the whole summary.json


SAMPLE_REQUIRED = ("epsilon", "on", "source", "options")


def sample_record(run_dir: Path | str) -> SampleRecord:
    """The sample stage's record of `run_dir`; a RashomonError naming the stage when it has not
    finished (no sample/summary.json) or wrote an older summary without ε, source or options."""
    run_dir = Path(run_dir)
    path = run_dir / "sample" / SUMMARY
    rerun = f"`rashomon sample {run_dir} --force`"
    if not path.exists():
        raise RashomonError(
            f"{run_dir} has no finished stage 'sample' ({path} is missing); run "
            f"`rashomon sample {run_dir}` (or `rashomon run`) first"
        )
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RashomonError(
            f"{path} is unreadable ({exc}); re-run stage 'sample': {rerun}"
        ) from exc
    lacking = [k for k in SAMPLE_REQUIRED if k not in summary]
    if lacking:
        raise RashomonError(
            f"{path} lacks {', '.join(lacking)} (written by an older version); re-run stage "
            f"'sample': {rerun}"
        )

    def count(key: str) -> int | None:
        return int(summary[key]) if summary.get(key) is not None else None

    return SampleRecord(
        epsilon=float(summary["epsilon"]),
        on=str(summary["on"]),
        source=str(summary["source"]),
        options=dict(summary["options"] or {}),
        models=count(MODELS),
        models_in_set=count(MODELS_IN_SET),
        head_only=bool(summary.get("head_only", False)),
        class_weight=tuple(map(float, summary["class_weight"]))
        if summary.get("class_weight")
        else None,
        summary=summary,
    )


# --------------------------------------------------------------------------- documentation


def markdown() -> str:
    """The file-by-file column list of docs/run-directory.md, from the tables above."""
    lines = []
    stage = None
    for t in TABLES.values():
        if t.stage != stage:
            stage = t.stage
            lines.append(f"\n### {stage}/\n")
        lines.append(f"- **{t.file}**: {t.about}.")
        lines.append(f"  Columns: {', '.join(f'`{c}`' for c in t.columns)}.")
        if t.varying:  # it names the optional columns too
            lines.append(f"  Also: {t.varying}.")
    return "\n".join(lines).strip() + "\n"
