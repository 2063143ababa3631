"""`riemannian`: Laplace velocities carried along geodesics of the loss (Bergamin et al., 2023)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from rashomon.sets.registry import BuildContext, SourceOptions, register_source
from rashomon.sets.sources.laplace import LAPLACE_SUMMARY, NARROWER_POSTERIOR, checked_prior


class RiemannianOptions(SourceOptions):
    """Options of the riemannian source: the Laplace fit, the metric and its geodesic solver."""

    subset: Literal["last_layer", "all"] = "last_layer"
    hessian: Literal["diag", "kron", "full"] = "kron"
    prior: str | float = "marglik"  # the Laplace prior: marglik | grid | a positive precision
    temperature: float = Field(1.0, gt=0)
    linearized: bool = False  # geodesics of the linearized network's loss
    metric: Literal["monge", "fisher"] = "monge"  # Bergamin et al. 2023 | Yu et al. 2024
    refine_map: bool = False
    batch_size: int | None = Field(None, gt=0)  # mini-batch per geodesic (all weights)
    summary_keys: ClassVar[tuple[str, ...]] = LAPLACE_SUMMARY

    @field_validator("prior")
    @classmethod
    def _prior(cls, value: Any) -> str | float:
        return checked_prior(value)

    def narrower_set_advice(self) -> str:
        """What to change when too few models are within ε."""
        return NARROWER_POSTERIOR


def build(model: Any, task: Any, options: RiemannianOptions, context: BuildContext) -> Any:
    """Riemannian Laplace: each Laplace velocity followed along a geodesic of the loss (exp map)."""
    from rashomon.sets.riemannian import riemannian

    return riemannian(
        model,
        task,
        subset=options.subset,
        linearized=options.linearized,
        hessian=options.hessian,
        prior=options.prior,
        batch_size=options.batch_size,
        device=context.device,
        temperature=options.temperature,
        metric=options.metric,
        max_memory=context.max_memory,
        seed=context.seed,
        refine_map=options.refine_map,
    )


register_source("riemannian", build, RiemannianOptions)
