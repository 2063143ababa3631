"""Evaluate every model of a set on inputs, in chunks of models and inputs under a budget.

`ModelSet.predict` and `ModelSet.logits` call this module; it reads only what a set holds
(`SetWeights`: the base networks and the varied weights), so it sits below `ModelSet`.

Strategies (``strategy="auto"`` picks one from the set and the device):
- ``head``: only the last layer varies. The body runs once per input chunk; the M heads are one
  batched matrix product. Same result for kind nn and glm (the net is linear in its head).
- ``loop``: sampled networks, one plain forward per model (functional_call with the model's
  weights). Chosen on the CPU: DESIGN.md measured `vmap` over conv weights 3× slower than a loop
  of forwards on this 2-core CPU (benchmarks/bench_all_weights.py re-measures it).
- ``vmap``: sampled networks, `torch.func.vmap(functional_call)` over a chunk of models, one
  kernel launch for many models. Chosen on CUDA, where launches, not arithmetic, dominate.
- ``jacobian``: linearised networks. Per input chunk the per-sample Jacobian J [n, C, P] is
  materialised once (vmap of jacrev over samples) and applied to all M deviations as one matmul:
  cost C backward passes + n·C·P·M multiply-adds, against M forward-mode passes (each ≈ 2-3
  forwards) for a batched jvp. For convolutional nets a forward costs far more than C·P
  multiply-adds per image (weights are reused over positions), so J wins by a wide margin
  whenever one image's J fits in the budget.
- ``jvp``: linearised networks whose single-image Jacobian does not fit the budget: one batched
  `torch.func.jvp` with a chunk of deviation vectors as tangents.

CPU forwards (``loop`` and the body of ``head``) run in input chunks whose largest activation
stays under CPU_ACTIVATION_BYTES and, for nets that max-pool, in channels-last memory order. The
values are those of a plain forward up to float32 rounding (the convolutions sum in another
order). Measured per forward of 624 PneumoniaMNIST images through cnn-small, 1 thread (see
benchmarks/bench_all_weights.py): ATen's NCHW max-pool is a scalar loop that took half of the
forward while its channels-last kernel is vectorised over channels (user time 0.36 s → 0.16 s);
and one 624-image chunk makes 63 MB activations, which glibc returns to the kernel when freed
(above its mmap and trim thresholds) and the kernel zero-fills afresh on the next forward:
65,000 page faults and 0.19 s of system time per forward; 3,000 in 250-image chunks.

Computation is float32. Outputs are float32 on the CPU: float16 keeps ~3 significant digits, so
a probability of 0.9996 rounds to 1.0 and its complement's log (NLL, Rashomon capacity) breaks;
the arrays are small (1000 models × 624 images × 2 classes = 5 MB), so halving them buys nothing.
"""

from __future__ import annotations

import contextlib
from typing import cast

import torch
from torch.func import functional_call, jacrev, jvp, vmap

from rashomon.errors import RashomonError
from rashomon.memory import format_bytes, memory_budget
from rashomon.sets.weights import SetWeights

STRATEGIES = ("auto", "head", "loop", "vmap", "jacobian", "jvp")
FLOAT = 4  # bytes per float32
# Largest single activation of a CPU forward (250 images of cnn-small at 28 px). Small enough
# that glibc keeps most freed activations in its heap for the next forward instead of handing
# them back to the kernel, which faults them in again zero-filled (see the module docstring);
# large enough that two threads sharing a busy CPU meet at few barriers (125-image chunks ran
# 1.35× slower than 250 there, and equally fast on one thread).
CPU_ACTIVATION_BYTES = 24 * 2**20


def default_device(mset: SetWeights) -> torch.device:
    """The device the set's base network is on."""
    return next(mset.base.parameters()).device


def _activation_bytes(
    mset: SetWeights, x: torch.Tensor, device: torch.device, largest: bool = False
) -> int:
    """Bytes of activations one image produces in a forward pass: the sum of every module's
    output, or with `largest` the biggest single output. Measured once with hooks and cached on
    the set."""
    key = (tuple(x.shape[1:]), str(device))
    cache = mset.activation_bytes
    if key not in cache:
        total = biggest = 0

        def hook(_mod, _inp, out):
            nonlocal total, biggest
            if isinstance(out, torch.Tensor):
                total += out.numel()
                biggest = max(biggest, out.numel())

        handles = [m.register_forward_hook(hook) for m in mset.base.modules()]
        try:
            with torch.no_grad():
                mset.base(x[:1].to(device))
        finally:
            for h in handles:
                h.remove()
        cache[key] = max(total, 1) * FLOAT + int(x[:1].numel()) * FLOAT
        cache[(*key, "largest")] = max(biggest, 1) * FLOAT
    return cache[(*key, "largest")] if largest else cache[key]


def choose_strategy(mset: SetWeights, device: torch.device) -> str:
    """The prediction strategy for `mset` on `device`: head, jacobian, vmap or loop."""
    if mset.head_only:
        return "head"
    if mset.kind == "glm":
        return "jacobian"
    return "vmap" if device.type == "cuda" else "loop"


def predict_logits(
    mset: SetWeights,
    x: torch.Tensor,
    device: str | torch.device | None = None,
    max_memory: str | int | None = None,
    strategy: str = "auto",
) -> torch.Tensor:
    """Logits of every model of `mset` on `x`: float32 [M, N, C] on the CPU. A set of several
    modes is evaluated mode by mode (each mode's body runs once for its head-only models)."""
    if mset.num_modes > 1:
        out = None
        for idx, part in mset.mode_parts():
            logits = predict_logits(part, x, device, max_memory, strategy)
            if out is None:
                out = torch.empty(len(mset), *logits.shape[1:])
            out[idx] = logits
        assert out is not None
        return out
    if strategy not in STRATEGIES:
        raise RashomonError(f"unknown strategy {strategy!r}; choose one of {list(STRATEGIES)}")
    x = torch.as_tensor(x)
    spec = mset.spec
    if x.ndim < 2 or (x.ndim == 4 and x.shape[1] != spec["in_channels"]):
        raise RashomonError(
            f"inputs of shape {tuple(x.shape)} do not fit the set's model "
            f"({spec['in_channels']} channels, {spec['size']} px); check the task"
        )
    dev = torch.device(device) if device is not None else default_device(mset)
    budget = memory_budget(max_memory, dev)
    if strategy == "auto":
        strategy = choose_strategy(mset, dev)
    if strategy == "head" and not mset.head_only:
        raise RashomonError("strategy 'head' needs a set where only the head varies")
    if strategy in ("jacobian", "jvp") and mset.kind != "glm":
        raise RashomonError(f"strategy {strategy!r} is for linearised (glm) sets")
    if strategy in ("loop", "vmap") and mset.kind == "glm" and not mset.head_only:
        raise RashomonError(f"strategy {strategy!r} is for sampled-network (nn) sets")
    mset.base.to(dev).eval()
    x = x.float()
    if len(x) == 0:
        return torch.empty(len(mset), 0, spec["num_classes"])
    act = _activation_bytes(mset, x, dev)
    if strategy == "head":
        return _predict_head(mset, x, dev, budget, act)
    if strategy == "loop":
        return _predict_loop(mset, x, dev, budget, act)
    if strategy == "vmap":
        return _predict_vmap(mset, x, dev, budget, act)
    if strategy == "jacobian":
        per_image = spec["num_classes"] * mset.num_varied * FLOAT * 2
        if per_image + act * (spec["num_classes"] + 2) > budget:
            strategy = "jvp"  # one image's Jacobian alone exceeds the budget
        else:
            return _predict_glm_jacobian(mset, x, dev, budget, act)
    return _predict_glm_jvp(mset, x, dev, budget, act)


def predict_probs(
    mset: SetWeights,
    x: torch.Tensor,
    device: str | torch.device | None = None,
    max_memory: str | int | None = None,
    strategy: str = "auto",
) -> torch.Tensor:
    """Probabilities [M, N, C] (softmax) or [M, N, L] (sigmoid, multilabel), float32, CPU."""
    logits = predict_logits(mset, x, device, max_memory, strategy)
    return torch.sigmoid(logits) if mset.multilabel else torch.softmax(logits, dim=-1)


def _chunk(total: int, size: int):
    size = max(1, int(size))
    for i in range(0, total, size):
        yield slice(i, min(total, i + size))


def _too_small(budget: int, need: int, what: str) -> RashomonError:
    return RashomonError(
        f"memory budget {format_bytes(budget)} is below the {format_bytes(need)} that {what} "
        "needs; raise --max-memory"
    )


def _head_weights(mset: SetWeights) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Every model's head weight [M, C, D] and bias [M, C] (MAP values where not varied)."""
    parts = mset.unflatten(mset.samples)
    head = mset.base.head
    M = len(mset)
    w = parts.get("head.weight")
    if w is None:
        w = head.weight.detach().cpu()[None].expand(M, -1, -1)
    b = parts.get("head.bias")
    if b is None and head.bias is not None:
        b = head.bias.detach().cpu()[None].expand(M, -1)
    return w, b


@torch.no_grad()
def _predict_head(mset, x, dev, budget, act) -> torch.Tensor:
    w, b = _head_weights(mset)
    M, C, D = w.shape
    N = len(x)
    out = torch.empty(M, N, C)
    # Working set: the weights of a model chunk, its logits for an input chunk, the body's
    # activations for that input chunk.
    n_chunk = _forward_chunk(mset, x, budget, act, dev)
    per_model = C * D * FLOAT + n_chunk * C * FLOAT * 2
    m_chunk = max(1, min(M, (budget // 2) // per_model))
    layout = _fast_layout(dev, mset.base)
    for xs in _chunk(N, n_chunk):
        with _parameters_in(mset.base, layout):
            feats = mset.base.features(layout(x[xs].to(dev)))
        for ms in _chunk(M, m_chunk):
            wc = w[ms].to(dev)
            m = wc.shape[0]
            # One GEMM [n, D] x [D, m·C]; a broadcast batched matmul would copy the features
            # once per model.
            logits = (feats @ wc.reshape(m * C, D).T).reshape(-1, m, C)
            if b is not None:
                logits = logits + b[ms].to(dev)[None]
            out[ms, xs] = logits.transpose(0, 1).float().cpu()
    return out


def _input_chunk(n: int, budget: int, act: int) -> int:
    """Images per chunk when half the budget holds the body's activations (`act` per image)."""
    if act * 2 > budget:
        raise _too_small(budget, 2 * act, "one image's forward pass")
    return max(1, min(n, (budget // 2) // act))


def _forward_chunk(mset: SetWeights, x: torch.Tensor, budget: int, act: int, dev) -> int:
    """Images per plain forward: within the budget and, on the CPU, few enough that no single
    activation exceeds CPU_ACTIVATION_BYTES."""
    chunk = _input_chunk(len(x), budget, act)
    if dev.type != "cpu":
        return chunk
    largest = _activation_bytes(mset, x, dev, largest=True)
    return min(chunk, max(1, CPU_ACTIVATION_BYTES // largest))


def channels_last(t: torch.Tensor) -> torch.Tensor:
    """A 4-D tensor copied into channels-last memory order (same values); other tensors as they
    are. Built with explicit strides: for one channel (a grey image, a first conv's weight) NCHW
    and NHWC strides coincide, `contiguous(memory_format=...)` returns the tensor unchanged and
    ATen reads it as NCHW, so the first conv and max-pool would stay in the slow layout."""
    if t.ndim != 4:
        return t
    _, c, h, w = t.shape
    out = torch.empty_strided(t.shape, (c * h * w, 1, w * c, c), dtype=t.dtype, device=t.device)
    return out.copy_(t)


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


def _fast_layout(dev: torch.device, base: torch.nn.Module):
    """The layout CPU forwards of `base` run in: channels-last when it max-pools (ATen's NCHW
    max-pool is the slow kernel; without one, e.g. ResNet-18 at 28 px, channels-last measured no
    faster than NCHW), else as it is."""
    pools = any(isinstance(m, torch.nn.MaxPool2d) for m in base.modules())
    return channels_last if dev.type == "cpu" and pools else _identity


@contextlib.contextmanager
def _parameters_in(base: torch.nn.Module, layout):
    """`base`'s parameters temporarily stored in `layout` (same values; restored on exit)."""
    if layout is _identity:
        yield
        return
    saved = [(p, p.data) for p in base.parameters() if p.ndim == 4]
    try:
        for p, data in saved:
            p.data = layout(data)
        yield
    finally:
        for p, data in saved:
            p.data = data


def _model_state(
    mset: SetWeights, m: int | slice, dev, layout=_identity
) -> dict[str, torch.Tensor]:
    """Model m's varied parameters (and per-model buffers) by name, in `layout`: views of the
    samples for the identity layout, copies otherwise."""
    state = mset.unflatten(mset.samples[m].to(dev))
    if mset.buffer_names and mset.buffer_samples is not None:
        state.update(mset.unflatten_buffers(mset.buffer_samples[m].to(dev)))
    return {n: layout(v) for n, v in state.items()}


def _fixed_state(mset: SetWeights, dev, layout) -> dict[str, torch.Tensor]:
    """The base's parameters that no model varies, converted to `layout` once per call (empty
    for the identity layout: functional_call then uses the base's own tensors)."""
    if layout is _identity:
        return {}
    varied = set(mset.param_names)
    return {
        n: layout(p.detach().to(dev))
        for n, p in mset.base.named_parameters()
        if n not in varied and p.ndim == 4
    }


@torch.no_grad()
def _predict_loop(mset, x, dev, budget, act) -> torch.Tensor:
    N, M = len(x), len(mset)
    n_chunk = _forward_chunk(mset, x, budget, act, dev)
    layout = _fast_layout(dev, mset.base)
    fixed = _fixed_state(mset, dev, layout)
    # Inputs prepared once when they fit a quarter of the budget, else per model.
    keep = x.numel() * FLOAT <= budget // 4
    chunks = [(xs, layout(x[xs].to(dev)) if keep else None) for xs in _chunk(N, n_chunk)]
    out = None
    # Models outer: each model's state is built (and copied into the layout) once.
    for m in range(M):
        state = {**fixed, **_model_state(mset, m, dev, layout)}
        for xs, xc in chunks:
            xc = xc if xc is not None else layout(x[xs].to(dev))
            logits = functional_call(mset.base, state, (xc,))
            if out is None:
                out = torch.empty(M, N, logits.shape[-1])
            out[m, xs] = logits.float().cpu()
    assert out is not None  # x is not empty (predict_logits) and a set has a model
    return out


@torch.no_grad()
def _predict_vmap(mset, x, dev, budget, act) -> torch.Tensor:
    N, M = len(x), len(mset)
    n_chunk = _input_chunk(N, budget, act)
    per_model = mset.num_varied * FLOAT + n_chunk * act
    m_chunk = max(1, min(M, (budget // 2) // per_model))

    def one(state, xc):
        return functional_call(mset.base, state, (xc,))

    batched = vmap(one, in_dims=(0, None))
    out = None
    for xs in _chunk(N, n_chunk):
        xc = x[xs].to(dev)
        for ms in _chunk(M, m_chunk):
            logits = batched(_model_state(mset, ms, dev), xc)
            if out is None:
                out = torch.empty(M, N, logits.shape[-1])
            out[ms, xs] = logits.float().cpu()
    assert out is not None  # x is not empty (predict_logits) and a set has a model
    return out


def _map_params(mset: SetWeights, dev) -> dict[str, torch.Tensor]:
    params = dict(mset.base.named_parameters())
    return {n: params[n].detach().to(dev) for n in mset.param_names}


def _hooked_modules(base: torch.nn.Module, names: list[str]) -> dict[str, torch.nn.Module] | None:
    """{module name: module} when every varied parameter is the weight or bias of a Linear or a
    plain Conv2d (groups 1, zero padding); None otherwise (then vmap(jacrev) is used)."""
    wanted = set(names)
    found: dict[str, torch.nn.Module] = {}
    for mod_name, mod in base.named_modules():
        own = {f"{mod_name}.{p}" if mod_name else p for p, _ in mod.named_parameters(recurse=False)}
        if not own & wanted:
            continue
        plain_conv = (
            isinstance(mod, torch.nn.Conv2d)
            and mod.groups == 1
            and mod.padding_mode == "zeros"
            and not isinstance(mod.padding, str)
        )
        if not (isinstance(mod, torch.nn.Linear) or plain_conv):
            return None
        found[mod_name] = mod
    covered = set()
    for mod_name, mod in found.items():
        covered |= {f"{mod_name}.{p}" for p, _ in mod.named_parameters(recurse=False)}
    return found if wanted <= covered else None


def _patches(conv: torch.nn.Conv2d, a: torch.Tensor) -> torch.Tensor:
    """The conv's input patches [n, C_in·kh·kw, L] in `unfold` order, computed as a conv with
    one-hot kernels: same values, but F.unfold took ~1 s per call on this CPU (im2col)."""
    c, (kh, kw) = a.shape[1], conv.kernel_size
    eye = torch.eye(c * kh * kw, device=a.device, dtype=a.dtype).reshape(c * kh * kw, c, kh, kw)
    out = torch.nn.functional.conv2d(
        a, eye, stride=conv.stride, padding=conv.padding, dilation=conv.dilation
    )
    return out.reshape(a.shape[0], c * kh * kw, -1)


def per_sample_jacobian(base: torch.nn.Module, names: list[str], x: torch.Tensor) -> torch.Tensor:
    """J [n, C, P]: d f_c(x_i) / d θ over `names` (model order), one row per input.

    Linear and Conv2d layers: one forward, C backward passes of the whole batch, and the
    per-sample weight gradients rebuilt from each layer's input and output gradient (outer
    products; unfolded patches for convolutions), as BackPACK does. Any other layer: vmap of
    jacrev over the inputs (slower on CPU, where vmap over convolutions is slow).
    """
    modules = _hooked_modules(base, names)
    if modules is None:
        theta = {n: p.detach() for n, p in base.named_parameters() if n in set(names)}

        def single(params, x1):
            return functional_call(base, params, (x1[None],))[0]

        jac = vmap(jacrev(single), in_dims=(None, 0))(theta, x)
        return torch.cat([jac[n].reshape(len(x), jac[n].shape[1], -1) for n in names], dim=2)
    inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(_mod, inp, out):
            inputs[name] = inp[0].detach()
            outputs[name] = out

        return hook

    handles = [m.register_forward_hook(keep(n)) for n, m in modules.items()]
    try:
        with torch.enable_grad():
            logits = base(x)
            C = logits.shape[1]
            order = list(modules)
            sizes = dict(base.named_parameters())
            offsets, i = {}, 0
            for n in names:
                offsets[n] = slice(i, i + sizes[n].numel())
                i += sizes[n].numel()
            # Written in place: no per-class lists and no concatenated copy of J.
            J = torch.empty(len(x), C, i, device=x.device)
            patch_cache: dict[str, torch.Tensor] = {}
            for c in range(C):
                grads = torch.autograd.grad(
                    logits[:, c].sum(), [outputs[n] for n in order], retain_graph=c < C - 1
                )
                for mod_name, g in zip(order, grads, strict=True):
                    mod, a = modules[mod_name], inputs[mod_name]
                    if isinstance(mod, torch.nn.Linear):
                        gw = g[:, :, None] * a[:, None, :]
                        gb = g
                    else:
                        if mod_name not in patch_cache:
                            # _hooked_modules keeps Linear and plain Conv2d modules only
                            patch_cache[mod_name] = _patches(cast(torch.nn.Conv2d, mod), a)
                        patches = patch_cache[mod_name]
                        g = g.reshape(g.shape[0], g.shape[1], -1)
                        gw = torch.einsum("nol,nkl->nok", g, patches)
                        gb = g.sum(-1)
                    for p_name, value in (("weight", gw), ("bias", gb)):
                        full = f"{mod_name}.{p_name}"
                        if full in offsets:
                            J[:, c, offsets[full]] = value.reshape(len(x), -1)
    finally:
        for h in handles:
            h.remove()
    return J


def _predict_glm_jacobian(mset, x, dev, budget, act) -> torch.Tensor:
    N, M, P = len(x), len(mset), mset.num_varied
    C = mset.spec["num_classes"]
    per_image = C * P * FLOAT * 2 + act * (C + 2)
    n_chunk = max(1, min(N, (budget // 2) // per_image))
    theta = mset.theta_map.to(dev)
    m_chunk = max(1, min(M, (budget // 4) // max(1, (P + n_chunk * C) * FLOAT)))

    out = torch.empty(M, N, C)
    for xs in _chunk(N, n_chunk):
        xc = x[xs].to(dev)
        J = per_sample_jacobian(mset.base, mset.param_names, xc)
        with torch.no_grad():
            f0 = mset.base(xc)
            Jf = J.reshape(len(xc) * C, P)
            for ms in _chunk(M, m_chunk):
                delta = mset.samples[ms].to(dev) - theta[None]
                lin = (Jf @ delta.T).T.reshape(-1, len(xc), C)
                out[ms, xs] = (f0[None] + lin).float().cpu()
    return out


def _predict_glm_jvp(mset, x, dev, budget, act) -> torch.Tensor:
    N, M = len(x), len(mset)
    C = mset.spec["num_classes"]
    theta = _map_params(mset, dev)
    if act * 4 > budget:
        raise _too_small(budget, 4 * act, "one image's linearised forward pass")
    n_chunk = max(1, min(N, (budget // 4) // act))
    m_chunk = max(1, min(M, (budget // 2) // (n_chunk * act * 3 + mset.num_varied * FLOAT)))
    theta_flat = mset.theta_map.to(dev)

    out = torch.empty(M, N, C)
    for xs in _chunk(N, n_chunk):
        xc = x[xs].to(dev)

        def f(params, xc=xc):
            return functional_call(mset.base, params, (xc,))

        def lin(tangent, f=f):
            return jvp(f, (theta,), (tangent,))[1]

        with torch.no_grad():
            f0 = mset.base(xc)
        for ms in _chunk(M, m_chunk):
            tangents = mset.unflatten(mset.samples[ms].to(dev) - theta_flat[None])
            jd = vmap(lin)(tangents)
            out[ms, xs] = (f0[None] + jd).detach().float().cpu()
    return out
