"""Writing many model rows fast, for the demo data generator: unsaved model
instances whose primary keys are already set, written with `executemany` on
SQLite and COPY on PostgreSQL (ten times cheaper than `bulk_create`, which
compiles one large statement per batch and runs every field's save hooks).

Values are converted the way Django itself stores them (`connection.ops`), so
what is read back is what the ORM would have written. Ids are handed out by
`ids_reserve`, not by the database: nobody else may insert into these tables
while it runs."""

import datetime
import json
from operator import attrgetter

from django.core.management.color import no_style
from django.db import connection, models
from django.db.models import Max


def ids_reserve(model, count: int) -> range:
    """`count` unused primary keys of `model`, after the largest one there."""
    largest = model.objects.aggregate(largest=Max("pk"))["largest"] or 0
    return range(largest + 1, largest + 1 + count)


def rows_write(model, objects) -> int:
    """INSERT these unsaved instances as they are (pk included)."""
    fields = model._meta.concrete_fields
    values = attrgetter(*(f.attname for f in fields))
    converted = [(i, c) for i, c in enumerate(map(_converter, fields)) if c is not None]
    rows = []
    for obj in objects:
        row = list(values(obj))
        for i, convert in converted:
            row[i] = convert(row[i])
        rows.append(row)
    if not rows:
        return 0
    table, columns = model._meta.db_table, ", ".join(f.column for f in fields)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            # Table and column names come from the model, never from input.
            sql = f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"  # noqa: S608
            cursor.executemany(sql, rows)
    return len(rows)


def sequences_reset(models_) -> None:
    """PostgreSQL's id sequences past the ids `ids_reserve` handed out."""
    statements = connection.ops.sequence_reset_sql(no_style(), models_)
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def statistics_refresh(models_) -> None:
    """ANALYZE on PostgreSQL, as autovacuum would do a while after a bulk load:
    until then the planner believes the tables are empty and picks the status
    index over the date index for the history page (180 ms instead of 9 ms at
    1M). SQLite is left as Django leaves it, without statistics."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for model in models_:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")


def _converter(field):
    """How a value is written, or None when it goes as it is."""
    ops = connection.ops
    if isinstance(field, models.JSONField):
        return _JSON.encode
    if isinstance(field, models.DateTimeField):
        return _sqlite_datetime if connection.vendor == "sqlite" else ops.adapt_datetimefield_value
    if isinstance(field, models.DecimalField):
        return lambda value: ops.adapt_decimalfield_value(
            value, field.max_digits, field.decimal_places
        )
    if isinstance(field, models.UUIDField) and connection.vendor == "sqlite":
        return lambda value: value.hex if value is not None else None
    if isinstance(field, models.FileField):
        return lambda value: str(value or "")
    return None


_JSON = json.JSONEncoder()


def _sqlite_datetime(value):
    """What Django's SQLite backend writes (naive UTC, `str()`), without its
    per-value settings checks (a tenth of the generator's time)."""
    if value is None:
        return None
    return str(value.astimezone(datetime.UTC).replace(tzinfo=None))
