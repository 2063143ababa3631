"""The user's own network: any nn.Module mapping images to logits that ends in an nn.Linear."""

from __future__ import annotations

import re

import pytest
import torch
import torchvision
from torch import nn

import rashomon as rs
from rashomon.errors import RashomonError
from rashomon.models.external import as_classifier, last_linear_name
from rashomon.models.train import load_checkpoint, save_checkpoint
from rashomon.sets.base import ModelSet


def small_net(classes: int = 2) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(24, 16),
        nn.Tanh(),
        nn.Linear(16, classes),
    )


def test_split_at_the_final_linear_reproduces_the_network(tiny_task):
    net = small_net().eval()
    x = tiny_task.val.x[:8]
    model = as_classifier(net, probe=x)
    assert last_linear_name(net) == "6" and model.spec["last_layer"] == "6"
    torch.testing.assert_close(model(x), net(x), rtol=0, atol=1e-6)
    torch.testing.assert_close(model.head(model.features(x)), net(x), rtol=0, atol=1e-6)
    # the user's network is not changed, and unwrap gives its own parameter names back
    assert isinstance(net[6], nn.Linear)
    assert model.unwrap().state_dict().keys() == net.state_dict().keys()


def test_a_network_whose_linear_is_not_last_is_refused(tiny_task):
    with pytest.raises(RashomonError, match="not its layer '0.6' applied last"):
        as_classifier(nn.Sequential(small_net(), nn.Softmax(-1)), probe=tiny_task.val.x[:4])
    with pytest.raises(RashomonError, match="no nn.Linear layer"):
        as_classifier(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten()), probe=tiny_task.val.x[:4])


def test_laplace_on_a_plain_sequential_all_weights_and_last_layer(tiny_task, tmp_path):
    net = small_net()
    x = tiny_task.test.x
    post = rs.laplace(net, tiny_task, subset="all", hessian="kron", prior=1.0)
    mset = post.sample(4, seed=0)
    assert mset.num_varied == sum(p.numel() for p in net.parameters())
    # sampled network m is the user's network with sample m's weights
    m2 = mset.model(2)
    torch.testing.assert_close(mset.predict(x)[2], m2(x).softmax(-1), rtol=0, atol=1e-5)
    ll = rs.laplace(net, tiny_task, subset="last_layer", prior=1.0).sample(6, seed=0)
    assert ll.head_only and ll.num_varied == 16 * 2 + 2
    ll.save(tmp_path / "set.pt")
    again = ModelSet.load(tmp_path / "set.pt", task=tiny_task)
    torch.testing.assert_close(again.predict(x), ll.predict(x), rtol=0, atol=0)


def test_torchvision_resnet_last_layer_and_checkpoint(tiny_task, tmp_path):
    net = torchvision.models.resnet18(num_classes=2)
    net.conv1 = nn.Conv2d(1, 64, 3, 1, 1, bias=False)
    net.eval()
    model = as_classifier(net, probe=tiny_task.val.x[:2])
    assert model.spec["last_layer"] == "fc" and model.spec["in_channels"] == 1
    save_checkpoint(model, tmp_path / "model.pt", tiny_task)
    back, meta = load_checkpoint(tmp_path / "model.pt")
    x = tiny_task.test.x[:6]
    torch.testing.assert_close(back(x), net(x), rtol=0, atol=1e-5)
    mset = rs.laplace(back, tiny_task, prior=1.0).sample(3, seed=1)
    assert mset.predict(x).shape == (3, 6, 2)


BUILDERS = '''
import torch
from torch import nn


def build(num_classes=2, in_channels=1):
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(24, 16), nn.Tanh(), nn.Linear(16, num_classes),
    )


def boom(num_classes=2):
    raise ValueError("boom")


class Late(nn.Module):
    """Its last registered nn.Linear (proj) is not the one that gives the logits (out)."""

    def __init__(self, num_classes=2):
        super().__init__()
        self.out = nn.Linear(16, num_classes)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.proj = nn.Linear(16, 16)

    def forward(self, x):
        return self.out(torch.relu(self.proj(self.pool(self.conv(x)).flatten(1))))


def late(num_classes=2):
    return Late(num_classes)
'''


@pytest.fixture
def builders(tmp_path, monkeypatch):
    (tmp_path / "user_builders.py").write_text(BUILDERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "user_builders"
    import sys

    sys.modules.pop("user_builders", None)


def test_user_model_errors_name_the_fix(builders, tiny_task, tmp_path):
    # main: multi-line torch text for weights of another shape, "ValueError: boom" from a
    # builder, AttributeError for --last-layer nosuch, "mat1 and mat2 shapes cannot be
    # multiplied" for a network whose last registered nn.Linear is not the output (exit 1)
    from rashomon.errors import one_line
    from rashomon.models.external import build_network

    probe = tiny_task.val.x[:2]

    def build(arch, **kw):
        return build_network(f"{builders}:{arch}", 1, 2, 28, probe=probe, **kw)

    import user_builders

    torch.save(user_builders.build(num_classes=3).state_dict(), tmp_path / "three.pt")
    cases = [
        (
            dict(arch="build", weights=str(tmp_path / "three.pt")),
            r"three.pt do not fit the network: 6.weight has shape \(3, 16\) there but \(2, 16\) "
            r"in the network \(2 such\); check that --model builds the architecture",
        ),
        (dict(arch="boom"), r"user_builders:boom raised ValueError: boom; fix the builder"),
        (
            dict(arch="build", last_layer="nosuch"),
            r"the network has no layer 'nosuch'; name its final nn.Linear with --last-layer "
            r"\(its nn.Linear layers: 4, 6\)",
        ),
        (
            dict(arch="late"),
            r"splitting the network at 'proj' \(its last registered nn.Linear\) breaks its "
            r"forward .*; name the nn.Linear that gives the logits with --last-layer "
            r"\(its nn.Linear layers: out, proj\)",
        ),
        (
            dict(arch="build", last_layer="4"),
            r"splitting the network at '4' \(--last-layer\) breaks its forward",
        ),
    ]
    for kwargs, pattern in cases:
        with pytest.raises(RashomonError) as info:
            build(**kwargs)
        assert one_line(info.value) == str(info.value)  # already one line
        assert re.search(pattern, str(info.value)), str(info.value)
    # named, the right layer works
    model = build("late", last_layer="out")
    torch.testing.assert_close(model(probe), model.unwrap()(probe))
