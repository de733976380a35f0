"""Statements written out once rather than compiled by the ORM at every call.

On the send path a statement the ORM builds costs a few hundred microseconds of Python, more
than PostgreSQL takes to run it. The few that run for every message are written here, once
per database, from the models' own table and column names.
"""

from __future__ import annotations

import functools
from typing import Any, cast

from django.db import connections, models, router

__all__ = ["row_exists"]


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
