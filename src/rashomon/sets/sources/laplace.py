"""`laplace`: weight samples from a Laplace approximation (laplace-torch) at the MAP weights."""

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


def build(model: Any, task: Any, options: LaplaceOptions, context: BuildContext) -> Any:
    """Laplace approximation (laplace-torch): N(θ*, Σ) over the last layer, all weights or a
    subnetwork, sampled once."""
    from rashomon.sets.laplace import laplace

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
        seed=context.seed,
    )
    return post.sample(context.models, seed=context.seed, kind=options.kind)


register_source("laplace", build, LaplaceOptions)
