"""Feature-level perturbations: a perturbed model is the network with its conv/linear outputs
masked per channel, a fixed function, and its scale hits its target on validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import rashomon as rs
from rashomon.predict import model_probs
from rashomon.sets.perturb import ChannelPerturbation, masked_layers, perturbation_set
from rashomon.sets.rashomon import model_scores


@pytest.fixture(scope="module")
def net(tiny_task):
    return rs.train(
        tiny_task, "cnn", epochs=2, seed=0, arch_options={"width": 0.25}, progress=False
    )


def test_a_perturbed_model_is_the_network_with_masked_outputs(net, tiny_task):
    post = ChannelPerturbation(net, tiny_task)
    z = post.masks(3, seed=7)
    s = 0.3
    mset = post.to_set(post.mean[None] + s * post.sample_deviations(3, seed=7))
    x = tiny_task.test.x[:16]
    ours = mset.logits(x)
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == len(masked_layers(net)) == len(post.layers)
    for k in range(3):
        hooks, offset = [], 0
        for mod in layers:
            width = mod.weight.shape[0]
            mask = 1 + s * z[k, offset : offset + width]
            offset += width
            shape = (1, -1, 1, 1) if isinstance(mod, nn.Conv2d) else (1, -1)
            hooks.append(
                mod.register_forward_hook(lambda _m, _i, out, g=mask, sh=shape: out * g.view(sh))
            )
        with torch.no_grad():
            expected = net(x)
        for h in hooks:
            h.remove()
        torch.testing.assert_close(ours[k], expected, rtol=1e-4, atol=1e-5)
    # one fixed function per model: the same predictions on every call
    assert torch.equal(mset.predict(x), mset.predict(x))


def test_epsilon_scale_hits_its_share_on_validation(net, tiny_task):
    mset = perturbation_set(net, tiny_task, 80, epsilon=0.05, target_share=0.5, search_models=80)
    y = tiny_task.val.y.numpy()
    loss = model_scores(mset.predict(tiny_task.val.x).numpy(), y)["loss"]
    ref = model_scores(model_probs(net, tiny_task.val.x).numpy()[None], y)["loss"][0]
    share = float((loss <= ref * 1.05 + 1e-9).mean())
    assert abs(share - 0.5) <= 0.05  # the search models are the set: the bisection hits it
    assert mset.source == "perturb" and mset.meta["scaling"]["scale"] > 0


def test_bernoulli_channel_dropout(net, tiny_task):
    mset = perturbation_set(
        net, tiny_task, 40, mask="bernoulli", scale="fixed", rate=0.2, include_head=False
    )
    base = dict(net.named_parameters())
    w = mset.samples[:, : base[mset.param_names[0]].numel()].reshape(
        40, -1, *base[mset.param_names[0]].shape[1:]
    )
    # each channel of the first conv is dropped (all zero) or scaled by 1 / 0.8
    ratio = w / base[mset.param_names[0]].detach()[None]
    per_channel = ratio.flatten(2)
    assert torch.allclose(per_channel.amin(2), per_channel.amax(2), atol=1e-5)
    values = set(np.round(per_channel[..., 0].flatten().numpy(), 4))
    assert values <= {0.0, 1.25}
    assert "head.weight" not in mset.param_names
