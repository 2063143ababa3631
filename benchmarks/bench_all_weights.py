"""All-weights Kronecker Laplace, M sampled networks on the 624 PneumoniaMNIST test images
(cnn-small, 88,898 parameters): ours against laplace-torch and plain loops of forwards.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_all_weights.py [--models 100] [--rounds 5]

Contenders, alternated in paired rounds (benchmarks/_paired.py):
- ours: `post.sample(M, seed=0).predict(x)` (sampling + prediction, the `loop` strategy);
- laplace-torch: `la.predictive_samples(x, pred_type="nn", n_samples=M)` on the same weights
  (same generator seed; the script checks the outputs agree);
- floor: M forwards of the MAP network in the layout and input chunks ours uses (channels-last,
  chunks from rashomon.sets.predict), no sampling, no functional_call: what ours cannot beat;
- plain: M × `model(x)` under no_grad on the whole batch in NCHW, the loop one writes first (the
  floor of earlier versions, which laplace-torch beat: it faults in fresh pages on every forward
  and runs ATen's scalar NCHW max-pool; see rashomon/sets/predict.py).
Then loop against vmap over 10 models on 128 images (the `auto` choice on the CPU), and the
anatomy of one forward of the 624 images through the MAP net, 5 forwards per call: NCHW on the
whole batch under no_grad (plain), the same with autograd on (as laplace-torch runs it), NCHW in
our input chunks, channels-last on the whole batch, and channels-last in our chunks (ours). Its
CPU, system-time and page-fault columns show where the time of the plain loop goes.
"""

from __future__ import annotations

import _fixtures as fx
from _paired import run_row, write_json


def main() -> None:
    ap = fx.parser(__doc__.split("\n")[0])
    ap.add_argument("--models", type=int, default=None, help="M (default 100; --quick 20)")
    args = fx.parse(ap)
    M = args.models or (20 if args.quick else 100)
    import torch

    from rashomon.predict import predict_logits

    head = fx.header(args)
    task, model = fx.setup(args)
    x = task.test.x.to(args.device)
    post, fit_s = fx.all_weights_posterior(args, task, model)

    def ours():
        return post.sample(M, seed=0).predict(x, device=args.device)

    def theirs():
        gen = torch.Generator(device=args.device).manual_seed(0)
        return post.la.predictive_samples(x, pred_type="nn", n_samples=M, generator=gen)

    fast, xs, chunk, layout = fx.fast_copy(model, post.sample(1, seed=0), x, args.device)

    @torch.no_grad()
    def floor():
        return torch.stack([torch.cat([fast(c) for c in xs]).softmax(-1) for _ in range(M)])

    @torch.no_grad()
    def plain():
        return torch.stack([torch.softmax(model(x), -1) for _ in range(M)])

    # Same weights (one generator seed), so the outputs must agree up to float32 rounding.
    few = min(M, 5)
    a = post.sample(few, seed=0).predict(x, device=args.device)
    gen = torch.Generator(device=args.device).manual_seed(0)
    b = post.la.predictive_samples(x, pred_type="nn", n_samples=few, generator=gen)
    agree = (a - b).abs().max().item()
    logit_scale = predict_logits(post.sample(few, seed=0), x).abs().max().item()
    del a, b
    # Warm-up outside the rounds (allocator, kernel selection): one forward each.
    post.sample(1, seed=0).predict(x)
    post.la.predictive_samples(x, pred_type="nn", n_samples=1)
    rows = [
        run_row(
            "all_nn",
            f"all-weights kron, M = {M} sampled networks, {len(x)} images",
            {"ours": ours, "theirs": theirs, "floor": floor, "plain": plain},
            args.rounds,
            ratios=[("theirs", "ours"), ("ours", "floor"), ("plain", "floor")],
            warmup=False,
            labels={
                "ours": "ours: sample + predict",
                "theirs": "laplace-torch predictive_samples(nn)",
                "floor": f"floor: {M} MAP forwards, our layout/chunks",
                "plain": f"plain: {M} × model(x), NCHW, whole batch",
            },
            fit_s=fit_s,
            fit_images=args.fit_images or len(task.train),
            input_chunk=chunk,
            layout=layout,
            max_abs_prob_diff_ours_vs_theirs=agree,
            max_abs_logit_of_these_nets=logit_scale,
        )
    ]
    small = post.sample(10, seed=1)
    x128 = x[:128]
    rows.append(
        run_row(
            "loop_vs_vmap",
            "loop vs vmap over conv weights, 10 sampled networks, 128 images",
            {
                "loop": lambda: predict_logits(small, x128, strategy="loop"),
                "vmap": lambda: predict_logits(small, x128, strategy="vmap"),
            },
            args.rounds,
            ratios=[("vmap", "loop")],
        )
    )
    reps = 5
    nchw = [x[i : i + chunk] for i in range(0, len(x), chunk)]
    whole_fast = [torch.cat(xs)]  # the layout's copy of x, one batch

    def forwards(net, batches, grad=False):
        def run():
            with torch.set_grad_enabled(grad):
                return [torch.cat([net(b) for b in batches]).detach() for _ in range(reps)]

        return run

    rows.append(
        run_row(
            "forward_anatomy",
            f"{reps} forwards of the MAP net on {len(x)} images, by layout and chunks",
            {
                "plain": forwards(model, [x]),
                "grad": forwards(model, [x], grad=True),
                "nchw_chunks": forwards(model, nchw),
                "cl_batch": forwards(fast, whole_fast),
                "ours": forwards(fast, xs),
            },
            args.rounds,
            ratios=[("plain", "grad"), ("plain", "nchw_chunks"), ("plain", "ours")],
            labels={
                "plain": "NCHW, whole batch, no_grad (plain)",
                "grad": "NCHW, whole batch, autograd on (laplace-torch)",
                "nchw_chunks": f"NCHW, {chunk}-image chunks, no_grad",
                "cl_batch": f"{layout}, whole batch, no_grad",
                "ours": f"{layout}, {chunk}-image chunks, no_grad (ours)",
            },
        )
    )
    write_json(rows, args.json, head)


if __name__ == "__main__":
    main()
