"""per_model_table columns against the single metrics, the tidy spread table's statistics, and
the null-control warning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import rashomon.metrics as rm
from rashomon.errors import RashomonError
from rashomon.metrics.spread import TIDY_COLUMNS, spread_stats


@pytest.fixture
def audit_set():
    rng = np.random.default_rng(0)
    n = 120
    y = rng.integers(0, 2, size=n)
    p1 = np.clip(0.4 * y[None] + rng.uniform(0, 0.6, size=(8, n)), 0, 1)
    groups = {"intensity": rng.integers(0, 3, size=n), "random": rng.integers(0, 2, size=n)}
    return np.stack([1 - p1, p1], axis=-1), y, groups


def test_per_model_table_columns_match_metrics(audit_set):
    probs, y, groups = audit_set
    table = rm.per_model_table(
        probs,
        y,
        groups,
        {"intensity": True, "random": True},
        level_names={"intensity": ["lo", "mid", "hi"]},
    )
    assert len(table) == 8
    np.testing.assert_allclose(table["accuracy"], rm.accuracy(probs, y))
    np.testing.assert_allclose(table["auroc"], rm.auroc(probs, y))
    np.testing.assert_allclose(table["auprc"], rm.average_precision(probs, y))
    np.testing.assert_allclose(table["ece_adaptive"], rm.adaptive_ece(probs, y))
    np.testing.assert_allclose(table["brier"], rm.brier(probs, y))
    gaps = rm.fairness_gaps(probs, y, groups["intensity"])
    np.testing.assert_allclose(table["tpr_gap[intensity]"], gaps["tpr_gap"])
    _, per_group = rm.group_metrics(probs, y, groups["intensity"])
    np.testing.assert_allclose(table["tpr[intensity=hi]"], per_group["tpr"][:, 2])
    assert table.attrs["attributes_derived"] == {"intensity": True, "random": True}
    assert rm.split_column("tpr[intensity=hi]") == ("tpr", "intensity", "hi")
    assert rm.split_column("tpr_gap[random]") == ("tpr_gap", "random", None)
    assert rm.split_column("label2.auroc") == ("label2.auroc", None, None)


def test_per_model_table_multilabel(audit_set):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, size=(50, 3))
    probs = np.clip(0.4 * y[None] + rng.uniform(0, 0.6, size=(4, 50, 3)), 0, 1)
    groups = {"random": rng.integers(0, 2, size=50)}
    table = rm.per_model_table(probs, y, groups, {"random": True}, kind="multilabel")
    np.testing.assert_allclose(table["auroc"], rm.multilabel_auroc(probs, y))
    label1 = np.stack([1 - probs[..., 1], probs[..., 1]], axis=-1)
    np.testing.assert_allclose(table["label1.ece"], rm.ece(label1, y[:, 1]))
    assert "label1.tpr_gap[random]" in table.columns


def test_spread_stats_values():
    values = np.arange(1.0, 101.0)
    s = spread_stats(values, map_value=50.0, n_boot=500, seed=3)
    assert s["mean"] == 50.5 and s["min"] == 1 and s["max"] == 100
    assert s["q05"] == pytest.approx(np.quantile(values, 0.05))
    assert s["q95"] == pytest.approx(np.quantile(values, 0.95))
    assert s["std"] == pytest.approx(values.std(ddof=1))
    assert s["map_rank"] == pytest.approx(49.5)  # 49 below, 1 equal
    # The bootstrap CI equals a direct loop over the same seeded resamples.
    draws = np.random.default_rng(3).integers(0, 100, size=(500, 100))
    lo, hi = np.quantile(values[draws].mean(axis=1), [0.025, 0.975])
    assert (s["ci95_low"], s["ci95_high"]) == pytest.approx((lo, hi))
    with_nan = spread_stats(np.array([1.0, np.nan, 3.0]))
    assert with_nan["n"] == 2 and with_nan["mean"] == 2.0


def test_spread_table_is_tidy_and_marks_derived(audit_set, tmp_path):
    probs, y, groups = audit_set
    derived = {"intensity": True, "random": True}
    per_model = rm.per_model_table(probs, y, groups, derived)
    map_row = rm.per_model_table(probs[:1], y, groups, derived).iloc[0]
    tidy = rm.spread_table(per_model, map_row, source="laplace", epsilon=0.01, seed=0)
    assert tuple(tidy.columns) == TIDY_COLUMNS
    acc = tidy[(tidy["metric"] == "accuracy") & (tidy["group"] == "all")].set_index("stat")
    assert acc.loc["mean", "value"] == pytest.approx(per_model["accuracy"].mean())
    assert acc.loc["map", "value"] == pytest.approx(per_model["accuracy"].iloc[0])
    assert (acc["source"] == "laplace").all() and (acc["epsilon"] == 0.01).all()
    gap = tidy[(tidy["metric"] == "tpr_gap") & (tidy["group"] == "intensity")]
    assert gap["derived"].all() and (gap["attribute"] == "intensity").all()
    per_group = tidy[tidy["group"] == "intensity=2"]
    assert set(per_group["metric"]) == {"accuracy", "tpr", "fpr", "selection_rate", "auroc", "ece"}
    # Same seed, same table; CSV and Parquet both round-trip.
    again = rm.spread_table(per_model, map_row, source="laplace", epsilon=0.01, seed=0)
    pd.testing.assert_frame_equal(tidy, again)
    csv = pd.read_csv(rm.write_table(tidy, tmp_path / "spread.csv"))
    parquet = pd.read_parquet(rm.write_table(tidy, tmp_path / "spread.parquet"))
    assert len(csv) == len(parquet) == len(tidy)
    text = rm.summarise(tidy, ["accuracy", "auroc"])
    assert text.startswith("accuracy: MAP") and "auroc" in text


def gap_frame(real: np.ndarray, null: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"tpr_gap[sex]": real, "tpr_gap[random]": null})


def test_null_control_warning_rule():
    rng = np.random.default_rng(0)
    real = 0.20 + 0.05 * rng.uniform(size=200)
    quiet_null = 0.02 + 0.01 * rng.uniform(size=200)
    assert rm.null_control_warning(gap_frame(real, quiet_null), "sex") is None
    loud_null = 0.05 + 0.2 * rng.uniform(size=200)  # spreads wider than the real gap
    message = rm.null_control_warning(gap_frame(real, loud_null), "sex")
    assert message is not None and "spread" in message and "'random'" in message
    # Works from the tidy table too, with the same verdicts.
    tidy = rm.spread_table(gap_frame(real, loud_null), attributes_derived={"random": True})
    assert rm.null_control_warning(tidy, "sex") is not None
    tidy = rm.spread_table(gap_frame(real, quiet_null))
    assert rm.null_control_warning(tidy, "sex") is None
    with pytest.raises(RashomonError, match="not in the per-model table"):
        rm.null_control_warning(gap_frame(real, quiet_null), "age")


def test_null_control_is_silent_when_no_gap_exists_anywhere():
    import pandas as pd

    from rashomon.metrics import null_control_warning

    flat = pd.DataFrame({"tpr_gap[intensity]": [0.0, 0.0, 0.0], "tpr_gap[random]": [0.0] * 3})
    assert null_control_warning(flat, "intensity") is None
    noisy = pd.DataFrame({"tpr_gap[intensity]": [0.0, 0.0, 0.0], "tpr_gap[random]": [0.1] * 3})
    assert "Null control" in null_control_warning(noisy, "intensity")
