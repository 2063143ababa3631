"""`swag`: SWA-Gaussian (Maddox et al., NeurIPS 2019) around the trained model
(rashomon.sets.swag), continuing SGD with the MAP model's learning rate and weight decay unless
told otherwise."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from rashomon.sets.registry import BuildContext, SourceOptions, register_source


class SwagOptions(SourceOptions):
    """Options of the swag source: subset, SGD rate, epochs, rank, momentum, batch size."""

    subset: Literal["last_layer", "all"] = "last_layer"
    lr: float | None = Field(None, gt=0)  # default: the MAP model's learning rate
    epochs: int = Field(30, ge=2)  # SGD epochs after the MAP, one snapshot each
    rank: int = Field(20, ge=2)  # deviations kept for the low-rank part
    momentum: float = Field(0.9, ge=0, lt=1)
    batch_size: int = Field(64, gt=0)
    summary_keys: ClassVar[tuple[str, ...]] = ("subset", "fit_seconds")


def build(model: Any, task: Any, options: SwagOptions, context: BuildContext) -> Any:
    """SWA-Gaussian: mean, diagonal and low-rank covariance of constant-rate SGD iterates
    started at the MAP weights."""
    from rashomon.sets.swag import swag

    fit = dict(context.train.get("fit_options", {}))
    return swag(
        model,
        task,
        context.models,
        subset=options.subset,
        lr=options.lr or float(fit.get("lr", 1e-3)),
        weight_decay=float(fit.get("weight_decay", 1e-4)),
        epochs=options.epochs,
        rank=options.rank,
        momentum=options.momentum,
        batch_size=options.batch_size,
        seed=context.seed,
        device=context.device,
        class_weight=context.class_weight,
    )


register_source("swag", build, SwagOptions)
