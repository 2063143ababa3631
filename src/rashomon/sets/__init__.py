"""Model sets and the sources that build them.

`ModelSet` (sets/base.py) holds M models of one architecture (their weights: sets/weights.py) and
predicts them (sets/predict.py); each source (sets/sources/, one module each) registers a name, an
options model and a builder in the registry (sets/registry.py). Register your own with
`register_source`, or through the `rashomon.sources` entry-point group.
"""

from rashomon.sets.registry import (
    BuildContext,
    Builder,
    Posterior,
    SourceOptions,
    available_sources,
    register_source,
    source_names,
)

__all__ = [
    "BuildContext",
    "Builder",
    "Posterior",
    "SourceOptions",
    "available_sources",
    "register_source",
    "source_names",
]
