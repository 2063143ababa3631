"""Batched evaluation of a ModelSet equals plain per-model forward passes."""

from __future__ import annotations

import pytest
import torch

from rashomon.errors import RashomonError
from rashomon.memory import parse_bytes
from rashomon.models.registry import build_model
from rashomon.predict import predict_logits
from rashomon.sets.base import ModelSet, flat_parameters


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return build_model("cnn", 1, 3, width=0.25).eval()


@pytest.fixture(scope="module")
def x():
    return torch.randn(37, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def _set(net, names, m=4, scale=0.05, kind="nn"):
    theta = flat_parameters(net, names)
    gen = torch.Generator().manual_seed(2)
    return ModelSet(
        net, theta + scale * torch.randn(m, len(theta), generator=gen), names, kind=kind
    )


def _reference_loop(mset, x):
    """load_state_dict + forward, one model at a time."""
    out = []
    for m in range(len(mset)):
        state = {k: v.clone() for k, v in mset.base.state_dict().items()}
        state.update({k: v.clone() for k, v in mset.unflatten(mset.samples[m]).items()})
        net = build_model("cnn", 1, 3, width=0.25)
        net.load_state_dict(state)
        with torch.no_grad():
            out.append(net.eval()(x))
    return torch.stack(out)


HEAD = ["head.weight", "head.bias"]


@pytest.mark.parametrize("subset", ["head", "all", "middle"])
@pytest.mark.parametrize("strategy", ["auto", "loop", "vmap"])
def test_batched_equals_loop_of_forwards(net, x, subset, strategy):
    names = {
        "head": HEAD,
        "all": [n for n, _ in net.named_parameters()],
        "middle": ["body.3.weight", "head.bias"],
    }[subset]
    mset = _set(net, names)
    if strategy != "auto" and mset.head_only:
        strategy = "head"
    ref = _reference_loop(mset, x)
    # A tiny budget forces several input and model chunks.
    for budget in (None, "3MB"):
        got = predict_logits(mset, x, strategy=strategy, max_memory=budget)
        assert got.dtype == torch.float32 and got.shape == (4, 37, 3)
        assert (got - ref).abs().max().item() < 1e-5


def test_probabilities_softmax_and_sigmoid(net, x):
    mset = _set(net, HEAD)
    logits = mset.logits(x)
    p = mset.predict(x)
    torch.testing.assert_close(p, torch.softmax(logits, -1))
    assert torch.allclose(p.sum(-1), torch.ones(4, 37))
    ml = ModelSet(
        net, mset.samples, HEAD, task={"name": "t", "kind": "multilabel", "num_classes": 3}
    )
    torch.testing.assert_close(ml.predict(x), torch.sigmoid(logits))


def _explicit_glm(mset, x):
    """f(x; θ*) + J(x)(θ_m − θ*) with J from torch.autograd.functional.jacobian."""
    base = mset.base
    theta = mset.theta_map.clone()
    others = dict(base.named_parameters())

    def f(vec):
        params = {k: v.detach() for k, v in others.items()}
        params.update(mset.unflatten(vec))
        return torch.func.functional_call(base, params, (x,))

    J = torch.autograd.functional.jacobian(f, theta)  # [N, C, P]
    with torch.no_grad():
        f0 = base(x)
    return f0[None] + torch.einsum("ncp,mp->mnc", J, mset.samples - theta[None])


@pytest.mark.parametrize("strategy", ["jacobian", "jvp"])
def test_glm_equals_explicit_linearisation(net, x, strategy):
    names = ["body.3.weight", "body.3.bias", "head.weight"]
    mset = _set(net, names, m=3, scale=0.2, kind="glm")
    xs = x[:9]
    ref = _explicit_glm(mset, xs)
    got = predict_logits(mset, xs, strategy=strategy, max_memory="20MB")
    assert (got - ref).abs().max().item() < 1e-4
    # A glm set differs from the sampled networks away from θ* (the body is nonlinear).
    nn = predict_logits(ModelSet(net, mset.samples, names, kind="nn"), xs)
    assert (nn - got).abs().max().item() > 1e-3


def test_glm_head_only_equals_nn(net, x):
    nn = _set(net, HEAD, kind="nn")
    glm = ModelSet(net, nn.samples, HEAD, kind="glm")
    torch.testing.assert_close(glm.logits(x), nn.logits(x))


def test_bad_inputs(net, x):
    mset = _set(net, HEAD)
    with pytest.raises(RashomonError, match="channels"):
        mset.predict(torch.randn(2, 3, 28, 28))
    with pytest.raises(RashomonError, match="strategy"):
        predict_logits(mset, x, strategy="fast")
    with pytest.raises(RashomonError, match="max-memory"):
        predict_logits(_set(net, ["body.0.weight"]), x, max_memory="1KB")
    with pytest.raises(RashomonError, match="4GB"):
        parse_bytes("lots")


def test_parse_bytes():
    assert parse_bytes("4GB") == 4_000_000_000
    assert parse_bytes("512MiB") == 512 * 2**20
    assert parse_bytes("1.5 kb") == 1500
    assert parse_bytes(2e6) == 2_000_000


@pytest.mark.parametrize("with_norm", [False, True])
def test_per_sample_jacobian_hooks_and_fallback(with_norm):
    """Hooked Linear/Conv2d Jacobians, and the vmap(jacrev) fallback for other layers, equal
    autograd's Jacobian."""
    from rashomon.predict import per_sample_jacobian

    torch.manual_seed(0)
    layers = [torch.nn.Conv2d(1, 3, 3, padding=1, stride=2)]
    layers += [torch.nn.BatchNorm2d(3)] if with_norm else []
    layers += [torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 2)]
    net = torch.nn.Sequential(*layers).eval()
    if with_norm:
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].weight.data.uniform_(0.5, 1.5)
    names = [n for n, _ in net.named_parameters()]
    x = torch.randn(5, 1, 8, 8)
    theta = torch.cat([p.detach().flatten() for p in net.parameters()])

    def f(vec):
        params, i = {}, 0
        for n, p in net.named_parameters():
            params[n] = vec[i : i + p.numel()].reshape(p.shape)
            i += p.numel()
        return torch.func.functional_call(net, params, (x,))

    ref = torch.autograd.functional.jacobian(f, theta)
    got = per_sample_jacobian(net, names, x)
    assert (got - ref).abs().max() < 1e-5


def test_channels_last_keeps_values_and_sets_strides():
    from rashomon.predict import channels_last

    w = torch.randn(5, 1, 3, 3)  # one input channel: NCHW and NHWC strides are ambiguous
    got = channels_last(w)
    assert torch.equal(got, w)
    assert got.stride() == (9, 1, 3, 1)
    # ATen picks the conv's output layout from the weight's strides: NCHW for contiguous(), NHWC
    # for ours.
    img = torch.randn(2, 1, 6, 6)
    plain = w.contiguous(memory_format=torch.channels_last)
    assert torch.nn.functional.conv2d(img, plain).stride()[1] != 1
    assert torch.nn.functional.conv2d(img, got).stride()[1] == 1
    x = torch.randn(2, 3, 4, 5)
    assert channels_last(x).stride() == (60, 1, 15, 3) and torch.equal(channels_last(x), x)
    v = torch.randn(7)
    assert channels_last(v) is v


def _conv_outputs(net):
    """Hooks recording the strides of every Conv2d output of `net`."""
    seen = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: seen.append(out.stride()))
        for m in net.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    return seen, hooks


@pytest.mark.parametrize("subset", ["all", "middle", "head"])
def test_cpu_forwards_run_channels_last_in_capped_chunks(net, x, subset, monkeypatch):
    """The loop and head strategies run every conv in channels-last order (the first conv too,
    whose input has one channel), in input chunks capped by CPU_ACTIVATION_BYTES, with the values
    of plain forwards, and leave the base's parameters as they were."""
    import rashomon.sets.predict as rp

    names = {
        "all": [n for n, _ in net.named_parameters()],
        "middle": ["body.3.weight", "head.bias"],
        "head": HEAD,
    }[subset]
    mset = _set(net, names, m=3)
    ref = _reference_loop(mset, x)
    before = {n: (p.data_ptr(), p.stride()) for n, p in mset.base.named_parameters()}
    largest = rp._activation_bytes(mset, x, torch.device("cpu"), largest=True)
    monkeypatch.setattr(rp, "CPU_ACTIVATION_BYTES", largest * 10)  # 10 images per forward
    seen, hooks = _conv_outputs(mset.base)
    try:
        got = predict_logits(mset, x)
    finally:
        for h in hooks:
            h.remove()
    assert (got - ref).abs().max().item() < 1e-5
    n_convs = sum(isinstance(m, torch.nn.Conv2d) for m in mset.base.modules())
    forwards = 1 if subset == "head" else 3  # the body runs once for head-only sets
    assert len(seen) == n_convs * forwards * 4  # 37 images in chunks of 10
    assert all(s[1] == 1 for s in seen)  # channel stride 1: NHWC
    for n, p in mset.base.named_parameters():
        assert (p.data_ptr(), p.stride()) == before[n]
