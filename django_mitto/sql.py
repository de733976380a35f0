"""Statements written out once rather than compiled by the ORM at every call.

On the send path a statement the ORM builds costs a few hundred microseconds of Python, more
than PostgreSQL takes to run it. The few that run for every message are written here, once
per database, from the models' own table and column names.
"""

from __future__ import annotations

import datetime
import functools
import json
import uuid
from collections.abc import Iterable
from typing import Any, cast

from django.db import connections, models, router
from django.db.models.signals import post_save, pre_save

__all__ = ["array", "copy_text", "insert", "insert_applying", "row_exists", "update_if"]


@functools.lru_cache(maxsize=32)
def _exists_sql(
    model: type[models.Model], equal: tuple[str, ...], null: tuple[str, ...], using: str
) -> str:
    quote = connections[using].ops.quote_name
    meta = model._meta

    def column(name: str) -> str:
        return quote(cast(str, cast(models.Field, meta.get_field(name)).column))

    conditions = [f"{column(name)} = %s" for name in equal]
    conditions += [f"{column(name)} IS NULL" for name in null]
    return f"SELECT 1 FROM {quote(meta.db_table)} WHERE {' AND '.join(conditions)} LIMIT 1"


def row_exists(model: type[models.Model], *, null: tuple[str, ...] = (), **equal: Any) -> bool:
    """``model.objects.filter(**equal, <each of null>__isnull=True).exists()`` (plain values
    only: strings and numbers)."""
    using = router.db_for_read(model)
    sql = _exists_sql(model, tuple(equal), null, using)
    with connections[using].cursor() as cursor:
        cursor.execute(sql, list(equal.values()))
        return cursor.fetchone() is not None


@functools.lru_cache(maxsize=32)
def _insert_sql(
    model: type[models.Model],
    unless_model: type[models.Model] | None,
    unless: tuple[str, ...],
    using: str,
) -> tuple[str, bool]:
    """The INSERT of :func:`insert` and whether it returns the new primary key."""
    db = connections[using]
    quote = db.ops.quote_name
    meta = model._meta
    columns = ", ".join(quote(str(f.column)) for f in _insert_fields(model))
    placeholders = ", ".join(["%s"] * len(_insert_fields(model)))
    if unless_model is None:
        sql = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({placeholders})"
    else:
        # INSERT ... SELECT: the values take the columns' types as in VALUES, and the row is
        # written only when the condition holds, in the same statement.
        blocked = _exists_sql(unless_model, unless, (), using)
        sql = (
            f"INSERT INTO {quote(meta.db_table)} ({columns}) SELECT {placeholders} "
            f"WHERE NOT EXISTS ({blocked})"
        )
    returning = bool(db.features.can_return_columns_from_insert)
    if returning:
        sql += f" RETURNING {quote(str(meta.pk.column))}"
    return sql, returning


@functools.lru_cache(maxsize=32)
def _insert_fields(model: type[models.Model]) -> tuple[models.Field, ...]:
    return tuple(f for f in model._meta.concrete_fields if not f.primary_key)


def insert(
    instance: models.Model,
    *,
    unless: tuple[type[models.Model], dict[str, Any]] | None = None,
) -> bool:
    """``instance.save()`` for a new row (no ``save()`` override runs), in one INSERT written
    out once: on the send path the ORM took longer compiling it than the database took to run
    it. Sends ``pre_save`` and ``post_save`` as ``save()`` does, the latter only when the row
    was written.

    ``unless=(Model, {"field": value, ...})`` writes the row only when no row of ``Model``
    has those values (plain values: strings and numbers), checked in the same statement.
    Returns whether the row was written.
    """
    model = type(instance)
    meta = model._meta
    using = router.db_for_write(model, instance=instance)
    db = connections[using]
    pre_save.send(sender=model, instance=instance, raw=False, using=using, update_fields=None)
    values = [f.get_db_prep_save(f.pre_save(instance, True), db) for f in _insert_fields(model)]
    unless_model, conditions = unless if unless is not None else (None, {})
    sql, returning = _insert_sql(model, unless_model, tuple(conditions), using)
    if unless_model is not None and not returning:  # SQLite before 3.35: two statements
        if row_exists(unless_model, **conditions):
            return False
        conditions = {}
        sql, returning = _insert_sql(model, None, (), using)
    with db.cursor() as cursor:
        cursor.execute(sql, [*values, *conditions.values()])
        if returning:
            row = cursor.fetchone()
            if row is None:
                return False
            pk = row[0]
        else:
            pk = db.ops.last_insert_id(cursor, meta.db_table, str(meta.pk.column))
    instance.pk = pk
    instance._state.adding = False
    instance._state.db = using
    post_save.send(
        sender=model, instance=instance, created=True, update_fields=None, raw=False, using=using
    )
    return True


def array(values: Iterable[Any]) -> str:
    """A PostgreSQL array literal of ``values`` (None, bools, ints, strings, datetimes), passed
    as one parameter cast to the array's type (``= ANY(%s::bigint[])``): psycopg would adapt
    a list element by element, which for a bulk chunk's hundreds of ids costs more than the
    statement itself. Raises ``TypeError`` for any other value."""
    parts = []
    for value in values:
        if value is None:
            parts.append("NULL")
        elif isinstance(value, bool):
            parts.append("t" if value else "f")
        elif isinstance(value, int):
            parts.append(str(int(value)))
        elif isinstance(value, str):
            parts.append('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')
        elif isinstance(value, datetime.datetime):
            parts.append('"' + value.isoformat() + '"')
        else:
            raise TypeError(f"No array literal for {type(value).__name__}")
    return "{" + ",".join(parts) + "}"


#: COPY's text format: these characters are written as backslash escapes.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(value: Any) -> str:
    """``value`` (a value prepared for PostgreSQL by its field) as a column of ``COPY ... FROM
    STDIN`` in text format. Raises ``TypeError`` for a value of another kind."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int):  # psycopg's Int2, Int4... too: their repr is not the number
        return str(int(value))
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, _JSON_WRAPPERS):  # a JSONField's value, as psycopg 3 sends it
        dumps = getattr(value, "dumps", None) or json.dumps
        return cast(str, dumps(getattr(value, "obj", None))).translate(_COPY_ESCAPES)
    raise TypeError(f"No COPY text for {type(value).__name__}")


try:
    from psycopg.types.json import Json, Jsonb
except ImportError:  # psycopg 2, or no PostgreSQL at all
    _JSON_WRAPPERS: tuple[type, ...] = ()
else:
    _JSON_WRAPPERS = (Json, Jsonb)


@functools.lru_cache(maxsize=8)
def _fields_by_name(model: type[models.Model]) -> dict[str, models.Field]:
    return {f.name: f for f in model._meta.concrete_fields}


@functools.lru_cache(maxsize=64)
def _update_if_sql(
    model: type[models.Model], names: tuple[str, ...], condition: str, using: str
) -> str:
    meta = model._meta
    quote = connections[using].ops.quote_name
    fields = _fields_by_name(model)
    assignments = ", ".join(f"{quote(str(fields[name].column))} = %s" for name in names)
    return (
        f"UPDATE {quote(meta.db_table)} SET {assignments} "
        f"WHERE {quote(str(meta.pk.column))} = %s AND {quote(str(fields[condition].column))} = %s"
    )


def update_if(
    model: type[models.Model], pk: Any, condition: tuple[str, Any], values: dict[str, Any]
) -> tuple[str, list[Any]]:
    """``model.objects.filter(pk=pk, <field>=<value>).update(**values)`` for ``condition =
    (field, value)``, as one UPDATE and its parameters, written out once per set of columns:
    the ORM took longer compiling it than the database took running it."""
    using = router.db_for_write(model)
    db = connections[using]
    fields = _fields_by_name(model)
    params = [fields[name].get_db_prep_save(value, db) for name, value in values.items()]
    name, expected = condition
    return _update_if_sql(model, tuple(values), name, using), [*params, pk, expected]


@functools.lru_cache(maxsize=32)
def _insert_applying_sql(model: type[models.Model], flag: str, update_sql: str, using: str) -> str:
    """The statement of :func:`insert_applying`: ``update_sql`` in a WITH, the INSERT after it,
    the ``flag`` column chosen by whether the UPDATE changed a row."""
    meta = model._meta
    quote = connections[using].ops.quote_name
    fields = _insert_fields(model)
    placeholders = [
        "CASE WHEN EXISTS (SELECT 1 FROM changed) THEN %s ELSE %s END"
        if field.name == flag
        else "%s"
        for field in fields
    ]
    return (
        f"WITH changed AS ({update_sql} RETURNING 1) "
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(str(f.column)) for f in fields)}) "
        f"SELECT {', '.join(placeholders)} "
        f"RETURNING {quote(str(meta.pk.column))}, EXISTS (SELECT 1 FROM changed)"
    )


def insert_applying(
    instance: models.Model,
    update: tuple[str, list[Any]],
    flag: tuple[str, Any, Any],
) -> bool:
    """PostgreSQL: :func:`insert` a new row and run ``update`` (an ``UPDATE`` of another table
    and its parameters) in ONE statement, so that both commit together without a transaction
    of their own (``WITH changed AS (UPDATE ... RETURNING 1) INSERT ... SELECT ...``). The
    column of ``flag = (field name, value if the UPDATE changed a row, value if not)`` gets
    the value that fits; the instance's attribute is set to it. Returns whether the UPDATE
    changed a row. ``pre_save`` and ``post_save`` are sent as by :func:`insert`."""
    model = type(instance)
    using = router.db_for_write(model, instance=instance)
    db = connections[using]
    pre_save.send(sender=model, instance=instance, raw=False, using=using, update_fields=None)
    name, if_changed, otherwise = flag
    values: list[Any] = []
    for field in _insert_fields(model):
        if field.name == name:
            values += [field.get_db_prep_save(v, db) for v in (if_changed, otherwise)]
        else:
            values.append(field.get_db_prep_save(field.pre_save(instance, True), db))
    update_sql, update_params = update
    sql = _insert_applying_sql(model, name, update_sql, using)
    with db.cursor() as cursor:
        cursor.execute(sql, [*update_params, *values])
        pk, changed = cast(tuple[Any, bool], cursor.fetchone())
    instance.pk = pk
    setattr(instance, name, if_changed if changed else otherwise)
    instance._state.adding = False
    instance._state.db = using
    post_save.send(
        sender=model, instance=instance, created=True, update_fields=None, raw=False, using=using
    )
    return changed
