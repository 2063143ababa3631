"""Forks from training: go on from a saved state of the MAP model's training run with another
data order and dropout draws (optionally a small weight perturbation or a fresh learning-rate
schedule), and finish its budget under the same checkpoint rule.

A fork spawned at share s of the budget shares the MAP model's first s·T optimizer steps and
differs in the rest: s = 0 varies the data order only (the initialisation is the MAP model's),
s → 1 is cheap fine-tuning. Frankle et al. (ICML 2020, linear mode connectivity and the
instability to SGD noise) spawn networks this way to ask how late in training the final
network is still decided; here the question is how late one can fork and still see the
multiplicity of retraining (`rashomon.sets.sources.fork`).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from rashomon.data.task import Task
from rashomon.errors import RashomonError
from rashomon.models.registry import Classifier
from rashomon.models.train import (
    TrainingState,
    TrainOptions,
    fit,
    plan_budget,
    training_objective,
)


def recipe_options(recipe: Mapping[str, Any]) -> TrainOptions:
    """The training options in a recipe (a model's `train_config`, which also records what was
    planned and chosen): the fields of `TrainOptions` it holds."""
    names = {f.name for f in dataclasses.fields(TrainOptions)}
    return TrainOptions.of({k: v for k, v in recipe.items() if k in names})


def fork_seed(seed: int) -> int:
    """The random stream of fork `seed`: distinct from retrained seed `seed`'s own, so that a
    fork's data order is not a shifted copy of a retrained network's."""
    return int(np.random.SeedSequence([int(seed), 0xF0]).generate_state(1)[0])


def nearest_state(states: Sequence[TrainingState], spawn: float) -> TrainingState:
    """The saved state for share `spawn` of the budget: the one kept for that share
    (`train.snapshots`), else the latest one at or before it."""
    if not states:
        raise RashomonError(
            "the training run saved no states to fork from; re-run `rashomon train` (it keeps "
            "the states at train.snapshots) or use --source retrain"
        )
    kept = [s for s in states if abs(s.requested - spawn) < 1e-9]
    if kept:
        return kept[0]
    before = [s for s in states if s.fraction <= spawn + 1e-9]
    if not before:
        shares = ", ".join(f"{s.fraction:g}" for s in states)
        raise RashomonError(f"no training state at or before spawn {spawn:g}; saved: {shares}")
    return max(before, key=lambda s: (s.fraction, s.step))


def perturbed(state: dict[str, torch.Tensor], scale: float, seed: int) -> dict[str, torch.Tensor]:
    """Each floating-point tensor plus `scale` × its own standard deviation × N(0, 1) noise."""
    if scale == 0:
        return state
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in state.items():
        if v.is_floating_point() and v.numel() > 1:
            noise = torch.randn(v.shape, generator=gen, dtype=v.dtype)
            out[k] = v + scale * v.std() * noise
        else:
            out[k] = v.clone()
    return out


def fork(
    task: Task,
    base: Classifier,
    state: TrainingState,
    seed: int | None,
    *,
    recipe: dict[str, Any] | None = None,
    perturb: float = 0.0,
    lr_restart: bool = False,
    device: str = "cpu",
    progress: bool = False,
) -> Classifier:
    """The network trained from `state` (saved by `train(..., snapshots=...)`) to the end of the
    budget with `recipe` (default: `base.train_config`, the MAP model's own options).

    `seed` None keeps the saved random streams (the fork then ends at the MAP model's weights,
    the test that resuming is exact); an integer draws another data order and dropout masks
    from `fork_seed(seed)`. `perturb` adds a relative Gaussian perturbation to the weights at
    the spawn point; `lr_restart` runs a fresh cosine schedule over the remaining steps."""
    recipe = dict(recipe if recipe is not None else getattr(base, "train_config", {}))
    missing = [k for k in ("lr", "weight_decay") if k not in recipe]
    if missing:
        raise RashomonError(
            f"the model's training options lack {missing}; a fork finishes the MAP model's own "
            "training, which this model did not record (was it trained by rashomon?)"
        )
    options = recipe_options(recipe)
    budget = plan_budget(len(task.train), options.batch_size, options.steps, recipe.get("epochs"))
    model = copy.deepcopy(base).to(device)
    batch_loss, weight = training_objective(
        task, options.class_weights, options.group_balanced, device
    )
    start = state
    if perturb:
        start = dataclasses.replace(
            state, model=perturbed(state.model, perturb, fork_seed(seed or 0) + 1)
        )
    chosen = fit(
        model,
        task,
        batch_loss,
        budget,
        options,
        seed=int(recipe.get("seed", 0)),
        device=device,
        progress=progress,
        desc=f"fork {seed} from {state.fraction:g}",
        class_weight=weight,
        resume=start,
        reseed=None if seed is None else fork_seed(seed),
        lr_restart=lr_restart,
    )
    model.train_config = {
        **recipe,
        **chosen,
        "fork": {
            "spawn": state.fraction,
            "spawn_step": state.step,
            "seed": seed,
            "perturb": perturb,
            "lr_restart": lr_restart,
        },
    }
    model.task_name = task.name
    return model.eval()


def as_state_payloads(states: Sequence[TrainingState]) -> list[dict[str, Any]]:
    """Plain dicts (what `torch.save` stores) of saved training states."""
    return [s.to_payload() for s in states]


def states_from_payloads(payloads: Sequence[dict[str, Any]]) -> list[TrainingState]:
    """The training states of saved payloads (`TrainingState.to_payload`)."""
    return [TrainingState.from_payload(dict(p)) for p in payloads]


def initial_state(model: nn.Module, task: Task, recipe: dict[str, Any], spawn: float = 0.0):
    """A state to fork a network that was not trained here (the user's `--weights`): its given
    weights, a fresh optimizer, at share `spawn` of the recipe's budget, with nothing recorded
    yet; forks then fine-tune it for the remaining (1 − spawn) of the budget."""
    options = recipe_options(recipe)
    budget = plan_budget(len(task.train), options.batch_size, options.steps, recipe.get("epochs"))
    epoch = int(round(spawn * budget.epochs))
    params = list(model.parameters())
    lr, wd = options.lr, options.weight_decay
    if options.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd)
    else:
        opt = torch.optim.Adam(params, lr=lr, weight_decay=wd)
    opt_state = opt.state_dict()
    return TrainingState(
        fraction=epoch / budget.epochs,
        requested=spawn,
        epoch=epoch,
        step=epoch * budget.steps_per_epoch,
        total_steps=budget.total_steps,
        model={k: v.detach().clone() for k, v in model.state_dict().items()},
        optimizer=opt_state,
        generator=torch.Generator().manual_seed(0).get_state(),
        torch_rng=torch.get_rng_state(),
        cuda_rng=None,
        losses=[],
        history=[],
        candidates={},
    )
