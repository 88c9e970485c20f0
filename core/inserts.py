"""The columns, placeholders and parameters Django would INSERT for a model instance, for hand-written
statements that insert rows as part of a larger one (``INSERT ... SELECT`` inside a ``WITH``)."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import Model
from django.db.models.sql import InsertQuery


def insert_parts(instance: Model, *, exclude: frozenset[str] = frozenset()) -> tuple[list[str], list[str], list[Any]]:
    """Quoted column names, placeholders and adapted parameters of ``instance``'s INSERT (defaults,
    ``auto_now`` and JSON adaptation as ``save()`` would apply them), without the primary key and the
    ``exclude`` columns (the caller supplies those as SQL expressions)."""
    model = type(instance)
    fields = [
        field for field in model._meta.local_concrete_fields if not field.primary_key and field.column not in exclude
    ]
    query = InsertQuery(model)
    query.insert_values(fields, [instance])
    compiler = query.get_compiler(connection=connection)
    row = [compiler.prepare_value(field, compiler.pre_save_val(field, instance)) for field in fields]
    (placeholders,), (params,) = compiler.assemble_as_sql(fields, [row])
    columns = [connection.ops.quote_name(str(field.column)) for field in fields]
    return columns, list(placeholders), list(params)
