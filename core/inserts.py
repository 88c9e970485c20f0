"""The columns, placeholders and parameters Django would INSERT for a model instance, for hand-written
statements that insert rows as part of a larger one (``INSERT ... SELECT`` inside a ``WITH``)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.db.models import Field, Model
from django.db.models.base import ModelState
from django.db.models.sql import InsertQuery
from django.utils import timezone

M = TypeVar("M", bound=Model)


def unsaved(model: type[M], **values: Any) -> M:
    """``model(**values)`` for the request hot paths: a new instance with each field's default
    (evaluated per instance, as ``Model.__init__`` does) and then ``values``, without ``__init__``'s
    per-field argument handling and its pre_init/post_init signals (no receiver is connected for the
    project's models: tests/core/test_inserts.py checks). ``values`` are plain field values by
    attribute name (``conversation_id``, not ``conversation``)."""
    template, factories, attnames = _defaults(model)
    unknown = values.keys() - attnames
    if unknown:
        raise TypeError(f"{model.__name__} has no field attribute {', '.join(sorted(unknown))}")
    instance = model.__new__(model)
    data = template.copy()  # constant defaults, in the fields' order (after ``_state``, as __init__ sets them)
    data["_state"] = ModelState()
    for attname, factory in factories:
        data[attname] = factory()
    data.update(values)
    instance.__dict__ = data
    return instance


@functools.cache
def _defaults(
    model: type[Model],
) -> tuple[dict[str, Any], tuple[tuple[str, Callable[[], Any]], ...], frozenset[str]]:
    """The model's instance dictionary with every constant default in place (a non-callable ``default``,
    or no default at all: None or ""), the fields whose default is made per instance (a callable
    ``default``, a ``db_default``), and every field's attribute name. A constant is the very object
    ``Field.get_default`` returns each time, so sharing it is what ``Model.__init__`` does too."""
    fields = model._meta.concrete_fields
    template: dict[str, Any] = {"_state": None}
    factories = []
    for field in fields:
        template[field.attname] = None
        if field.has_default() and callable(field.default):
            factories.append((field.attname, field.default))  # what get_default() would call
        elif not field.has_default() and field.has_db_default():
            factories.append((field.attname, field.get_default))  # an expression per instance
        else:
            template[field.attname] = field.get_default()
    return template, tuple(factories), frozenset(f.attname for f in fields)


def insert_parts(instance: Model, *, exclude: frozenset[str] = frozenset()) -> tuple[list[str], list[str], list[Any]]:
    """Quoted column names, placeholders and adapted parameters of ``instance``'s INSERT (defaults,
    ``auto_now`` and JSON adaptation as ``save()`` would apply them), without the primary key and the
    ``exclude`` columns (the caller supplies those as SQL expressions).

    The usual case (plain values, fields without a placeholder of their own) is the work the INSERT
    compiler does per field, without building a query and a compiler for each row (on the request
    hot paths that was most of the Python an inbound webhook spent building its statement); anything
    else goes through the compiler itself. A value the field would pass to the driver unchanged (a
    ``str`` for a text field, an ``int`` for an integer one, an aware ``datetime``, ``None``) is taken
    as it is, a ``dict`` or ``list`` for a JSON field is adapted as the field adapts it, and an
    ``auto_now`` date-time is stamped as ``pre_save`` stamps it (PostgreSQL with USE_TZ: one
    ``timezone.now()`` per row), all without the field's three-step preparation."""
    fields, columns, shortcuts = _insert_fields(type(instance), exclude)
    params: list[Any] = []
    now: datetime | None = None
    for field, shortcut in zip(fields, shortcuts, strict=True):
        if shortcut is _NOW:  # auto_now(_add): pre_save's own value, one per row
            if now is None:
                now = timezone.now()
            setattr(instance, field.attname, now)
            params.append(now)
            continue
        if shortcut is None:  # a field whose preparation changes values
            value = field.pre_save(instance, add=True)
        else:
            value = getattr(instance, field.attname)
            plain_types, wrap = shortcut
            if value is None:
                params.append(None)
                continue
            plain = type(value) in plain_types or (plain_types is _TEXT and isinstance(value, str))
            if plain and (type(value) is not datetime or value.tzinfo is not None):  # naive: Django warns
                params.append(value if wrap is None else wrap(value))
                continue
        if hasattr(value, "resolve_expression"):
            return _compiled_insert_parts(instance, fields, columns)
        params.append(field.get_db_prep_save(value, connection=connections[DEFAULT_DB_ALIAS]))
    return list(columns), ["%s"] * len(fields), params


#: Field classes (exactly these, not subclasses) whose ``get_db_prep_save`` returns a value of these
#: types unchanged on PostgreSQL and SQLite, except integers, which Django wraps in psycopg's sized
#: integer types where the backend has them (so the server sees int4 for an IntegerField whatever
#: the value). Date-times only when aware and USE_TZ (naive ones warn and are made aware; SQLite's
#: adapter turns them into text).
_TEXT = (str,)  # and its subclasses (the models' TextChoices members): CharField.to_python keeps them
_PLAIN_TYPES: dict[type[Field], tuple[type, ...]] = {
    models.CharField: _TEXT,
    models.TextField: _TEXT,
    models.SmallIntegerField: (int,),
    models.IntegerField: (int,),
    models.BigIntegerField: (int,),
    models.PositiveIntegerField: (int,),
    models.PositiveSmallIntegerField: (int,),
    models.BooleanField: (bool,),
    models.ForeignKey: (int,),
    models.UUIDField: (uuid.UUID,),
}


@functools.cache
def _insert_fields(
    model: type[Model], exclude: frozenset[str]
) -> tuple[tuple[Field, ...], tuple[str, ...], tuple[_Shortcut | None, ...]]:
    fields = tuple(
        field for field in model._meta.local_concrete_fields if not field.primary_key and field.column not in exclude
    )
    if any(hasattr(field, "get_placeholder") for field in fields):
        raise TypeError(f"{model.__name__}: a field with its own placeholder needs the INSERT compiler")
    return (
        fields,
        tuple(connection.ops.quote_name(str(field.column)) for field in fields),
        tuple(_plain_types(field) for field in fields),
    )


#: The value types a field passes on as they are, and what wraps them (None: nothing).
_Shortcut = tuple[tuple[type, ...], Callable[[Any], Any] | None]


#: The shortcut of an ``auto_now``/``auto_now_add`` date-time on PostgreSQL with USE_TZ: ``pre_save``
#: sets the field to ``timezone.now()`` (aware) and the driver takes it as it is. Every such field of
#: one row gets the same instant (``save()`` reads the clock once per field, microseconds apart).
_NOW: Any = object()


def _plain_types(field: Field) -> _Shortcut | None:
    # PostgreSQL's driver takes an aware datetime as it is; elsewhere Django's preparation converts it.
    aware_datetimes_pass = settings.USE_TZ and connection.vendor == "postgresql"
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return _NOW if type(field) is models.DateTimeField and aware_datetimes_pass else None
    if type(field) is models.JSONField:
        # A dict or a list is adapted as JSONField.get_db_prep_value adapts it (its get_prep_value
        # changes neither); None is SQL NULL, as its get_db_prep_save makes it.
        return (dict, list), functools.partial(connection.ops.adapt_json_value, encoder=field.encoder)
    if type(field) is models.DateTimeField:
        return ((datetime,), None) if aware_datetimes_pass else None
    if type(field) is models.UUIDField and not connection.features.has_native_uuid_field:
        return None
    types = _PLAIN_TYPES.get(type(field))
    if types is None:
        return None
    sized = getattr(connection.ops, "integerfield_type_map", {})
    return types, sized.get(field.get_internal_type())


def _compiled_insert_parts(
    instance: Model, fields: tuple[Field, ...], columns: tuple[str, ...]
) -> tuple[list[str], list[str], list[Any]]:
    query = InsertQuery(type(instance))
    query.insert_values(fields, [instance])
    compiler = query.get_compiler(connection=connection)
    row = [compiler.prepare_value(field, compiler.pre_save_val(field, instance)) for field in fields]
    (placeholders,), (params,) = compiler.assemble_as_sql(fields, [row])
    return list(columns), list(placeholders), list(params)
