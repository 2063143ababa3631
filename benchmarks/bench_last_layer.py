"""Last-layer Kronecker Laplace, M = 1000 models on the 624 PneumoniaMNIST test images
(cnn-small): ours against laplace-torch and the floor.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_last_layer.py [--models 1000] [--rounds 5]

Contenders, alternated in paired rounds (benchmarks/_paired.py):
- ours: `post.sample(M, seed=0).predict(x)` (sampling + the `head` strategy);
- laplace-torch: `la.predictive_samples(x, pred_type="nn", n_samples=M)`;
- floor: one MAP forward to the features (in the layout and chunks ours uses) and one batched
  matmul with M random heads: the least work any method that runs the body does;
- plain floor: the same with the features from `model.features(x)` in NCHW on the whole batch;
- the parts of ours: predict alone (premade set), sampling alone, and the floor's forward alone.
"""

from __future__ import annotations

import _fixtures as fx
from _paired import run_row, write_json


def main() -> None:
    ap = fx.parser(__doc__.split("\n")[0])
    ap.add_argument("--models", type=int, default=1000)
    args = fx.parse(ap)
    M = args.models
    import torch

    import rashomon as rs

    head = fx.header(args)
    task, model = fx.setup(args)
    x = task.test.x.to(args.device)
    post, fit_s = fx.timed(
        rs.laplace,
        model,
        task,
        subset="last_layer",
        hessian="kron",
        prior="marglik",
        device=args.device,
    )
    premade = post.sample(M, seed=0)
    fast, xs, chunk, layout = fx.fast_copy(model, premade, x, args.device)
    w = torch.randn(M * 2, model.head.in_features, device=args.device)

    def ours():
        return post.sample(M, seed=0).predict(x, device=args.device)

    def theirs():
        gen = torch.Generator(device=args.device).manual_seed(0)
        return post.la.predictive_samples(x, pred_type="nn", n_samples=M, generator=gen)

    @torch.no_grad()
    def features():
        return torch.cat([fast.features(c) for c in xs])

    @torch.no_grad()
    def floor():
        return torch.softmax((features() @ w.T).reshape(-1, M, 2), -1)

    @torch.no_grad()
    def plain_floor():
        return torch.softmax((model.features(x) @ w.T).reshape(-1, M, 2), -1)

    ours()  # warm-up (allocator, activation-size probe), both sides
    theirs()
    row = run_row(
        "last_layer",
        f"last-layer kron, M = {M}, {len(x)} images",
        {
            "ours": ours,
            "theirs": theirs,
            "floor": floor,
            "plain_floor": plain_floor,
            "predict": lambda: premade.predict(x, device=args.device),
            "sample": lambda: post.sample(M, seed=0),
            "features": features,
        },
        args.rounds,
        ratios=[("theirs", "ours"), ("ours", "floor"), ("predict", "floor"), ("theirs", "floor")],
        labels={
            "ours": "ours: sample + predict",
            "theirs": "laplace-torch predictive_samples(nn)",
            "floor": "floor: features (our layout) + matmul",
            "plain_floor": "plain floor: features (NCHW, 1 batch) + matmul",
            "predict": "ours, predict only",
            "sample": "ours, sampling only",
            "features": "floor's features forward only",
        },
        warmup=False,
        fit_s=fit_s,
        input_chunk=chunk,
        layout=layout,
    )
    write_json([row], args.json, head)


if __name__ == "__main__":
    main()
