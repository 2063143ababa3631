"""`multimode`: a mixture of Laplace approximations (Eschenhagen et al., NeurIPS 2021): the
MAP model and K − 1 networks retrained from other seeds, each with a Laplace set around it,
held as one set of K modes (rashomon.sets.multimode finds the modes).

Mode 0 is the audited MAP model, and the Rashomon filter (and an ε-scaled set's search) is
against it. Only retrained seeds within ε of the MAP model on validation become modes, so the
set always depends on ε: its options aim at it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from rashomon.sets.registry import BuildContext, register_source
from rashomon.sets.sources.laplace import LaplaceOptions, laplace_set


class MultimodeOptions(LaplaceOptions):
    """Options of the multimode source: K modes from retrained seeds within ε, a Laplace set
    each."""

    modes: int = Field(3, ge=2, le=20)  # K, the MAP model included
    max_seeds: int | None = Field(None, gt=0)  # retrained seeds tried (default 3·(K − 1))
    cache_dir: str | None = None  # the retrain cache (default $RASHOMON_CACHE/retrain)
    summary_keys: ClassVar[tuple[str, ...]] = ()  # the modes' Laplace meta is per part

    def aims_at_epsilon(self) -> bool:
        """True: the modes are the retrained seeds within ε."""
        return True  # the modes are the retrained seeds within ε


def build(model: Any, task: Any, options: MultimodeOptions, context: BuildContext) -> Any:
    """Mixture of Laplace approximations: the MAP model and retrained seeds within ε, a Laplace
    set around each (K modes)."""
    from rashomon.sets.base import ModelSet
    from rashomon.sets.multimode import models_per_mode, retrained_modes

    # resolve_options gave a source that aims at ε the audit's ε (SourceOptions.with_epsilon)
    assert options.target_epsilon is not None
    nets, seeds, tried = retrained_modes(
        model,
        task,
        options.modes,
        options.target_epsilon,
        seed=context.seed,
        max_seeds=options.max_seeds,
        train=context.train,
        on=context.on,
        class_weight=context.class_weight,
        cache_dir=options.cache_dir,
        device=context.device,
        progress=context.progress,
    )
    per_mode = models_per_mode(context.models, options.modes)
    parts = [
        laplace_set(net, task, options, context, models=m, seed=context.seed + i, reference=model)
        for i, (net, m) in enumerate(zip(nets, per_mode, strict=True))
    ]
    mset = ModelSet.concat(parts, source="multimode")
    mset.meta.update(mode_seeds=seeds, seeds_tried=tried)
    return mset


register_source("multimode", build, MultimodeOptions)
