"""The erasure methods and their settings: name, type, default, bounds and help, for forms.

Read from `unlearning.methods`' configuration dataclasses (no torch). A setting's bounds are
the tighter of the method's own (`BOUNDS`) and the job schema's (`Hyperparameters`), and its
choices those both accept: what a `POST /v1/jobs` takes. Bounds a method checks only in code
are not listed here; the job's validation still names them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from fastapi import APIRouter
from pydantic import BaseModel, Field

from service.api.deps import CallerDep
from service.api.schemas import Hyperparameters, ListOf
from unlearning.methods import CONFIGS, DEFAULT_METHOD
from unlearning.methods.base import TRAINABLE_SETS
from unlearning.methods.gradient import FORGET_TARGETS, RETAIN_TARGETS

router = APIRouter(prefix="/v1/methods", tags=["methods"])

# A config field's annotation (a string: the modules use `from __future__ import annotations`)
# by its first word; a type not listed is "json", a value given as JSON.
TYPES = {"int": "integer", "float": "number", "bool": "boolean", "str": "string", "tuple[str,": "array", "list[str]": "array"}
CHOICES = {"trainable": list(TRAINABLE_SETS), "forget_target": list(FORGET_TARGETS), "retain_target": list(RETAIN_TARGETS)}


class SettingPublic(BaseModel):
    name: str
    type: Literal["integer", "number", "boolean", "string", "array", "json"] = Field(
        description="A JSON type; `array` is a list of strings; `json` any JSON value the method checks."
    )
    default: Any
    nullable: bool
    minimum: int | float | None = None  # an integer setting keeps integer bounds
    maximum: int | float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    choices: list[str] | None = None
    help: str


class MethodPublic(BaseModel):
    object: Literal["method"] = "method"
    id: str
    default: bool
    settings: list[SettingPublic]


@router.get("", response_model=ListOf[MethodPublic])
def list_methods(caller: CallerDep) -> ListOf[MethodPublic]:
    """Every method id with its hyperparameters (defaults and accepted ranges)."""
    return ListOf[MethodPublic](data=[method_public(method) for method in sorted(CONFIGS)])


def method_public(method: str) -> MethodPublic:
    config = CONFIGS[method]
    settings = [setting_public(f, config.BOUNDS.get(f.name)) for f in dataclasses.fields(config)]
    return MethodPublic(id=method, default=method == DEFAULT_METHOD, settings=settings)


def setting_public(field: dataclasses.Field, bounds: tuple[float, float] | None) -> SettingPublic:
    annotation = str(field.type)
    public = SettingPublic(
        name=field.name, type=TYPES.get(annotation.split(" ")[0], "json"), default=field.default,
        nullable="None" in annotation, choices=CHOICES.get(field.name), help=field.metadata.get("help", ""),
    )  # fmt: skip
    if bounds is not None:
        public.minimum, public.maximum = bounds
    _tighten_to_schema(public)
    return public


def _tighten_to_schema(public: SettingPublic) -> None:
    """Narrow `public` to what `Hyperparameters` accepts for the same name, if it names it."""
    schema_field = Hyperparameters.model_fields.get(public.name)
    if schema_field is None:
        return
    for limit in schema_field.metadata:
        _apply_limit(public, limit)
    accepted = _literal_values(schema_field.annotation)
    if public.choices and accepted:
        public.choices = [choice for choice in public.choices if choice in accepted]


def _apply_limit(public: SettingPublic, limit) -> None:
    if isinstance(limit, (Ge, Gt)):
        low, exclusive = (limit.gt, True) if isinstance(limit, Gt) else (limit.ge, False)
        if public.minimum is None or (low, exclusive) > (public.minimum, public.exclusive_minimum):
            public.minimum, public.exclusive_minimum = low, exclusive
    elif isinstance(limit, (Le, Lt)):
        high, exclusive = (limit.lt, True) if isinstance(limit, Lt) else (limit.le, False)
        if public.maximum is None or (high, not exclusive) < (public.maximum, not public.exclusive_maximum):
            public.maximum, public.exclusive_maximum = high, exclusive


def _literal_values(annotation) -> set:
    """The values of the `Literal[...]` inside an annotation such as `Literal["a", "b"] | None`."""
    if get_origin(annotation) is Literal:
        return set(get_args(annotation))
    return {value for arg in get_args(annotation) for value in _literal_values(arg)}
