"""Time every multiplicity metric and every per-model metric for M = 1000 models on arrays shaped
like PneumoniaMNIST's test split (N = 624, binary, attributes intensity (3) and random (2)).

    .venv/bin/python benchmarks/bench_metrics.py [--models 1000] [--samples 624] [--rounds 5]

Probabilities are synthetic (a shared logit plus per-model noise) so the script needs no data;
timings do not depend on the values beyond ties. The stages are alternated in paired rounds
(benchmarks/_paired.py, the order rotated each round); each prints its median time with its
range and its peak resident memory, and the end-to-end line sums the four composite stages of
each round (median and range over rounds).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import numpy as np
from _paired import run_row, write_json

import rashomon.metrics as rm


def make_arrays(m: int, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    y = (signal + rng.normal(size=n) > 0).astype(np.int64)
    logits = signal[None] + 0.5 * rng.normal(size=(m, n))
    p1 = (1 / (1 + np.exp(-logits))).astype(np.float32)
    ref1 = 1 / (1 + np.exp(-signal))
    return {
        "probs": np.stack([1 - p1, p1], axis=-1),
        "ref_probs": np.stack([1 - ref1, ref1], axis=-1),
        "y": y,
        "intensity": rng.integers(0, 3, size=n),
        "random": rng.integers(0, 2, size=n),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=624)
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds (at least 5)")
    parser.add_argument("--json", default=None, help="write the row as JSON to this file")
    args = parser.parse_args()
    a = make_arrays(args.models, args.samples)
    probs, ref_probs, y = a["probs"], a["ref_probs"], a["y"]
    groups = {"intensity": a["intensity"], "random": a["random"]}
    derived = {"intensity": True, "random": True}
    preds = rm.predict_labels(probs)
    ref = rm.predict_labels(ref_probs[None])[0]
    per_model = rm.per_model_table(probs, y, groups, derived)
    map_row = rm.per_model_table(ref_probs[None], y, groups, derived).iloc[0]
    stages: dict[str, Callable[[], object]] = {
        "ambiguity + discrepancy": lambda: (rm.ambiguity(preds, ref), rm.discrepancy(preds, ref)),
        "disagreement + self-consistency": lambda: (
            rm.disagreement(preds),
            rm.self_consistency(preds),
        ),
        "viable prediction range": lambda: rm.viable_prediction_range(probs),
        "rashomon capacity": lambda: rm.rashomon_capacity(probs),
        "multiplicity_summary (all of the above, 2 attributes)": lambda: rm.multiplicity_summary(
            probs, ref_probs, groups, derived
        ),
        "convergence curve (10..1000)": lambda: rm.convergence_curve(probs, ref),
        "per_model_table (perf + calibration + groups + gaps)": lambda: rm.per_model_table(
            probs, y, groups, derived
        ),
        "spread_table (bootstrap 1000)": lambda: rm.spread_table(per_model, map_row, "bench", 0.01),
    }
    composite = [
        "multiplicity_summary (all of the above, 2 attributes)",
        "convergence curve (10..1000)",
        "per_model_table (perf + calibration + groups + gaps)",
        "spread_table (bootstrap 1000)",
    ]
    row = run_row(
        "metrics",
        f"M = {args.models} models, N = {args.samples} samples, C = 2 "
        f"({per_model.shape[1]} per-model metric columns)",
        stages,
        args.rounds,
    )
    sums = [sum(row.timings[k].wall[r] for k in composite) for r in range(args.rounds)]
    print(
        f"  {'multiplicity_summary + convergence + per_model_table + spread':<60s} "
        f"{statistics.median(sums):.3f} s [{min(sums):.3f}–{max(sums):.3f}] (per-round sums)"
    )
    row.extra["end_to_end_s_per_round"] = sums
    write_json([row], args.json, {"models": args.models, "samples": args.samples})


if __name__ == "__main__":
    main()
