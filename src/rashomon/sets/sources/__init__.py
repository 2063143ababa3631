"""Built-in set sources, one module each, named like the source (`my_set.py` is `my-set`).

A module here defines its options model (a `SourceOptions` subclass), a builder
``build(model, task, options, context)`` and calls `register_source` when imported; nothing else
needs to change for `rashomon sample --source NAME` to find it. Keep imports of heavy libraries
inside the builder so that listing sources stays cheap.
"""
