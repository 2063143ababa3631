"""Fork sets: K networks that share the MAP model's training up to a spawn point and finish it
with other data orders and dropout draws (`rashomon.models.fork`), cached like retrained seeds.

`spawn` is a share of the MAP model's step budget: 0 varies the data order only (from the MAP
model's initialisation); with `reinit` at spawn 0 a fork is a retrained seed itself (the same
network as `--source retrain` / `rashomon validate` train, from the same cache); towards 1 it is
cheap fine-tuning. Fork k is drawn with seed `seed + k` (k = 1 … K), so fork k at spawn 0 with
`reinit` is retrained seed `seed + k`.

Cache: `<cache>/<training key>/fork-<state digest>-<options digest>/seed_<s>.pt`, where the
training key is the MAP recipe's (`rashomon.sets.retrain.training_key`), the state digest the
content of the saved state the forks start from (so another MAP run is another folder), and the
options digest spawn, perturbation and learning-rate restart.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from rashomon.data.task import Task
from rashomon.errors import RashomonError
from rashomon.models.fork import fork, initial_state, nearest_state, states_from_payloads
from rashomon.models.registry import Classifier
from rashomon.models.train import TrainingState, load_checkpoint, save_checkpoint
from rashomon.sets.base import ModelSet, task_description
from rashomon.sets.retrain import default_cache_dir, trained_networks, training_key
from rashomon.torchio import load_payload


def load_training_states(path: str | Path) -> list[TrainingState]:
    """The training states the train stage kept (`train/states.pt`)."""
    payload = load_payload(path, "training states", "run `rashomon train --force`")
    return states_from_payloads(payload["states"])


def state_digest(state: TrainingState) -> str:
    """Digest of a saved state's weights and position: which training run forks start from."""
    h = hashlib.sha256(f"{state.step}/{state.total_steps}".encode())
    for name in sorted(state.model):
        h.update(name.encode())
        h.update(state.model[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def fork_networks(
    model: Classifier,
    task: Task,
    states: Sequence[TrainingState],
    forks: int,
    *,
    spawn: float,
    seed: int = 0,
    train: Mapping[str, Any] | None = None,
    perturb: float = 0.0,
    lr_restart: bool = False,
    reinit: bool = False,
    finetune: float = 0.1,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
    progress: bool = False,
) -> tuple[list[Classifier], dict[str, Any]]:
    """K = `forks` networks forked from the MAP model's training at share `spawn` (the latest
    saved state at or before it; a network trained elsewhere is fine-tuned from its weights for
    the rest of the budget). `train` is the MAP recipe ({"arch", "epochs", "fit_options"}, as
    the sample stage passes it to every training source). At spawn 1 (the end of training) the
    forks fine-tune the trained weights for the last `finetune` share of the budget with a
    fresh optimizer and a restarted schedule."""
    if forks < 1:
        raise RashomonError(f"forks must be a positive number of networks, got {forks}")
    recipe = dict(train or {})
    arch, epochs = recipe.get("arch", "cnn-small"), recipe.get("epochs")
    fit_options = dict(recipe.get("fit_options", {}))
    seeds = [seed + k for k in range(1, forks + 1)]
    if reinit:
        if spawn != 0:
            raise RashomonError(
                f"reinit draws a new initialisation, which only spawn 0 can take (got spawn "
                f"{spawn:g}); use spawn: 0 or drop reinit"
            )
        nets, meta = trained_networks(
            task,
            seeds,
            arch,
            epochs,
            cache_dir=cache_dir,
            device=device,
            progress=progress,
            **fit_options,
        )
        return nets, {**meta, "spawn": 0.0, "reinit": True}
    given = dict(getattr(model, "train_config", {}))
    if spawn >= 1:
        # the end of training leaves no step to take: fine-tune the trained weights for the
        # last `finetune` of the budget, on a fresh schedule
        state = initial_state(model, task, {**fit_options, "epochs": epochs}, 1 - finetune)
        lr_restart = True
    elif states:
        state = nearest_state(states, spawn)
    else:  # the user's --weights: fine-tune from the given weights
        state = initial_state(model, task, {**fit_options, "epochs": epochs}, spawn)
    options = {
        "spawn": state.fraction,
        "from_weights": spawn >= 1 or not states,
        "perturb": perturb,
        "lr_restart": lr_restart,
    }
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    tag = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:8]
    folder = (
        folder / training_key(task, arch, epochs, fit_options) / f"fork-{state_digest(state)}-{tag}"
    )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RashomonError(f"cannot create cache folder {folder} ({exc.strerror})") from exc
    recipe_config = {**given, **fit_options, "epochs": epochs, "seed": given.get("seed", 0)}
    nets, reused, seconds, cost = [], 0, 0.0, 0.0
    for s in seeds:
        path = folder / f"seed_{s}.pt"
        if path.exists():
            net, saved = load_checkpoint(path)
            reused += 1
            cost += float(saved.get("train_seconds") or "nan")
        else:
            start = time.perf_counter()
            net = fork(
                task,
                model,
                state,
                s,
                recipe=recipe_config,
                perturb=perturb,
                lr_restart=lr_restart,
                device=device,
                progress=progress,
            )
            took = time.perf_counter() - start
            seconds += took
            cost += took
            save_checkpoint(net, path, task, train_seconds=round(took, 2))
        nets.append(net.cpu().eval())
    same = sum(_same_weights(net, model) for net in nets)
    if same == len(nets):
        kept = ", ".join(f"{st.fraction:g}" for st in states) or "none"
        raise RashomonError(
            f"all {len(nets)} forks from share {state.fraction:.2f} of the budget ended on the "
            "trained model's own weights: its checkpoint was chosen before that point (by "
            "validation loss, or training had stopped early) and no fork improved on it, so each "
            "kept it; fork earlier (-o spawn=S with S before the chosen checkpoint; states kept "
            f"at {kept}), use more forks, or use -o spawn=0"
        )
    meta = {
        "forks_equal_to_map": same,
        "seeds": seeds,
        "spawn": state.fraction,
        "spawn_step": state.step,
        "spawn_requested": spawn,
        "perturb": perturb,
        "lr_restart": lr_restart,
        "reinit": False,
        "from_saved_state": bool(states) and spawn < 1,
        "cache": str(folder),
        "reused": reused,
        "train_seconds": round(seconds, 2),
        "trained_seconds": round(cost, 2),  # training the forks took, cached or not
    }
    return nets, meta


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Whether two networks hold the same parameter values (a fork that kept the MAP model's
    checkpoint)."""
    pa, pb = a.state_dict(), b.state_dict()
    return pa.keys() == pb.keys() and all(
        torch.equal(pa[k].cpu(), pb[k].cpu()) for k in pa if pa[k].is_floating_point()
    )


def fork_set(
    model: Classifier,
    task: Task,
    states: Sequence[TrainingState],
    forks: int,
    **kwargs: Any,
) -> ModelSet:
    """The K forks as one set around the MAP model (its θ*, the reference of distances)."""
    nets, meta = fork_networks(model, task, states, forks, **kwargs)
    return ModelSet.from_models(
        nets, base=model.cpu(), source="fork", task=task_description(task), meta=meta
    )
