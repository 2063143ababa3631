"""The user's own network: any nn.Module mapping images to logits that ends in an nn.Linear."""

from __future__ import annotations

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
