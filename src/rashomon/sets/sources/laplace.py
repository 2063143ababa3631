"""`laplace`: weight samples from a Laplace approximation (laplace-torch) at the MAP weights,
at the posterior's own width or scaled to the Rashomon set (rashomon.sets.scaling)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from rashomon.sets.registry import BuildContext, SourceOptions, register_source


class LaplaceOptions(SourceOptions):
    subset: Literal["last_layer", "all", "subnetwork"] = "last_layer"
    hessian: Literal["diag", "kron", "full", "lowrank"] = "kron"
    prior: str | float = "marglik"  # marglik | grid | a positive precision
    kind: Literal["nn", "glm"] = "nn"
    temperature: float = Field(1.0, gt=0)
    # subset "subnetwork": module names whose parameters vary, or a count of largest-variance
    # weights (default 1000)
    subnetwork: list[str] | int | None = None
    # posterior: θ* + v, v ~ N(0, Σ); epsilon: θ* + s·v with one s putting `target_share` of
    # the samples within ε on validation; boundary: θ* + t_m·v_m, each direction followed to
    # the ε level set of the validation loss
    scale: Literal["posterior", "epsilon", "boundary"] = "posterior"
    target_share: float = Field(0.5, gt=0, lt=1)
    target_epsilon: float | None = Field(None, ge=0)  # default: the audit's ε
    search_models: int = Field(200, gt=0)  # models the ε-scale bisection evaluates

    def aims_at_epsilon(self) -> bool:
        return self.scale != "posterior"


def laplace_set(
    model: Any,
    task: Any,
    options: LaplaceOptions,
    context: BuildContext,
    *,
    models: int | None = None,
    seed: int | None = None,
    reference: Any = None,
) -> Any:
    """A ModelSet of `models` (default context.models) samples of the Laplace posterior at
    `model`, scaled against `reference` (the audited network; default `model`)."""
    import time

    from rashomon.sets.laplace import laplace
    from rashomon.sets.scaling import boundary_scales, epsilon_scale

    models = context.models if models is None else models
    seed = context.seed if seed is None else seed
    post = laplace(
        model,
        task,
        subset=options.subset,
        hessian=options.hessian,
        prior=options.prior,
        temperature=options.temperature,
        subnetwork=options.subnetwork,
        device=context.device,
        max_memory=context.max_memory,
        seed=seed,
    )
    if options.scale == "posterior":
        return post.sample(models, seed=seed, kind=options.kind)
    start = time.perf_counter()
    dev = post.sample_deviations(models, seed=seed)
    eps = context.epsilon if options.target_epsilon is None else options.target_epsilon
    common = dict(
        on=context.on,
        class_weight=context.class_weight,
        kind=options.kind,
        device=context.device,
        max_memory=context.max_memory,
        reference=reference,
    )
    if options.scale == "epsilon":
        search = dev[: options.search_models]
        s, info = epsilon_scale(
            post, search, task, eps, target_share=options.target_share, **common
        )
        vectors = post.mean[None] + s * dev
    else:
        t, info = boundary_scales(post, dev, task, eps, **common)
        vectors = post.mean[None] + t[:, None] * dev
    info["scale_seconds"] = round(time.perf_counter() - start, 3)
    return post.to_set(vectors, options.kind, seed=seed, scaling={options.scale: info})


def build(model: Any, task: Any, options: LaplaceOptions, context: BuildContext) -> Any:
    """Laplace approximation (laplace-torch): N(θ*, Σ) over the last layer, all weights or a
    subnetwork, sampled once; optionally scaled to the Rashomon set."""
    return laplace_set(model, task, options, context)


register_source("laplace", build, LaplaceOptions)
