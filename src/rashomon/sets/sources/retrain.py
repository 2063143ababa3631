"""`retrain`: networks trained independently from other seeds (the expensive ground truth)."""

from __future__ import annotations

from typing import Any, ClassVar

from rashomon.sets.registry import BuildContext, SourceOptions, register_source


class RetrainOptions(SourceOptions):
    """Options of the retrain source: development choices varied across seeds, the cache."""

    # development choices varied across models, e.g. {"augment": [false, true]}
    choices: dict[str, list[Any]] = {}
    cache_dir: str | None = None  # default $RASHOMON_CACHE/retrain or ~/.cache/rashomon/retrain
    summary_keys: ClassVar[tuple[str, ...]] = ("seeds", "train_seconds", "trained_seconds")

    def narrower_set_advice(self) -> str:
        """What to change when too few models are within ε."""
        return "a longer training (train.steps or --epochs), whose seeds agree more"


def build(model: Any, task: Any, options: RetrainOptions, context: BuildContext) -> Any:
    """Retrained networks: the MAP model's training run repeated with seeds seed+1 … seed+M
    (the MAP model is seed `seed`: the set holds M other networks, as `rashomon validate`'s
    truth and the forks of `--source fork -o reinit=true` do)."""
    from rashomon.sets.retrain import retrain

    train = dict(context.train)
    return retrain(
        task,
        context.models,
        arch=train.get("arch", "cnn-small"),
        epochs=train.get("epochs"),
        seed=context.seed + 1,
        base=model,
        choices=options.choices,
        cache_dir=options.cache_dir,
        device=context.device,
        progress=context.progress,
        **train.get("fit_options", {}),
    )


register_source("retrain", build, RetrainOptions)
