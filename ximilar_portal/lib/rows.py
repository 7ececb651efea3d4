"""Writing many model rows fast, where `bulk_create` costs too much: it
compiles every field of every row through the ORM (about 0.2 ms a row), which
was a third of the engine's time per batch and most of the demo generator's.

- `rows_write`: a bulk load (demo data) of instances whose primary keys are
  already set, by `ids_reserve`: executemany on SQLite, COPY on PostgreSQL.
  Nobody else may insert into these tables while it runs.
- `rows_insert`: unsaved instances, ids from the database (set on them).
- `upsert_statements` (insert, or update the row with the same unique key)
  and `insert_statements` (ids not needed): built first, run later with
  `statements_run`, so that a transaction holds its lock only while they run.

Values are converted the way Django itself stores them (`connection.ops`), and
`auto_now`/`auto_now_add` are applied, so what is read back is what the ORM
would have written. No signals are sent, as with `bulk_create`."""

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
    rows = _rows(fields, objects, copy=True)
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


def rows_insert(model, objects) -> list:
    """INSERT these unsaved instances; each gets the id the database gave it."""
    objects = list(objects)
    fields = _fields_but_auto_id(model)
    for chunk in _chunks(objects, len(fields)):
        sql, params = _insert_sql(model, fields, chunk)
        with connection.cursor() as cursor:
            cursor.execute(f"{sql} RETURNING {_quote(model._meta.pk.column)}", params)
            ids = [row[0] for row in cursor.fetchall()]
        for obj, pk in zip(chunk, ids, strict=True):
            obj.pk = pk
    return objects


# Statements built ahead, to run later inside a transaction: converting the
# values is most of the work, and a write transaction on SQLite holds the one
# write lock from its first statement, so every other writer waits meanwhile.


def upsert_statements(model, objects, *, unique: str, update: list[str]) -> list:
    """INSERTs that UPDATE the `update` fields of the row whose `unique` field
    matches instead (ON CONFLICT, on SQLite and PostgreSQL alike), not yet run."""
    objects = list(objects)
    fields = model._meta.concrete_fields
    conflict = _quote(model._meta.get_field(unique).column)
    columns = [_quote(model._meta.get_field(name).column) for name in update]
    assignments = ", ".join(f"{c} = excluded.{c}" for c in columns)
    statements = []
    for chunk in _chunks(objects, len(fields)):
        sql, params = _insert_sql(model, fields, chunk)
        statements.append((f"{sql} ON CONFLICT ({conflict}) DO UPDATE SET {assignments}", params))
    return statements


def insert_statements(model, objects) -> list:
    """INSERTs of unsaved instances whose ids nobody needs, not yet run."""
    objects = list(objects)
    fields = _fields_but_auto_id(model)
    return [_insert_sql(model, fields, chunk) for chunk in _chunks(objects, len(fields))]


def statements_run(statements) -> None:
    with connection.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)


def _fields_but_auto_id(model) -> list:
    """The columns an INSERT writes when the database hands out the id."""
    return [f for f in model._meta.concrete_fields if f is not model._meta.auto_field]


def _insert_sql(model, fields, objects) -> tuple[str, list]:
    """One multi-row INSERT. Names come from the model, never from input."""
    for field in fields:
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            for obj in objects:
                field.pre_save(obj, add=True)  # sets the attribute, as save() would
    params = []
    for row in _rows(fields, objects, copy=False):
        params.extend(row)
    placeholders = "(" + ", ".join(["%s"] * len(fields)) + ")"
    columns = ", ".join(_quote(f.column) for f in fields)
    sql = f"INSERT INTO {_quote(model._meta.db_table)} ({columns}) VALUES "  # noqa: S608
    return sql + ", ".join([placeholders] * len(objects)), params


def _rows(fields, objects, *, copy: bool) -> list[list]:
    """Each object's values in `fields` order, converted as Django stores them:
    one attrgetter per object, a converter only where a field needs one."""
    values = attrgetter(*(f.attname for f in fields))
    converters = [(i, _converter(f, copy)) for i, f in enumerate(fields)]
    converters = [(i, convert) for i, convert in converters if convert is not None]
    rows = []
    for obj in objects:
        row = list(values(obj)) if len(fields) > 1 else [values(obj)]
        for i, convert in converters:
            row[i] = convert(row[i])
        rows.append(row)
    return rows


def _chunks(objects, columns: int):
    """Statements under every database's limit on parameters (SQLite: 32,766)."""
    size = max(1, 10_000 // columns)
    for start in range(0, len(objects), size):
        yield objects[start : start + size]


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


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


def _converter(field, copy=True):
    """How a value is written, or None when it goes as it is. COPY takes JSON
    as text; a statement parameter on PostgreSQL must be typed jsonb."""
    ops = connection.ops
    if isinstance(field, models.JSONField):
        if copy:
            return _JSON.encode
        return lambda value: ops.adapt_json_value(value, field.encoder)
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
