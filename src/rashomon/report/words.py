"""How patient attributes and groups read on the page: level names, derived proxies marked."""

from __future__ import annotations

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
