"""All-weights Kronecker Laplace, linearised (GLM) models on PneumoniaMNIST test images
(cnn-small): ours against laplace-torch's GLM predictive.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_glm.py [--rounds 5] [--big-limit-gb 8]

Rows, each alternated in paired rounds (benchmarks/_paired.py):
1. M = 100 on 64 images: ours (`sample(kind="glm").predict`) against laplace-torch's
   `predictive_samples(pred_type="glm")` with its default curvature backend, and with our
   PerSampleGGN backend (the one our posteriors carry, which also speeds up laplace-torch).
   laplace-torch's GLM samples draw each input's logits independently from N(f(x), J Σ Jᵀ):
   they are no fixed models, so the comparison is of cost only.
2. M = 1000 on all 624 images under a 4 GB budget: ours alone; laplace-torch's default backend
   is tried once in a child process killed when its resident memory passes --big-limit-gb.
"""

from __future__ import annotations

import subprocess
import sys
import time

import _fixtures as fx
from _paired import run_row, write_json


def _theirs_big(args) -> None:
    """Child: laplace-torch's GLM predictive, default backend, M = 1000, 624 images."""
    import torch

    task, model = fx.setup(args)
    post, _ = fx.all_weights_posterior(args, task, model)
    post.la._backend_cls, post.la._backend = fx.default_backend(post.la), None
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    post.la.predictive_samples(task.test.x, pred_type="glm", n_samples=1000, generator=gen)
    print(f"done in {time.perf_counter() - start:.1f} s")


def _rss_gb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def try_theirs_big(args) -> str:
    """Run _theirs_big in a child, killed (by its own pid) above the memory limit."""
    cmd = [sys.executable, __file__, "--child-big", "--epochs", str(args.epochs)]
    cmd += ["--fit-images", str(args.fit_images)]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, start = 0.0, time.perf_counter()
    while child.poll() is None:
        peak = max(peak, _rss_gb(child.pid))
        if peak > args.big_limit_gb:
            child.kill()
            child.wait()
            return f"killed at {peak:.1f} GB resident after {time.perf_counter() - start:.0f} s"
        time.sleep(0.05)
    out, err = child.communicate()
    if child.returncode != 0:
        last = (err.strip().splitlines() or ["?"])[-1]
        return f"failed ({last[:120]}), peak {peak:.1f} GB"
    return f"{out.strip()}, peak {peak:.1f} GB"


def main() -> None:
    ap = fx.parser(__doc__.split("\n")[0])
    ap.add_argument("--big-limit-gb", type=float, default=8.0)
    ap.add_argument("--child-big", action="store_true", help=fx.argparse.SUPPRESS)
    args = fx.parse(ap)
    if args.child_big:
        _theirs_big(args)
        return
    import torch

    head = fx.header(args)
    task, model = fx.setup(args)
    post, fit_s = fx.all_weights_posterior(args, task, model)
    x64 = task.test.x[:64].to(args.device)
    own_cls = post.la._backend_cls

    def ours():
        return post.sample(100, seed=0, kind="glm").predict(x64, device=args.device)

    def theirs_with(backend_cls):
        def run():
            post.la._backend_cls, post.la._backend = backend_cls, None
            try:
                gen = torch.Generator(device=args.device).manual_seed(0)
                return post.la.predictive_samples(
                    x64, pred_type="glm", n_samples=100, generator=gen
                )
            finally:
                post.la._backend_cls, post.la._backend = own_cls, None

        return run

    default_cls = fx.default_backend(post.la)
    rows = [
        run_row(
            "all_glm",
            "all-weights kron GLM, M = 100, 64 images",
            {
                "ours": ours,
                "theirs": theirs_with(default_cls),
                "theirs_our_backend": theirs_with(own_cls),
            },
            args.rounds,
            ratios=[("theirs", "ours"), ("theirs_our_backend", "ours")],
            labels={
                "ours": "ours: sample + predict (fixed models)",
                "theirs": f"laplace-torch glm, {default_cls.__name__}",
                "theirs_our_backend": f"laplace-torch glm, our {own_cls.__name__}",
            },
            fit_s=fit_s,
        )
    ]

    def big():
        return post.sample(1000, seed=0, kind="glm").predict(
            task.test.x, device=args.device, max_memory="4GB"
        )

    theirs_big = try_theirs_big(args) if args.device == "cpu" else "not tried"
    rows.append(
        run_row(
            "all_glm_big",
            f"all-weights kron GLM, M = 1000, {len(task.test.x)} images, 4 GB budget",
            {"ours": big},
            args.rounds,
            labels={"ours": "ours: sample + predict"},
            warmup=False,
            laplace_torch_default_backend=theirs_big,
            laplace_torch_memory_limit_gb=args.big_limit_gb,
        )
    )
    write_json(rows, args.json, head)


if __name__ == "__main__":
    main()
