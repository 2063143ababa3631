"""How patient attributes and groups read on the page: level names, derived proxies marked."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

DERIVED_TAG = " (derived proxy)"


def attr_label(name: str, info: dict) -> str:
    """'intensity' -> 'intensity (derived proxy)' when the attribute is derived."""
    return f"{name}{DERIVED_TAG}" if info.get("derived") else name


def group_label(group: Any, attributes: dict[str, dict]) -> str:
    """'intensity=0' -> 'intensity = low (derived proxy)' using the attribute's level names."""
    text = str(group)
    for sep in ("=", ":"):
        if sep in text:
            name, code = text.split(sep, 1)
            info = attributes.get(name)
            if info is None:
                return text
            levels = list(info.get("levels") or [])
            level = levels[int(code)] if code.isdigit() and int(code) < len(levels) else code
            return f"{attr_label(name, info)} = {level}"
    return text


def class_weight_text(train_summary: dict[str, Any], class_names: Sequence[str]) -> str:
    """How the MAP model weighted its classes, in words: the loss the Rashomon filter uses."""
    weight = train_summary.get("class_weight")
    if not weight:
        return "cross-entropy, classes unweighted (the Rashomon filter's loss too)"
    names = list(class_names) or [str(i) for i in range(len(weight))]
    auto = train_summary.get("class_weights") == "auto"
    how = "auto: the training split is imbalanced" if auto else "as configured"
    each = ", ".join(f"{n} {w:.2f}" for n, w in zip(names, weight, strict=False))
    return (
        f"cross-entropy with inverse-frequency class weights ({each}; {how}); the checkpoint "
        "and the Rashomon filter use the same weighted loss"
    )
