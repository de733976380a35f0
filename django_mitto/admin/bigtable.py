"""The changelist for tables of millions of rows: a paginator that never counts the whole
table, a date hierarchy that reads only the bounds, and the mixin that puts them together.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar, Literal, cast

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.main import PAGE_VAR
from django.core.paginator import EmptyPage, Paginator
from django.db import connections
from django.db.models import Field, Max, Min, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.functional import cached_property

# -- counting without counting everything ----------------------------------------------------------


class EstimatedCountPaginator(Paginator):
    """A paginator whose ``count`` stays cheap however big the table is.

    ``COUNT(*)`` runs over a subquery limited to ``count_limit + 1`` rows, ``count_limit``
    being ``pages_ahead`` pages past the page shown: below that the count is exact. Above it,
    an unfiltered list on PostgreSQL shows the planner's row estimate (``pg_class.reltuples``,
    read in the same query), and any other list shows "more than ``count_limit``".

    The trade-off: a big list says "about 1,000,000" or "more than 1,100" rather than an exact
    figure, and its last pages are reached ``pages_ahead`` pages at a time (the limit moves
    along with the page shown). After ``ANALYZE`` the estimate is usually within a few percent;
    when it is stale, the last pages it promises may be empty or a few rows may lie beyond
    them, and any page number is accepted rather than refused. In exchange a page load costs
    the same few milliseconds at a thousand rows or a hundred million, where an exact
    ``COUNT(*)`` reads the whole table (or index) on every page load.

    ``count_is_estimate`` and ``count_is_partial`` tell the templates which case applies.
    """

    #: Pages counted exactly beyond the current one.
    pages_ahead = 10

    def __init__(
        self, object_list: Any, per_page: int, *args: Any, page_number: int = 1, **kwargs: Any
    ) -> None:
        super().__init__(object_list, per_page, *args, **kwargs)
        self.count_limit = (max(page_number, 1) + self.pages_ahead) * self.per_page
        self.count_is_estimate = False
        self.count_is_partial = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return super().count
        limited = queryset.order_by().values("pk")[: self.count_limit + 1]
        connection = connections[queryset.db]
        estimate = None
        if self._can_estimate(queryset, connection.vendor):
            sql, params = limited.query.get_compiler(using=queryset.db).as_sql()
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT COUNT(*), (SELECT reltuples::bigint FROM pg_class"
                    f" WHERE oid = %s::regclass) FROM ({sql}) AS limited",
                    [connection.ops.quote_name(queryset.model._meta.db_table), *params],
                )
                counted, estimate = cursor.fetchone()
        else:
            counted = limited.count()
        if counted <= self.count_limit:
            return counted
        # -1 (PostgreSQL 14+) or 0 means "never analysed".
        if estimate is not None and estimate > self.count_limit:
            self.count_is_estimate = True
            return int(estimate)
        self.count_is_partial = True
        return counted

    @staticmethod
    def _can_estimate(queryset: QuerySet, vendor: str) -> bool:
        """The table's row estimate is this queryset's count: PostgreSQL, no filter."""
        query = queryset.query
        return vendor == "postgresql" and not (
            query.where or query.distinct or query.is_sliced or query.combinator
        )

    def validate_number(self, number: Any) -> int:
        try:
            return super().validate_number(number)
        except EmptyPage:
            # An estimate may fall short of the real count: let any page be asked for.
            if self.count_is_estimate and int(number) >= 1:
                return int(number)
            raise

    def page(self, number: Any) -> Any:
        number = self.validate_number(number)
        if not self.count_is_estimate:
            return super().page(number)
        bottom = (number - 1) * self.per_page
        # Paginator's own page factory (private, so not in the type stubs).
        return self._get_page(self.object_list[bottom : bottom + self.per_page], number, self)  # type: ignore[attr-defined]


class _DateHierarchyQuerySet(QuerySet):
    """A queryset whose ``datetimes()`` finds the buckets present without a DISTINCT over all rows.

    The admin's date hierarchy asks for the distinct years (or months, or days) of the listed
    rows; the database answers that by truncating the date of every row. Here the range comes
    from ``MIN``/``MAX`` (an index lookup each) and each candidate bucket is checked with one
    more index lookup, all candidates in one query.
    """

    #: Above this many candidate buckets, let the database do it the usual way.
    max_buckets = 100

    def aggregate(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        result = super().aggregate(*args, **kwargs)
        # The date hierarchy asks for MIN and MAX of its field just before datetimes():
        # remember them so that datetimes() need not ask again.
        if not args and set(kwargs) == {"first", "last"}:
            self._bounds = {(kwargs["first"], kwargs["last"]): result}
        return result

    def datetimes(
        self,
        field_name: str,
        kind: Literal["year", "month", "week", "day", "hour", "minute", "second"],
        order: Literal["ASC", "DESC"] = "ASC",
        tzinfo: Any = None,
        **kwargs: Any,
    ) -> Any:
        query = self.query
        if (
            kind not in ("year", "month", "day")
            or tzinfo is not None
            or kwargs
            or query.distinct
            or query.is_sliced
            or query.combinator
            or connections[self.db].vendor not in ("postgresql", "sqlite", "mysql")
        ):
            return super().datetimes(field_name, kind, order, tzinfo, **kwargs)
        first, last = Min(field_name), Max(field_name)
        bounds = getattr(self, "_bounds", {}).get((first, last))
        if bounds is None:
            bounds = self.aggregate(first=first, last=last)
        if bounds["first"] is None:
            return []
        starts = _bucket_starts(_local(bounds["first"]), _local(bounds["last"]), kind)
        if len(starts) > self.max_buckets:
            return super().datetimes(field_name, kind, order, tzinfo)
        ends = [*starts[1:], _next_bucket(starts[-1], kind)]
        present = self._present(field_name, list(zip(starts, ends)))
        found = [start for start, hit in zip(starts, present) if hit]
        return found if order == "ASC" else found[::-1]

    def _present(
        self, field_name: str, ranges: list[tuple[dt.datetime, dt.datetime]]
    ) -> list[bool]:
        """For each [start, end) range, whether any row of this queryset falls in it.

        One ``SELECT (SELECT MIN(...) ...), (SELECT MIN(...) ...), ...``; the queryset is compiled
        once and its SQL reused for every range (compiling one ORM subquery per range costs more
        than running the query). ``MIN`` rather than ``EXISTS``: the planner then walks the index
        from the start of the range, where for ``EXISTS`` it may bet on a sequential scan meeting
        a matching row early, and lose badly when the rows are stored in date order.
        """
        connection = connections[self.db]
        field = cast(Field, self.model._meta.get_field(field_name))  # a date field, not a relation
        sql, params = self.order_by().values(field_name).query.get_compiler(self.db).as_sql()
        # A concrete field always has a column.
        column = "mitto_probe." + connection.ops.quote_name(cast(str, field.column))
        probe = (
            f"(SELECT MIN({column}) FROM ({sql}) AS mitto_probe"
            f" WHERE {column} >= %s AND {column} < %s)"
        )
        values: list[Any] = []
        for start, end in ranges:
            values += [*params, field.get_db_prep_value(start, connection)]
            values.append(field.get_db_prep_value(end, connection))
        with connection.cursor() as cursor:
            cursor.execute("SELECT " + ", ".join([probe] * len(ranges)), values)
            return [first is not None for first in cursor.fetchone()]


def _local(value: dt.datetime) -> dt.datetime:
    return timezone.localtime(value) if timezone.is_aware(value) else value


def _make(year: int, month: int = 1, day: int = 1) -> dt.datetime:
    value = dt.datetime(year, month, day)
    return timezone.make_aware(value) if settings.USE_TZ else value


def _next_bucket(start: dt.datetime, kind: str) -> dt.datetime:
    if kind == "year":
        return _make(start.year + 1)
    if kind == "month":
        return _make(start.year + start.month // 12, start.month % 12 + 1)
    following = start.date() + dt.timedelta(days=1)
    return _make(following.year, following.month, following.day)


def _bucket_starts(first: dt.datetime, last: dt.datetime, kind: str) -> list[dt.datetime]:
    start = {
        "year": lambda: _make(first.year),
        "month": lambda: _make(first.year, first.month),
        "day": lambda: _make(first.year, first.month, first.day),
    }[kind]()
    starts: list[dt.datetime] = []
    while start <= last and len(starts) <= _DateHierarchyQuerySet.max_buckets:
        starts.append(start)
        start = _next_bucket(start, kind)
    return starts


class BigTableAdminMixin:
    """Changelist settings for tables that grow without bound: no full COUNT, no facets."""

    paginator: ClassVar[type[EstimatedCountPaginator]] = EstimatedCountPaginator
    show_full_result_count = False
    if hasattr(admin, "ShowFacets"):  # Django 5.0+: facet counts would COUNT per filter choice
        show_facets = admin.ShowFacets.NEVER

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: QuerySet,
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> Paginator:
        try:
            page_number = int(request.GET.get(PAGE_VAR, 1))
        except ValueError:
            page_number = 1
        return self.paginator(
            queryset, per_page, orphans, allow_empty_first_page, page_number=page_number
        )
