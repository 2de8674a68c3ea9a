"""Dotted overrides for nested dataclass configs (``--model.dim=192 --samples.stride=2``), LeRobot-style."""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any


def _coerce(text: str, annotation: Any, name: str) -> Any:
    """Parse ``text`` as the field's type (int, float, bool, str, optional, tuple/list of str or numbers)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union or type(annotation).__name__ == "UnionType":
        if text.lower() in ("none", "null"):
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(text, inner[0], name)
    if annotation is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{name}: {text!r} is not a boolean (true/false)")
    if annotation in (int, float, str):
        try:
            return annotation(text)
        except ValueError:
            raise ValueError(f"{name}: {text!r} is not a valid {annotation.__name__}") from None
    if origin in (tuple, list):
        items = [s for s in text.split(",") if s]
        item_type = args[0] if args else str
        return origin(_coerce(s, item_type, name) for s in items)
    return json.loads(text)


def apply_overrides(config: Any, overrides: list[str]) -> Any:
    """Return a copy of dataclass ``config`` with ``key.sub=value`` overrides applied (keys as field names, '-' or
    '_' both accepted). Unknown keys raise ValueError naming the valid ones."""
    for item in overrides:
        key, sep, value = item.lstrip("-").partition("=")
        if not sep:
            raise ValueError(f"override {item!r} must look like --key.sub=value")
        config = _set(config, key.replace("-", "_").split("."), value, key)
    return config


def _set(obj: Any, path: list[str], value: str, full: str) -> Any:
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    if path[0] not in names:
        raise ValueError(f"unknown setting {full!r}; valid settings here: {', '.join(names)}")
    current = getattr(obj, path[0])
    if len(path) == 1:
        new = _coerce(value, hints[path[0]], full)
    elif dataclasses.is_dataclass(current):
        new = _set(current, path[1:], value, full)
    else:
        raise ValueError(f"{full!r}: {path[0]} has no sub-settings")
    return dataclasses.replace(obj, **{path[0]: new})


def from_dict(cls: type, data: dict, what: str = "config") -> Any:
    """``cls(**data)`` for a dataclass, refusing keys it does not know (e.g. a checkpoint from another version)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{what} has unknown keys {unknown}; this mu0sim version knows {sorted(known)}")
    return cls(**data)
