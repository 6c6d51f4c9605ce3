"""SQL side of the flat face attributes (``schemas.attributes``): the columns that events and episodes carry
(migration ``0145_face_attributes.sql``) and the conditions of ``AttributeFilters`` over them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Column, Float, String, Table
from sqlalchemy.sql.elements import ColumnElement

from schemas.attributes import AttributeFields, AttributeFilters

EVENT_COLUMNS = ("gender", "age", "mask", "emotion", "liveness")
EPISODE_COLUMNS = ("gender", "age", "mask", "emotion")


def attribute_columns(names: tuple[str, ...]) -> list[Column[Any]]:
    """Fresh SQLAlchemy columns for a table description (``names`` from the tuples above)."""
    kinds: dict[str, Any] = {"gender": String(8), "age": Float(precision=53), "mask": Boolean,
                             "emotion": String(16), "liveness": Float(precision=53)}
    return [Column(name, kinds[name]) for name in names]


def attribute_values(fields: AttributeFields, names: tuple[str, ...]) -> dict[str, Any]:
    """The column values of one face's attribute fields."""
    return {name: getattr(fields, name) for name in names}


def attribute_conditions(table: Table, f: AttributeFilters) -> list[ColumnElement[bool]]:
    """SQL conditions of the attribute filters over ``table``'s attribute columns (unknown never passes)."""
    c = table.c
    conds: list[ColumnElement[bool]] = []
    if f.gender is not None:
        conds.append(c.gender == f.gender)
    if f.mask is not None:
        conds.append(c.mask.is_(f.mask))
    if f.emotion is not None:
        conds.append(c.emotion == f.emotion)
    if f.age_min is not None:
        conds.append(c.age >= f.age_min)
    if f.age_max is not None:
        conds.append(c.age <= f.age_max)
    return conds
