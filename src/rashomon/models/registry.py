"""Registry of architectures. Every model is a `Classifier`: `features(x)` gives the penultimate
activations and `head` is its last `nn.Linear`, the layer a last-layer Laplace varies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from rashomon.errors import RashomonError

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
HEAD_NAME = "head"


class Classifier(nn.Module):
    """`forward(x) = head(features(x))`; `spec` rebuilds the same architecture."""

    head: nn.Linear
    spec: dict[str, Any]
    # set by training (rashomon.models.train.train) and read back from checkpoints
    train_config: dict[str, Any]
    task_name: str

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations [N, D], the head's input (each architecture defines them)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [N, C]: the head applied to the features."""
        return self.head(self.features(x))


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise RashomonError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class ConvNet(Classifier):
    """Three conv blocks without normalisation layers (laplace-torch's all-weights Kronecker
    Laplace refuses BatchNorm), a hidden linear layer and the head. Width scales every layer."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        width: float = 1.0,
        activation: str = "relu",
        dropout: float = 0.0,
    ):
        super().__init__()
        c1, c2, c3, hidden = (max(1, round(c * width)) for c in (32, 64, 64, 128))
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1),
            _activation(activation),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1),
            _activation(activation),
            nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 3, padding=1),
            _activation(activation),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * c3, hidden),
            _activation(activation),
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations: the conv body's output, after dropout."""
        return self.dropout(self.body(x))


class MLP(Classifier):
    """A multilayer perceptron on flattened images: hidden linear layers, dropout and the head."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        size: int = 28,
        hidden: tuple[int, ...] = (256, 128),
        activation: str = "relu",
        dropout: float = 0.0,
    ):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_channels * size * size
        for h in hidden:
            layers += [nn.Linear(width, h), _activation(activation)]
            width = h
        self.body = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations: the hidden layers' output, after dropout."""
        return self.dropout(self.body(x))


class ResNet18(Classifier):
    """torchvision's ResNet-18 with a 3×3 stride-1 stem and no max-pool, as MedMNIST v2 adapts it
    to 28 px inputs (64 px keeps the max-pool)."""

    def __init__(self, in_channels: int, num_classes: int, size: int = 28, dropout: float = 0.0):
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None, num_classes=num_classes)
        net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        if size <= 28:
            net.maxpool = nn.Identity()
        net.fc = nn.Identity()
        self.body = net
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(512, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations: the pooled ResNet features, after dropout."""
        return self.dropout(self.body(x))


def _cnn(in_channels, num_classes, size, width=1.0, activation="relu", dropout=0.0):
    return ConvNet(in_channels, num_classes, width=width, activation=activation, dropout=dropout)


def _cnn_small(in_channels, num_classes, size, activation="relu", dropout=0.0):
    return ConvNet(in_channels, num_classes, width=1.0, activation=activation, dropout=dropout)


def _resnet18(in_channels, num_classes, size, dropout=0.0):
    return ResNet18(in_channels, num_classes, size=size, dropout=dropout)


def _mlp(in_channels, num_classes, size, hidden=(256, 128), activation="relu", dropout=0.0):
    return MLP(
        in_channels, num_classes, size, tuple(hidden), activation=activation, dropout=dropout
    )


ARCHITECTURES: dict[str, Callable[..., Classifier]] = {
    "cnn-small": _cnn_small,
    "cnn": _cnn,
    "resnet18": _resnet18,
    "mlp": _mlp,
}


def architecture_names() -> list[str]:
    """The registry's architecture names, sorted."""
    return sorted(ARCHITECTURES)


def build_model(
    arch: str, in_channels: int, num_classes: int, size: int = 28, **options: Any
) -> Classifier:
    """Build an architecture by name; `options` are its keyword arguments (width, activation,
    dropout, ...). The returned model carries `spec`, enough to rebuild it."""
    if arch not in ARCHITECTURES:
        raise RashomonError(
            f"unknown architecture {arch!r}; choose one of: {', '.join(architecture_names())}"
        )
    try:
        model = ARCHITECTURES[arch](in_channels, num_classes, size, **options)
    except TypeError as exc:
        raise RashomonError(f"bad option for architecture {arch!r}: {exc}") from exc
    model.spec = {
        "arch": arch,
        "in_channels": in_channels,
        "num_classes": num_classes,
        "size": size,
        "options": dict(options),
    }
    return model


def build_from_spec(spec: dict[str, Any]) -> Classifier:
    """A freshly initialised registry network of the architecture a saved spec describes."""
    return build_model(
        spec["arch"], spec["in_channels"], spec["num_classes"], spec["size"], **spec["options"]
    )


def count_parameters(model: nn.Module) -> int:
    """The number of parameters of `model`."""
    return sum(p.numel() for p in model.parameters())
