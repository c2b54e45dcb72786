"""Method ids and their configuration classes, each naming its implementation (no torch here).

A new method is one new module: a `MethodConfig` subclass with its `method` id and its
`implementation` (a `Method` subclass), decorated with `@register`, imported by the package.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidInput

CONFIGS: dict[str, type] = {}


def register(config_class: type) -> type:
    if not getattr(config_class, "implementation", None):
        raise TypeError(f"{config_class.__name__} names no implementation (a Method subclass)")
    CONFIGS[config_class.method] = config_class
    return config_class


def make_config(method: str, hyperparameters: dict[str, Any] | None = None):
    """The method's configuration with its defaults, checked; InvalidInput names the bad field."""
    if method not in CONFIGS:
        raise InvalidInput("method", f"unknown method {method!r}; known: {', '.join(sorted(CONFIGS))}")
    if hyperparameters is not None and not isinstance(hyperparameters, dict):
        raise InvalidInput("hyperparameters", "must be an object")
    return CONFIGS[method].from_dict(hyperparameters)


def validate(method: str, hyperparameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """The full configuration as a plain dict, defaults filled in."""
    return make_config(method, hyperparameters).to_dict()
