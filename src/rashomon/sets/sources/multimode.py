"""`multimode`: a mixture of Laplace approximations (Eschenhagen et al., NeurIPS 2021): the
MAP model and K − 1 networks retrained from other seeds, each with a Laplace set around it,
held as one set of K modes.

Mode 0 is the audited MAP model, and the Rashomon filter (and an ε-scaled set's search) is
against it. The other modes are retrained seeds from the same checkpoint cache as the
`retrain` source (trained once, reused by both); only seeds whose network is itself within ε
of the MAP model on validation become modes — a mode outside the set would contribute no
model — trying at most `max_seeds` seeds.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from rashomon.errors import RashomonError
from rashomon.sets.registry import BuildContext, register_source
from rashomon.sets.sources.laplace import LaplaceOptions, laplace_set


class MultimodeOptions(LaplaceOptions):
    modes: int = Field(3, ge=2, le=20)  # K, the MAP model included
    max_seeds: int | None = Field(None, gt=0)  # retrained seeds tried (default 3·(K − 1))
    cache_dir: str | None = None  # the retrain cache (default $RASHOMON_CACHE/retrain)


def _within_epsilon(
    net: Any, reference: Any, task: Any, epsilon: float, context: BuildContext
) -> bool:
    from rashomon.models.predict import model_probs
    from rashomon.sets.rashomon import model_scores, threshold

    multilabel = task.kind == "multilabel"
    y = task.val.y.numpy()
    on, device, weight = context.on, context.device, context.class_weight
    ref = model_scores(
        model_probs(reference, task.val.x, multilabel, device).numpy()[None], y, weight
    )
    own = model_scores(model_probs(net, task.val.x, multilabel, device).numpy()[None], y, weight)
    bound = threshold(float(ref[on][0]), epsilon, on, relative=True)
    value = float(own[on][0])
    return value <= bound if on == "loss" else value >= bound


def build(model: Any, task: Any, options: MultimodeOptions, context: BuildContext) -> Any:
    """Mixture of Laplace approximations: the MAP model and retrained seeds within ε, a Laplace
    set around each (K modes)."""
    from rashomon.sets.base import ModelSet
    from rashomon.sets.retrain import trained_networks

    k = options.modes
    tries = options.max_seeds or 3 * (k - 1)
    eps = context.epsilon if options.target_epsilon is None else options.target_epsilon
    train = dict(context.train)
    nets, seeds, tried = [model], [context.seed], []
    for s in range(context.seed + 1, context.seed + 1 + tries):
        (net,), _ = trained_networks(
            task,
            [s],
            train.get("arch", "cnn-small"),
            train.get("epochs"),
            cache_dir=options.cache_dir,
            device=context.device,
            progress=context.progress,
            **train.get("fit_options", {}),
        )
        tried.append(s)
        if _within_epsilon(net, model, task, eps, context):
            nets.append(net)
            seeds.append(s)
        if len(nets) == k:
            break
    if len(nets) < k:
        raise RashomonError(
            f"only {len(nets) - 1} of {len(tried)} retrained seeds are within ε = {eps:g} of the "
            f"MAP model on validation, fewer than the {k - 1} modes asked for; use fewer modes, a "
            "larger epsilon, or more seeds (-o max_seeds=N)"
        )
    per_mode = [context.models // k + (i < context.models % k) for i in range(k)]
    parts = [
        laplace_set(net, task, options, context, models=m, seed=context.seed + i, reference=model)
        for i, (net, m) in enumerate(zip(nets, per_mode, strict=True))
    ]
    mset = ModelSet.concat(parts, source="multimode")
    mset.meta.update(mode_seeds=seeds, seeds_tried=tried)
    return mset


register_source("multimode", build, MultimodeOptions)
