"""Feature-level perturbations (Hsu et al., ICLR 2024, dropout-based Rashomon set exploration):
every model is the trained network with a fixed multiplicative mask on each output channel of
every convolution and each output unit of every linear layer.

A mask m on a layer's output channel c scales what the layer computes for that channel, which
is the same as scaling that channel's weights and bias by m: W_c·x + b_c → m·(W_c·x + b_c). So a
perturbed model is a weight vector (θ* ⊙ m, m repeated over each channel's weights), stored in a
ModelSet like any all-weights sample, and every model is one fixed function. Noise reaches every
layer's output, not only the features before the head (as MC dropout's does).

Masks: Gaussian, m = 1 + s·z with z ~ N(0, 1) per channel (the deviation θ* ⊙ z is linear in the
scale s, so the ε-targeted, boundary and disagreement scales of `rashomon.sets.scaling` set s on
validation), or Bernoulli dropout of channels, m ∈ {0, 1/(1 − p)} (rate p set on validation by
bisection on the share of models within ε).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from rashomon.data.task import Task
from rashomon.errors import RashomonError
from rashomon.models.registry import Classifier
from rashomon.sets.base import ModelSet, task_description

MASKED_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
MAX_RATE = 0.9  # Bernoulli rates searched in (0, MAX_RATE]
RATE_STEPS = 16


@dataclass(frozen=True)
class MaskedLayer:
    """One layer whose outputs are masked: its weight (and bias) names and output width."""

    weight: str
    bias: str | None
    outputs: int


def masked_layers(model: nn.Module, include_head: bool = True) -> list[MaskedLayer]:
    """Every convolution and linear layer, in module order (the head last, when included)."""
    head = getattr(model, "head", None)
    out = []
    for name, mod in model.named_modules():
        if not isinstance(mod, MASKED_LAYERS) or (mod is head and not include_head):
            continue
        prefix = f"{name}." if name else ""
        bias = f"{prefix}bias" if getattr(mod, "bias", None) is not None else None
        out.append(MaskedLayer(f"{prefix}weight", bias, int(mod.weight.shape[0])))
    if not out:
        raise RashomonError(
            "the network has no convolution or linear layer to perturb; use another source"
        )
    return out


class ChannelPerturbation:
    """The posterior-like object the scaling functions work with: `mean` (θ* over the masked
    layers' parameters), `sample_deviations` (θ* ⊙ z per channel), `to_set`."""

    def __init__(self, model: Classifier, task: Task, include_head: bool = True):
        self.model = model
        self.task = task_description(task)
        self.layers = masked_layers(model, include_head)
        params = dict(model.named_parameters())
        names: list[str] = []
        channel: list[torch.Tensor] = []  # for each flat entry, its (layer, channel) index
        offset = 0
        for layer in self.layers:
            for pname in (layer.weight, layer.bias):
                if pname is None:
                    continue
                p = params[pname]
                per = p.numel() // layer.outputs
                names.append(pname)
                channel.append(torch.arange(layer.outputs).repeat_interleave(per) + offset)
            offset += layer.outputs
        order = [n for n, _ in model.named_parameters() if n in set(names)]
        position = {n: i for i, n in enumerate(names)}
        self.param_names = order
        self.channel_of = torch.cat([channel[position[n]] for n in order])
        self.channels = offset
        self.mean = torch.cat([params[n].detach().reshape(-1).float().cpu() for n in order])

    def masks(self, models: int, seed: int = 0) -> torch.Tensor:
        """z ~ N(0, 1), one per model and channel: [models, channels]."""
        gen = torch.Generator().manual_seed(int(seed))
        return torch.randn(models, self.channels, generator=gen)

    def sample_deviations(self, models: int, seed: int = 0) -> torch.Tensor:
        """v_m = θ* ⊙ z_m (z repeated over each channel's weights): θ* + s·v_m masks every
        channel by 1 + s·z."""
        z = self.masks(models, seed)
        return self.mean[None] * z[:, self.channel_of]

    def to_set(
        self, vectors: torch.Tensor, kind: str = "nn", source: str = "perturb", **meta: Any
    ) -> ModelSet:
        """Perturbation vectors [M, P] as a ModelSet on a copy of the network."""
        if kind != "nn":
            raise RashomonError("perturbed networks are sampled networks: use kind nn")
        base = copy.deepcopy(self.model).eval()
        return ModelSet.from_vectors(
            base, vectors, self.param_names, kind="nn", source=source, task=self.task, meta=meta
        )


def bernoulli_vectors(post: ChannelPerturbation, models: int, rate: float, seed: int):
    """θ* ⊙ m with m ∈ {0, 1/(1 − rate)} per channel (inverted dropout of whole channels)."""
    gen = torch.Generator().manual_seed(int(seed))
    keep = torch.rand(models, post.channels, generator=gen) >= rate
    m = keep.float() / (1.0 - rate)
    return post.mean[None] * m[:, post.channel_of]


def bernoulli_rate(
    post: ChannelPerturbation,
    task: Task,
    epsilon: float,
    *,
    target_share: float,
    search_models: int,
    seed: int,
    on: str = "loss",
    class_weight: Any = None,
    device: str | None = None,
    max_memory: str | int | None = None,
    reference: nn.Module | None = None,
) -> tuple[float, dict[str, Any]]:
    """The channel-dropout rate at which a share `target_share` of the models lies within ε of
    the audited model on validation (bisection; the share falls as the rate grows)."""
    from rashomon.models.predict import model_probs
    from rashomon.sets.rashomon import model_scores, threshold

    multilabel = task.kind == "multilabel"
    y = task.val.y.numpy()
    ref = model_probs(reference or post.model, task.val.x, multilabel, device or "cpu").numpy()
    bound = threshold(float(model_scores(ref[None], y, class_weight)[on][0]), epsilon, on, True)

    def share(rate: float) -> float:
        mset = post.to_set(bernoulli_vectors(post, search_models, rate, seed))
        probs = mset.predict(task.val.x, device=device, max_memory=max_memory).numpy()
        scores = model_scores(probs, y, class_weight)[on]
        inside = scores <= bound * (1 + 1e-9) if on == "loss" else scores >= bound * (1 - 1e-9)
        return float(np.mean(inside))

    lo, hi = 0.0, MAX_RATE
    if share(hi) >= target_share:
        lo = hi
    else:
        for _ in range(RATE_STEPS):
            mid = (lo + hi) / 2
            if share(mid) >= target_share:
                lo = mid
            else:
                hi = mid
    if lo == 0.0:
        raise RashomonError(
            f"dropping any share of channels puts fewer than {target_share:.0%} of the models "
            f"within ε = {epsilon:g}; use a larger epsilon or the gaussian mask"
        )
    return lo, {"rate": lo, "target_share": target_share, "share_within_epsilon": share(lo)}


def perturbation_set(
    model: Classifier,
    task: Task,
    models: int,
    *,
    mask: str = "gaussian",
    scale: str = "epsilon",
    sigma: float | None = None,
    rate: float | None = None,
    target_share: float = 0.5,
    search_models: int = 200,
    include_head: bool = True,
    epsilon: float | None = None,
    on: str = "loss",
    class_weight: Any = None,
    seed: int = 0,
    device: str | None = None,
    max_memory: str | int | None = None,
) -> ModelSet:
    """M perturbed copies of `model` with fixed channel masks, the mask's scale set on
    validation: `scale` epsilon (a share `target_share` within ε), boundary (each direction to
    the ε level set; Gaussian only), disagreement (pairwise disagreement = the model's
    validation error; Gaussian only), or fixed (`sigma`, or the Bernoulli `rate`)."""
    from rashomon.sets.scaling import boundary_scales, disagreement_scale, epsilon_scale

    if scale in ("epsilon", "boundary") and epsilon is None:
        raise RashomonError(f"scale {scale!r} needs the ε to scale the set to; pass epsilon")
    start = time.perf_counter()
    post = ChannelPerturbation(model, task, include_head)
    common = dict(on=on, device=device, max_memory=max_memory, class_weight=class_weight)
    if mask == "bernoulli":
        if scale == "fixed":
            if rate is None or not 0 < rate < 1:
                raise RashomonError(f"a fixed Bernoulli mask needs 0 < rate < 1, got {rate}")
            info: dict[str, Any] = {"rate": rate}
        elif scale == "epsilon":
            assert epsilon is not None  # refused above for scale epsilon
            rate, info = bernoulli_rate(
                post,
                task,
                epsilon,
                target_share=target_share,
                search_models=search_models,
                seed=seed + 1,
                **common,
            )
        else:
            raise RashomonError(
                f"scale {scale!r} needs a Gaussian mask; use mask=gaussian or scale=epsilon|fixed"
            )
        vectors = bernoulli_vectors(post, models, float(rate), seed)
    elif mask == "gaussian":
        dev = post.sample_deviations(models, seed)
        if scale == "fixed":
            if sigma is None or sigma <= 0:
                raise RashomonError(f"a fixed Gaussian mask needs sigma > 0, got {sigma}")
            s, info = float(sigma), {"scale": float(sigma)}
            vectors = post.mean[None] + s * dev
        elif scale == "epsilon":
            assert epsilon is not None  # refused above for scale epsilon
            s, info = epsilon_scale(
                post, dev[:search_models], task, epsilon, target_share=target_share, **common
            )
            vectors = post.mean[None] + s * dev
        elif scale == "boundary":
            assert epsilon is not None  # refused above for scale boundary
            t, info = boundary_scales(post, dev, task, epsilon, **common)
            vectors = post.mean[None] + t[:, None] * dev
        elif scale == "disagreement":
            s, info = disagreement_scale(
                post, dev[:search_models], task, device=device, max_memory=max_memory
            )
            vectors = post.mean[None] + s * dev
        else:
            raise RashomonError(
                f"unknown scale {scale!r}; use epsilon, boundary, disagreement or fixed"
            )
    else:
        raise RashomonError(f"unknown mask {mask!r}; use gaussian or bernoulli")
    meta: dict[str, Any] = {
        "mask": mask,
        "scale": scale,
        "scaling": info,
        "layers": len(post.layers),
        "channels": post.channels,
        "include_head": include_head,
        "seed": seed,
        "build_seconds": round(time.perf_counter() - start, 3),
    }
    return post.to_set(vectors, **meta)
