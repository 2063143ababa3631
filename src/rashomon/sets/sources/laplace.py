"""`laplace`: the Laplace approximation N(θ*, Σ) around the trained model (laplace-torch;
multilabel heads: rashomon.sets.bernoulli), sampled once, at the posterior's width or scaled to
the Rashomon set (rashomon.sets.scaling)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from rashomon.errors import RashomonError
from rashomon.sets.registry import BuildContext, SourceOptions, register_source

# Fields of a Laplace set's meta recorded in sample/summary.json (riemannian's too).
LAPLACE_SUMMARY = (
    "subset",
    "hessian",
    "prior",
    "prior_precision",
    "temperature",
    "fit_seconds",
    "prior_seconds",
    "sample_seconds",
)
NARROWER_POSTERIOR = "a narrower posterior (-o prior=grid or a larger fixed prior precision)"


def checked_prior(value: Any) -> str | float:
    """A prior option's value: marglik, grid or a positive precision (a number, or its text)."""
    from rashomon.sets.prior import parse_prior

    try:
        return parse_prior(value)
    except RashomonError as exc:
        raise ValueError(str(exc)) from None


class LaplaceOptions(SourceOptions):
    """Options of the laplace source: subset, Hessian, prior, temperature and the set's scale."""

    subset: Literal["last_layer", "all", "subnetwork"] = "last_layer"
    hessian: Literal["diag", "kron", "full", "lowrank"] = "kron"
    prior: str | float = "marglik"  # marglik | grid | a positive precision
    kind: Literal["nn", "glm"] = "nn"  # nn: sampled networks; glm: the linearized network
    temperature: float = Field(1.0, gt=0)  # T > 1 widens the posterior
    # subset "subnetwork": module names whose parameters vary, or a count of largest-variance
    # weights (default 1000)
    subnetwork: list[str] | int | None = None
    # posterior: θ* + v, v ~ N(0, Σ); epsilon: θ* + s·v with one s putting `target_share` of
    # the samples within ε on validation; boundary: θ* + t_m·v_m, each direction followed to
    # the ε level set of the validation loss; disagreement: θ* + s·v with the s at which the
    # models disagree pairwise on validation as often as the trained model errs there (Jiang
    # et al. 2022: two SGD runs disagree at about the error rate)
    scale: Literal["posterior", "epsilon", "boundary", "disagreement"] = "posterior"
    target_share: float = Field(0.5, gt=0, lt=1)
    target_epsilon: float | None = Field(None, ge=0)  # default: the audit's ε
    search_models: int = Field(200, gt=0)  # models the ε-scale bisection evaluates
    summary_keys: ClassVar[tuple[str, ...]] = LAPLACE_SUMMARY

    @field_validator("prior")
    @classmethod
    def _prior(cls, value: Any) -> str | float:
        return checked_prior(value)

    def aims_at_epsilon(self) -> bool:
        """True when the set is scaled to ε (scale epsilon or boundary)."""
        return self.scale in ("epsilon", "boundary")

    def narrower_set_advice(self) -> str:
        """What to change when too few models are within ε."""
        return NARROWER_POSTERIOR


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
    from rashomon.sets.laplace import laplace
    from rashomon.sets.scaling import scaled_set

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
    return scaled_set(
        post,
        task,
        models,
        seed=seed,
        kind=options.kind,
        scale=options.scale,
        epsilon=options.target_epsilon,
        target_share=options.target_share,
        search_models=options.search_models,
        on=context.on,
        class_weight=context.class_weight,
        device=context.device,
        max_memory=context.max_memory,
        reference=reference,
    )


def build(model: Any, task: Any, options: LaplaceOptions, context: BuildContext) -> Any:
    """Laplace approximation (laplace-torch): N(θ*, Σ) over the last layer, all weights or a
    subnetwork, sampled once; optionally scaled to the Rashomon set."""
    return laplace_set(model, task, options, context)


register_source("laplace", build, LaplaceOptions)
