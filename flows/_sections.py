"""Typed config sections generated from the ``vardax_core`` configs they feed.

``vardax_core`` keeps one definition of every setting: a frozen dataclass (``TrainConfig``,
``GateConfig``, ``ReferenceConfig``, the solvers' fields, …) or a defaults table
(``ENCODER_DEFAULTS``, ``GAUSSIAN_DEFAULTS``, …) with its resolver. The pipeline config
mirrors each as a pydantic model with the same fields, types and defaults — so Prefect's
run form shows real fields and a bad key or type is refused by name when the config is
loaded — and checks every section with ``vardax_core``'s own validation (ranges, choices)
at the same time. Nothing is defined twice: a field added to a ``vardax_core`` config
appears here.

A variant (``type: mlp`` / ``conv1d`` …, a solver) is a ``Literal`` tag field; unions of
variants are discriminated on it (:func:`tagged_union`).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Tag, create_model, model_validator


class Section(BaseModel):
    """A typed config section; ``core()`` is what ``vardax_core`` receives."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: the tag field of a variant ("type", "solver"), excluded from ``settings()``
    _tag: typing.ClassVar[str | None] = None
    #: ``settings() -> vardax_core object`` (a dataclass config) or a resolver that raises
    _check: typing.ClassVar[Callable[[dict], Any] | None] = None

    @model_validator(mode="after")
    def _vardax_core_accepts(self):
        check = type(self)._check
        if check is not None:
            check(self.settings())  # raises ValueError naming the setting
        return self

    def settings(self) -> dict[str, Any]:
        """The section as a plain mapping, without its variant tag."""
        return self.model_dump(mode="python", exclude={self._tag} if self._tag else None)

    def core(self):
        """The ``vardax_core`` object of this section (a dataclass config), or the
        settings mapping for a defaults table."""
        check = type(self)._check
        return check(self.settings()) if getattr(check, "_returns_core", False) else self.settings()


def _make(name: str, fields: dict[str, tuple], doc: str, check, tag: tuple[str, str] | None) -> type[Section]:
    if tag is not None:
        fields = {tag[0]: (Literal[tag[1]], tag[1]), **fields}
    model = create_model(name, __base__=Section, __doc__=doc, **fields)
    model._tag = tag[0] if tag else None
    model._check = check
    return model


def mirror_dataclass(cls: type, *, name: str | None = None, tag: tuple[str, str] | None = None,
                     doc: str | None = None) -> type[Section]:
    """A section with the init fields of the dataclass ``cls`` (their types and defaults);
    validated by constructing ``cls`` (``from_dict`` when it has one), which ``core()``
    returns."""
    hints = typing.get_type_hints(cls)
    fields = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            fields[f.name] = (hints[f.name], f.default)
        elif f.default_factory is not dataclasses.MISSING:
            fields[f.name] = (hints[f.name], f.default_factory())
        else:
            fields[f.name] = (hints[f.name], ...)

    def check(settings: dict):
        return cls.from_dict(settings) if hasattr(cls, "from_dict") else cls(**settings)

    check._returns_core = True
    return _make(name or f"{cls.__name__}Section", fields, doc or (cls.__doc__ or "").strip(), check, tag)


def mirror_defaults(name: str, defaults: dict[str, Any], resolve: Callable[[dict], Any] | None = None, *,
                    tag: tuple[str, str] | None = None, doc: str = "") -> type[Section]:
    """A section with the keys of a ``vardax_core`` defaults table (types from the default
    values: a float default takes ints too); ``resolve(settings)`` is ``vardax_core``'s
    check of the values."""
    fields = {k: (type(v), v) for k, v in defaults.items()}
    return _make(name, fields, doc, resolve, tag)


def tagged_union(variants: dict[str, type[Section]], tag: str, default: str | None = None):
    """The union of ``variants`` discriminated on their ``tag`` field (``default`` when a
    mapping leaves it out)."""

    def which(value):
        if isinstance(value, dict):
            return value.get(tag, default)
        return getattr(value, tag, None)

    members = tuple(Annotated[m, Tag(k)] for k, m in variants.items())
    return Annotated[Union[members], Discriminator(which)]  # noqa: UP007 (a runtime tuple of members)
