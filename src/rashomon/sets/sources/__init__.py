"""Built-in set sources, one module each, named like the source (`my_set.py` is `my-set`).

The rule: the algorithm lives in `rashomon.sets` (`sets/laplace.py`, `sets/riemannian.py`,
`sets/retrain.py`, `sets/dropout.py`, `sets/multimode.py`, `sets/swag.py`: plain functions of a
model, a task and keyword arguments, usable without the registry); the module here holds the
source's registration and its options: an options model (a `SourceOptions` subclass, the one
place the source's options are declared, defaulted and documented) and a builder
``build(model, task, options, context)`` that hands them to the algorithm, then calls
`register_source` when imported. Nothing else needs to change for `rashomon sample --source NAME`
to find it. Keep imports of torch and heavy libraries inside the builder so that listing sources
stays cheap.
"""
