"""`fork`: networks forked from the MAP model's training at a share of its budget and trained to
its end with other data orders (rashomon.sets.fork), optionally with a last-layer Laplace set
around each fork (as `multimode` holds one around each retrained mode).

`spawn` 0 varies the data order only; `reinit: true` at spawn 0 draws the initialisation too,
which makes fork k retrained seed `seed + k` itself (the same cache); `spawn` 1 fine-tunes the
trained weights for the last `finetune` share of the budget on a restarted schedule. The forks
resume from the training states the train stage kept (`train/states.pt`); a network trained
elsewhere (the user's `--weights`) is fine-tuned from its weights for the rest of the budget.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from rashomon import schema as S
from rashomon.sets.registry import BuildContext, register_source
from rashomon.sets.sources.laplace import LaplaceOptions, laplace_set

FORK_SUMMARY = (
    "seeds",
    "spawn",
    "spawn_step",
    "reinit",
    "from_saved_state",
    "train_seconds",
    "trained_seconds",
)


class ForkOptions(LaplaceOptions):
    """Options of the fork source: where forks branch, how many, their perturbation, and the set
    around each."""

    spawn: float = Field(0.5, ge=0, le=1)  # share of the MAP model's budget forks branch at
    forks: int | None = Field(None, gt=0)  # K; default: --models (10 with a Laplace set each)
    perturb: float = Field(0.0, ge=0)  # relative Gaussian weight perturbation at the spawn
    lr_restart: bool = False  # a fresh cosine schedule over the remaining steps
    reinit: bool = False  # spawn 0 only: a new initialisation (= retrained seeds)
    # spawn 1: fine-tune the trained weights for this last share of the budget (restarted lr)
    finetune: float = Field(0.1, gt=0, le=1)
    around: Literal["none", "laplace"] = "none"  # a last-layer Laplace set around each fork
    cache_dir: str | None = None  # the retrain cache (default $RASHOMON_CACHE/retrain)
    summary_keys: ClassVar[tuple[str, ...]] = FORK_SUMMARY

    def aims_at_epsilon(self) -> bool:
        """True when the Laplace sets around the forks are scaled to ε."""
        return self.around == "laplace" and super().aims_at_epsilon()

    def narrower_set_advice(self) -> str:
        """What to change when too few models are within ε."""
        return "a later spawn (-o spawn=0.9), whose forks stay closer to the trained model"


def build(model: Any, task: Any, options: ForkOptions, context: BuildContext) -> Any:
    """Forks from training: K networks sharing the MAP model's training up to `spawn` and
    finishing it with other data orders (optionally a Laplace set around each)."""
    from rashomon.sets.base import ModelSet
    from rashomon.sets.fork import fork_networks, load_training_states
    from rashomon.sets.multimode import models_per_mode

    states_file = context.run_dir / "train" / S.TRAINING_STATES if context.run_dir else None
    states = load_training_states(states_file) if states_file and states_file.exists() else []
    laplace = options.around == "laplace"
    k = options.forks or (10 if laplace else context.models)
    nets, meta = fork_networks(
        model,
        task,
        states,
        k,
        spawn=options.spawn,
        seed=context.seed,
        train=context.train,
        perturb=options.perturb,
        lr_restart=options.lr_restart,
        reinit=options.reinit,
        finetune=options.finetune,
        cache_dir=options.cache_dir,
        device=context.device,
        progress=context.progress,
    )
    if not laplace:
        return ModelSet.from_models(nets, base=model.cpu(), source="fork", meta=meta)
    per_fork = models_per_mode(context.models, k)
    parts = [
        laplace_set(net, task, options, context, models=m, seed=context.seed + i, reference=model)
        for i, (net, m) in enumerate(zip(nets, per_fork, strict=True))
    ]
    mset = ModelSet.concat(parts, source="fork")
    mset.meta.update(meta)
    return mset


register_source("fork", build, ForkOptions)
