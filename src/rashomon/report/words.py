"""How patient attributes and groups read on the page: level names, derived proxies and
acquisition attributes marked, and which of the four kinds an attribute is."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

DERIVED_TAG = " (derived proxy)"
ACQUISITION_TAG = " (acquisition)"
NULL_ATTRIBUTE = "random"  # the seeded random split: the null control of every gap

# The kinds of attribute, in the order the report shows them.
PATIENT = "patient"  # real and not acquisition: who the patient is (sex, age group)
ACQUISITION = "acquisition"  # real, but how the image was taken (view, scanner, site)
NULL = "null"  # the random null control
PROXY = "proxy"  # derived from the images (intensity): neither a patient's nor recorded
KIND_ORDER = (PATIENT, ACQUISITION, NULL, PROXY)


def attribute_kind(name: str, info: dict) -> str:
    """Which kind of attribute `name` is: PATIENT, ACQUISITION, NULL or PROXY (`info` as
    `RunData.attributes` gives it; an attribute without `derived` counts as derived)."""
    if name == NULL_ATTRIBUTE:
        return NULL
    if info.get("derived", True):
        return PROXY
    return ACQUISITION if info.get("acquisition") else PATIENT


def attr_label(name: str, info: dict) -> str:
    """'intensity' -> 'intensity (derived proxy)' when the attribute is derived; 'view' ->
    'view (acquisition)' when it is a real acquisition attribute."""
    if info.get("derived"):
        return f"{name}{DERIVED_TAG}"
    return f"{name}{ACQUISITION_TAG}" if info.get("acquisition") else name


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
