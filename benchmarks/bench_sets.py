"""Run the model-set benchmarks, each in its own process (its own peak memory), one after another.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_sets.py [--rows all_nn,...] [--rounds 5]

Rows (one file each; run a file alone for its own options):
  last_layer  bench_last_layer.py    last-layer kron M=1000 vs laplace-torch and the floor
  all_nn      bench_all_weights.py   all-weights kron, M sampled nets vs laplace-torch, floors;
                                     loop vs vmap
  all_glm     bench_glm.py           all-weights GLM vs laplace-torch; M=1000 on 624 images
  vs_retrain  bench_retrain_cost.py  a Laplace set of 1000 vs retraining 10 models
Every row alternates its contenders in paired rounds (benchmarks/_paired.py) and prints each
contender's median time with its range, the median and range of the per-round ratios, and the
peak resident memory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import _fixtures as fx

HERE = Path(__file__).resolve().parent
ROWS = {
    "last_layer": "bench_last_layer.py",
    "all_nn": "bench_all_weights.py",
    "all_glm": "bench_glm.py",
    "vs_retrain": "bench_retrain_cost.py",
}


def main() -> None:
    ap = fx.parser(__doc__.split("\n")[0])
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--all-models", type=int, default=None, help="M of the all-weights row")
    args = fx.parse(ap)
    unknown = [r for r in args.rows.split(",") if r not in ROWS]
    if unknown:
        ap.error(f"unknown rows {unknown}; choose from {list(ROWS)}")
    header = fx.header(args)
    fx.setup(args)  # train and cache the MAP model once, before any row
    common = ["--device", args.device, "--epochs", str(args.epochs), "--rounds", str(args.rounds)]
    common += ["--fit-images", str(args.fit_images)]
    common += ["--quick"] if args.quick else []
    common += ["--threads", str(args.threads)] if args.threads else []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.rows.split(","):
            out = Path(tmp) / f"{name}.json"
            cmd = [sys.executable, str(HERE / ROWS[name]), *common, "--json", str(out)]
            if name == "all_nn" and args.all_models:
                cmd += ["--models", str(args.all_models)]
            done = subprocess.run(cmd)  # the row prints its own table as it goes
            if done.returncode != 0:
                print(f"[{name}] failed with exit status {done.returncode}")
                continue
            rows += json.loads(out.read_text())["rows"]
    if args.json:
        Path(args.json).write_text(json.dumps({**header, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
