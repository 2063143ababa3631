"""What the model-set benchmarks share: their command-line options, the PneumoniaMNIST task, the
cnn-small MAP model (trained once, cached under /tmp/rashomon_bench) and the all-weights
Kronecker Laplace fitted on it (cached as laplace-torch's state_dict)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

CACHE = Path("/tmp/rashomon_bench")
DATA = os.environ.get("RASHOMON_DATA", str(Path(__file__).resolve().parents[2] / "shared/data"))


def parser(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--quick", action="store_true", help="fewer models, images and epochs")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--epochs", type=int, default=3, help="MAP training epochs")
    ap.add_argument("--rounds", type=int, default=5, help="paired rounds (at least 5 for notes)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument(
        "--fit-images",
        type=int,
        default=None,
        help="training images the all-weights Laplace is fitted on (0: all; --quick: 1000)",
    )
    ap.add_argument("--json", default=None, help="write the rows as JSON to this file")
    return ap


def parse(ap: argparse.ArgumentParser) -> argparse.Namespace:
    args = ap.parse_args()
    if args.fit_images is None:
        args.fit_images = 1000 if args.quick else 0
    warnings.simplefilter("ignore")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def header(args) -> dict:
    import torch

    h = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": args.device,
    }
    print(", ".join(f"{k} {v}" for k, v in h.items()))
    return h


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def setup(args):
    """The task and the cached MAP model (trained on first use)."""
    import torch

    import rashomon as rs
    from rashomon.models.train import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    task = rs.load_task("pneumoniamnist", root=DATA)
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"cnn_small_pneu_e{args.epochs}.pt"
    if not path.exists():
        model = rs.train(task, "cnn-small", epochs=args.epochs, seed=0, progress=False)
        save_checkpoint(model, path, task)
    model, _ = load_checkpoint(path, device=args.device)
    return task, model


def fit_subset(task, n):
    """The task with its training split cut to n images (fit time only; set sizes unchanged)."""
    import dataclasses

    if n <= 0 or n >= len(task.train):
        return task
    train = dataclasses.replace(task.train, x=task.train.x[:n], y=task.train.y[:n])
    return dataclasses.replace(task, train=train)


def all_weights_posterior(args, task, model):
    """The all-weights kron Laplace, fitted once and cached (laplace-torch state_dict), so the
    benchmarks time sampling and prediction, not the same fit again. Returns it and the fit's
    seconds (from the run that fitted it)."""
    import copy

    import torch
    from laplace import Laplace

    import rashomon as rs
    from rashomon.sets.base import task_description
    from rashomon.sets.curvature import PerSampleGGN
    from rashomon.sets.laplace import LaplacePosterior

    path = CACHE / f"la_all_kron_e{args.epochs}_n{args.fit_images}.pt"
    if path.exists():
        net = copy.deepcopy(model)
        la = Laplace(
            net,
            "classification",
            subset_of_weights="all",
            hessian_structure="kron",
            backend=PerSampleGGN,  # as rs.laplace builds it
        )
        la.load_state_dict(torch.load(path, weights_only=False))
        names = [n for n, _ in net.named_parameters()]
        post = LaplacePosterior(
            net, la, names, subset="all", hessian="kron", task=task_description(task)
        )
        return post, json.loads(path.with_suffix(".json").read_text())["fit_s"]
    post, fit_s = timed(
        rs.laplace,
        model,
        fit_subset(task, args.fit_images),
        subset="all",
        hessian="kron",
        prior="marglik",
        device=args.device,
    )
    torch.save(post.la.state_dict(), path)
    path.with_suffix(".json").write_text(json.dumps({"fit_s": fit_s}))
    return post, fit_s


def default_backend(la) -> type:
    """The curvature backend laplace-torch uses when none is given (`backend=None`)."""
    from laplace import Laplace

    return Laplace(la.model, "classification", subset_of_weights="all")._backend_cls


def fast_copy(model, mset, x, device: str):
    """A copy of `model` with its parameters in the memory layout rashomon.sets.predict runs CPU
    forwards in, and `x` cut into the chunks it uses: the floors run the MAP net exactly the way
    ours runs each model (private helpers on purpose: a floor must follow what predict picks).
    Returns (copy, [input chunks], chunk size, layout name)."""
    import copy

    import torch

    import rashomon.sets.predict as rp

    dev = torch.device(device)
    layout = rp._fast_layout(dev, mset.base)
    fast = copy.deepcopy(model)
    for p in fast.parameters():
        p.data = layout(p.data)
    act = rp._activation_bytes(mset, x, dev)
    chunk = rp._forward_chunk(mset, x, rp.memory_budget(None, dev), act, dev)
    chunks = [layout(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    return fast, chunks, chunk, layout.__name__
