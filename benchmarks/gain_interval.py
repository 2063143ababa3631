"""Coverage of the bootstrap interval of a selection gain on a fairness gap, all from the same
replicates: the percentile interval (what `bootstrap_gain` returned before), the basic interval
with its bias-corrected estimate 2θ̂ − median, the normal interval θ̂ ± z·sd and the symmetric
pivotal interval θ̂ ± quantile(|θ* − θ̂|) that `bootstrap_gain` returns now.

    .venv/bin/python benchmarks/gain_interval.py [--datasets 300] [--boot 400] [--patients 156]

Each simulated test set has `--patients` patients in three groups (BreastMNIST's test split has
156 patients and a three-level intensity proxy). The MAP model predicts positive with probability
0.3 + true_gap for group 0 and 0.3 otherwise; the chosen model is constant (demographic-parity
gap 0). The oriented gain on `dp_gap` (lower is better) is then the MAP model's gap, whose true
value is `true_gap`. Prints per interval: coverage of the true gain, the share of test sets where
it claims a real gain (low > 0) or a real loss (high < 0), and the share where it holds its own
estimate (θ̂, for the basic interval 2θ̂ − median).
"""

from __future__ import annotations

import argparse

import numpy as np

from rashomon.decide.desiderata import dp_gap
from rashomon.decide.selection import bootstrap_gain


def one_hot(pred: np.ndarray) -> np.ndarray:
    return np.stack([1.0 - pred, pred], axis=1) * 0.9 + 0.05


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=int, default=300)
    ap.add_argument("--boot", type=int, default=400)
    ap.add_argument("--patients", type=int, default=156)
    ap.add_argument("--level", type=float, default=0.95)
    args = ap.parse_args()
    metric = dp_gap("g")
    z = 1.959963984540054 if args.level == 0.95 else None
    rng = np.random.default_rng(0)
    n = args.patients
    for true_gap in (0.0, 0.05, 0.15):
        tally = {k: np.zeros(4) for k in ("percentile", "basic", "normal", "symmetric")}
        for d in range(args.datasets):
            g = rng.integers(0, 3, n)
            y = rng.integers(0, 2, n)
            pred = (rng.random(n) < 0.3 + true_gap * (g == 0)).astype(float)
            chosen, ref = one_hot(np.zeros(n)), one_hot(pred)
            full, lo, hi, reps = bootstrap_gain(
                metric,
                chosen,
                ref,
                y,
                {"g": g},
                higher_is_better=False,
                n_boot=args.boot,
                level=args.level,
                seed=d,
            )
            # full: the full-sample gain θ̂ (the MAP model's gap); lo, hi: the symmetric interval
            tail = 100 * (1 - args.level) / 2
            q_lo, median, q_hi = np.percentile(reps, [tail, 50, 100 - tail])
            sd = reps.std(ddof=1)
            for name, (a, b, centre) in {
                "percentile": (q_lo, q_hi, full),
                "basic": (2 * full - q_hi, 2 * full - q_lo, 2 * full - median),
                "normal": (full - z * sd, full + z * sd, full) if z else (np.nan,) * 3,
                "symmetric": (lo, hi, full),
            }.items():
                tally[name] += (a <= true_gap <= b, a > 0, b < 0, a <= centre <= b)
        print(f"true gain {true_gap:g} ({args.datasets} test sets, {args.boot} replicates):")
        for name, (cover, gains, losses, holds) in tally.items():
            k = args.datasets
            print(
                f"  {name:10s} coverage {cover / k:.2f}  'real gain' {gains / k:.2f}  "
                f"'real loss' {losses / k:.2f}  holds its estimate {holds / k:.2f}"
            )


if __name__ == "__main__":
    main()
