"""`dropout`: MC dropout with one fixed, seeded mask per model (exact last-layer models)."""

from __future__ import annotations

from typing import Any, ClassVar

from rashomon.sets.registry import BuildContext, SourceOptions, register_source


class DropoutOptions(SourceOptions):
    """No options: the rate is the MAP model's (train.dropout)."""

    summary_keys: ClassVar[tuple[str, ...]] = ("dropout",)

    def narrower_set_advice(self) -> str:
        """What to change when too few models are within ε."""
        return "a lower dropout rate (--dropout, retrained)"


def build(model: Any, task: Any, options: DropoutOptions, context: BuildContext) -> Any:
    """MC dropout: a fixed dropout mask on the penultimate features per model."""
    from rashomon.sets.dropout import dropout

    return dropout(model, context.models, seed=context.seed, task=task)


register_source("dropout", build, DropoutOptions)
