"""The columns, placeholders and parameters Django would INSERT for a model instance, for hand-written
statements that insert rows as part of a larger one (``INSERT ... SELECT`` inside a ``WITH``)."""

from __future__ import annotations

import functools
from typing import Any

from django.db import connection
from django.db.models import Field, Model
from django.db.models.sql import InsertQuery


def insert_parts(instance: Model, *, exclude: frozenset[str] = frozenset()) -> tuple[list[str], list[str], list[Any]]:
    """Quoted column names, placeholders and adapted parameters of ``instance``'s INSERT (defaults,
    ``auto_now`` and JSON adaptation as ``save()`` would apply them), without the primary key and the
    ``exclude`` columns (the caller supplies those as SQL expressions).

    The usual case (plain values, fields without a placeholder of their own) is the work the INSERT
    compiler does per field, without building a query and a compiler for each row (on the request
    hot paths that was most of the Python an inbound webhook spent building its statement); anything
    else goes through the compiler itself."""
    fields, columns = _insert_fields(type(instance), exclude)
    params = []
    for field in fields:
        value = field.pre_save(instance, add=True)
        if hasattr(value, "resolve_expression"):
            return _compiled_insert_parts(instance, fields, columns)
        params.append(field.get_db_prep_save(value, connection=connection))
    return list(columns), ["%s"] * len(fields), params


@functools.cache
def _insert_fields(model: type[Model], exclude: frozenset[str]) -> tuple[tuple[Field, ...], tuple[str, ...]]:
    fields = tuple(
        field for field in model._meta.local_concrete_fields if not field.primary_key and field.column not in exclude
    )
    if any(hasattr(field, "get_placeholder") for field in fields):
        raise TypeError(f"{model.__name__}: a field with its own placeholder needs the INSERT compiler")
    return fields, tuple(connection.ops.quote_name(str(field.column)) for field in fields)


def _compiled_insert_parts(
    instance: Model, fields: tuple[Field, ...], columns: tuple[str, ...]
) -> tuple[list[str], list[str], list[Any]]:
    query = InsertQuery(type(instance))
    query.insert_values(fields, [instance])
    compiler = query.get_compiler(connection=connection)
    row = [compiler.prepare_value(field, compiler.pre_save_val(field, instance)) for field in fields]
    (placeholders,), (params,) = compiler.assemble_as_sql(fields, [row])
    return list(columns), list(placeholders), list(params)
