"""`perturb`: the trained network with a fixed multiplicative mask on every conv/linear output
channel (Hsu et al., ICLR 2024), the mask's scale set on validation (rashomon.sets.perturb)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from rashomon.sets.registry import BuildContext, SourceOptions, register_source


class PerturbOptions(SourceOptions):
    """Options of the perturb source: the mask (Gaussian or Bernoulli) and how its scale is set."""

    mask: Literal["gaussian", "bernoulli"] = "gaussian"  # 1 + s·z, or channel dropout
    # epsilon: `target_share` of the models within ε; boundary: each mask direction to the ε
    # level set; disagreement: pairwise disagreement on validation = the model's error rate;
    # fixed: `sigma` (Gaussian) or `rate` (Bernoulli) as given
    scale: Literal["epsilon", "boundary", "disagreement", "fixed"] = "epsilon"
    sigma: float | None = Field(None, gt=0)
    rate: float | None = Field(None, gt=0, lt=1)
    target_share: float = Field(0.5, gt=0, lt=1)
    target_epsilon: float | None = Field(None, ge=0)  # default: the audit's ε
    search_models: int = Field(200, gt=0)  # models the scale search evaluates
    include_head: bool = True  # mask the logits' layer too
    summary_keys: ClassVar[tuple[str, ...]] = ("mask", "scale", "scaling", "channels")

    def aims_at_epsilon(self) -> bool:
        """True when the scale is set on ε (scale epsilon or boundary)."""
        return self.scale in ("epsilon", "boundary")

    def narrower_set_advice(self) -> str:
        """What to change when too few models are within ε."""
        return "a smaller fixed scale (-o scale=fixed -o sigma=...) or -o target_share nearer 1"


def build(model: Any, task: Any, options: PerturbOptions, context: BuildContext) -> Any:
    """Feature-level perturbations: fixed multiplicative masks on every conv/linear output
    channel, scaled on validation."""
    from rashomon.sets.perturb import perturbation_set

    return perturbation_set(
        model,
        task,
        context.models,
        mask=options.mask,
        scale=options.scale,
        sigma=options.sigma,
        rate=options.rate,
        target_share=options.target_share,
        search_models=options.search_models,
        include_head=options.include_head,
        epsilon=options.target_epsilon,
        on=context.on,
        class_weight=context.class_weight,
        seed=context.seed,
        device=context.device,
        max_memory=context.max_memory,
    )


register_source("perturb", build, PerturbOptions)
