"""Modes of a mixture of Laplace approximations (Eschenhagen et al., NeurIPS 2021): the MAP model
and networks retrained from other seeds that are themselves within ε of it on validation.

The retrained networks come from the same checkpoint cache as the `retrain` source (trained
once, reused by both); a seed whose network is outside the Rashomon set would contribute no
model to it, so it is skipped, trying at most `max_seeds` seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from rashomon.errors import RashomonError


def within_epsilon(
    net: nn.Module,
    reference: nn.Module,
    task: Any,
    epsilon: float,
    *,
    on: str = "loss",
    class_weight: Sequence[float] | None = None,
    device: str = "cpu",
) -> bool:
    """Whether `net`'s validation loss (or accuracy) is within ε of `reference`'s, with the
    Rashomon filter's arithmetic (`rashomon.sets.rashomon`)."""
    from rashomon.models.predict import model_probs
    from rashomon.sets.rashomon import model_scores, threshold

    multilabel = task.kind == "multilabel"
    y = task.val.y.numpy()
    ref = model_scores(
        model_probs(reference, task.val.x, multilabel, device).numpy()[None], y, class_weight
    )
    own = model_scores(
        model_probs(net, task.val.x, multilabel, device).numpy()[None], y, class_weight
    )
    bound = threshold(float(ref[on][0]), epsilon, on, relative=True)
    value = float(own[on][0])
    return value <= bound if on == "loss" else value >= bound


def retrained_modes(
    model: nn.Module,
    task: Any,
    modes: int,
    epsilon: float,
    *,
    seed: int = 0,
    max_seeds: int | None = None,
    train: Mapping[str, Any] | None = None,
    on: str = "loss",
    class_weight: Sequence[float] | None = None,
    cache_dir: str | None = None,
    device: str = "cpu",
    progress: bool = False,
) -> tuple[list[nn.Module], list[int], list[int]]:
    """The `modes` networks of the mixture: `model` (seed `seed`) and the first networks
    retrained with seeds seed + 1, … that are within ε of it (`within_epsilon`), trained like
    `train` ({"arch", "epochs", "fit_options"}: the MAP model's training). Returns the
    networks, their seeds and every seed tried; too few within ε after `max_seeds` tries
    (default 3·(modes − 1)) is an error."""
    from rashomon.sets.retrain import trained_networks

    tries = max_seeds or 3 * (modes - 1)
    train = dict(train or {})
    nets, seeds, tried = [model], [seed], []
    for s in range(seed + 1, seed + 1 + tries):
        (net,), _ = trained_networks(
            task,
            [s],
            train.get("arch", "cnn-small"),
            train.get("epochs"),
            cache_dir=cache_dir,
            device=device,
            progress=progress,
            **train.get("fit_options", {}),
        )
        tried.append(s)
        if within_epsilon(
            net, model, task, epsilon, on=on, class_weight=class_weight, device=device
        ):
            nets.append(net)
            seeds.append(s)
        if len(nets) == modes:
            break
    if len(nets) < modes:
        raise RashomonError(
            f"only {len(nets) - 1} of {len(tried)} retrained seeds are within ε = {epsilon:g} of "
            f"the MAP model on validation, fewer than the {modes - 1} modes asked for; use fewer "
            "modes, a larger epsilon, or more seeds (-o max_seeds=N)"
        )
    return nets, seeds, tried


def models_per_mode(models: int, modes: int) -> list[int]:
    """`models` split as evenly as possible over `modes` modes (the first ones get the rest)."""
    return [models // modes + (i < models % modes) for i in range(modes)]
