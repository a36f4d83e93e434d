"""Tables of the time-series store, created by a migration, per database engine.

PostgreSQL: raw points in tables partitioned by time (ticks monthly, bars and metrics yearly;
partitions are created ahead by `ensure_partitions`, never by a DEFAULT partition, so a write can
never land in a catch-all that would block creating the right partition later). SQLite (embedded
mode): the same tables, unpartitioned, with times as integer microseconds.

Every table carries organization_id so the store can be distributed by tenant (Citus) later.
"""

from datetime import UTC, datetime

from django.db import connection

RAW_TABLES = {"trade": "watchlists_tick", "bar": "watchlists_bar", "metric": "watchlists_metric"}
ROLLUP_TABLE = "watchlists_rollup"
FEATURE_TABLE = "watchlists_feature"
FEATURE_COLUMNS = [
    "vwap_5m", "vwap_15m", "realized_vol_5m", "realized_vol_15m", "price_momentum_1m", "price_momentum_5m",
    "volume_5m", "volume_ratio", "trade_count_1m", "avg_trade_size_1m",
]


def partitioned() -> bool:
    """Whether the store runs on PostgreSQL: tables partitioned by time, written with COPY and
    arrays, analysed after imports. The store's one question about its engine (with
    reader.ts_us_sql for how times are kept); SQLite (embedded mode) has plain tables and none of it."""
    return connection.vendor == "postgresql"


# Partition span per raw table: ticks are dense, bars and metrics sparse.
PARTITION_SPAN = {"watchlists_tick": "month", "watchlists_bar": "year", "watchlists_metric": "year"}

_VALUE_COLUMNS = {
    "watchlists_tick": "price double precision NOT NULL, size double precision NOT NULL, trade_id text",
    "watchlists_bar": ("open double precision NOT NULL, high double precision NOT NULL, "
                       "low double precision NOT NULL, close double precision NOT NULL, "
                       "volume double precision NOT NULL"),
    "watchlists_metric": "value double precision NOT NULL",
}


def _pg_ddl() -> list[str]:
    key = "organization_id bigint NOT NULL, series_id bigint NOT NULL, ts timestamptz NOT NULL"
    features = ", ".join(f"{c} double precision" for c in FEATURE_COLUMNS)
    return [
        f"CREATE TABLE watchlists_tick ({key}, {_VALUE_COLUMNS['watchlists_tick']}) PARTITION BY RANGE (ts)",
        "CREATE INDEX watchlists_tick_series_ts ON watchlists_tick (series_id, ts)",
        # Ticks are not unique by time (identical prints share a millisecond); only a source trade id
        # identifies one.
        "CREATE UNIQUE INDEX watchlists_tick_trade_id ON watchlists_tick (series_id, ts, trade_id) "
        "WHERE trade_id IS NOT NULL",
        f"CREATE TABLE watchlists_bar ({key}, {_VALUE_COLUMNS['watchlists_bar']}, PRIMARY KEY (series_id, ts)) "
        "PARTITION BY RANGE (ts)",
        f"CREATE TABLE watchlists_metric ({key}, {_VALUE_COLUMNS['watchlists_metric']}, "
        "PRIMARY KEY (series_id, ts)) PARTITION BY RANGE (ts)",
        f"CREATE TABLE {ROLLUP_TABLE} ({key}, resolution integer NOT NULL, open double precision, "
        "high double precision, low double precision, close double precision, volume double precision, "
        "trade_count bigint, vwap double precision, PRIMARY KEY (series_id, resolution, ts))",
        f"CREATE TABLE {FEATURE_TABLE} ({key}, {features}, PRIMARY KEY (series_id, ts))",
    ]


def _sqlite_ddl() -> list[str]:
    key = "organization_id integer NOT NULL, series_id integer NOT NULL, ts integer NOT NULL"
    features = ", ".join(f"{c} real" for c in FEATURE_COLUMNS)
    return [
        f"CREATE TABLE watchlists_tick ({key}, price real NOT NULL, size real NOT NULL, trade_id text)",
        "CREATE INDEX watchlists_tick_series_ts ON watchlists_tick (series_id, ts)",
        "CREATE UNIQUE INDEX watchlists_tick_trade_id ON watchlists_tick (series_id, ts, trade_id) "
        "WHERE trade_id IS NOT NULL",
        f"CREATE TABLE watchlists_bar ({key}, open real NOT NULL, high real NOT NULL, low real NOT NULL, "
        "close real NOT NULL, volume real NOT NULL, PRIMARY KEY (series_id, ts))",
        f"CREATE TABLE watchlists_metric ({key}, value real NOT NULL, PRIMARY KEY (series_id, ts))",
        f"CREATE TABLE {ROLLUP_TABLE} ({key}, resolution integer NOT NULL, open real, high real, low real, "
        "close real, volume real, trade_count integer, vwap real, PRIMARY KEY (series_id, resolution, ts))",
        f"CREATE TABLE {FEATURE_TABLE} ({key}, {features}, PRIMARY KEY (series_id, ts))",
    ]


def create_tables(schema_editor) -> None:
    ddl = _pg_ddl() if schema_editor.connection.vendor == "postgresql" else _sqlite_ddl()
    for statement in ddl:
        schema_editor.execute(statement)


def drop_tables(schema_editor) -> None:
    for table in (FEATURE_TABLE, ROLLUP_TABLE, *RAW_TABLES.values()):
        schema_editor.execute(f"DROP TABLE IF EXISTS {table}")


def partition_bounds(table: str, ts: datetime) -> tuple[str, datetime, datetime]:
    """(partition name, start, end) of the partition of `table` holding time `ts` (UTC)."""
    if PARTITION_SPAN[table] == "month":
        start = datetime(ts.year, ts.month, 1, tzinfo=UTC)
        end = datetime(ts.year + (ts.month == 12), ts.month % 12 + 1, 1, tzinfo=UTC)
        return f"{table}_p{ts.year:04d}_{ts.month:02d}", start, end
    start = datetime(ts.year, 1, 1, tzinfo=UTC)
    return f"{table}_p{ts.year:04d}", start, datetime(ts.year + 1, 1, 1, tzinfo=UTC)


def partitions_between(table: str, first: datetime, last: datetime) -> list[tuple[str, datetime, datetime]]:
    out, cursor = [], first
    while True:
        bounds = partition_bounds(table, cursor)
        out.append(bounds)
        if bounds[2] > last:
            return out
        cursor = bounds[2]
