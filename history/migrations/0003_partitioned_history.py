"""History at desk scale: day partitions, typed columns plus `extra`, compact keys (issue 16).

Django has no partitioned tables: the six history tables are created here in SQL and are
`managed = False` models. The rows of the old tables are moved through the recorder's own write
path (`history.services.staged_rows_write`), so a migrated row is stored exactly as a recorded
one; minute candles are rebuilt from the moved ticks. Rows logged before row keys keep their
stream entry id as their key (writer id 0, `n = ms << 20 | seq`). Not reversible.
"""

from typing import Any

from django.db import migrations, models

_OLD = ("markettick", "orderevent", "positionsnapshot", "accountsnapshot", "strategysnapshot")
_SHARED_8 = "time timestamptz NOT NULL, n bigint NOT NULL, seq bigint NOT NULL"
_SHARED_4 = (
    "writer_id integer NOT NULL, received_us integer, updated_format smallint, "
    "received_at timestamptz"
)
# Columns in alignment order: 8-byte ones first, then 4-byte, then variable-length, so that no
# row pays padding between them (PostgreSQL aligns each column on its type's boundary).
_TABLES = {
    "history_markettick": (
        "last_price float8 NOT NULL, bid_price float8, ask_price float8, volume_24h float8, "
        "high_24h float8, low_24h float8, symbol_id integer NOT NULL",
        "",
        "symbol_id, time",
    ),
    "history_orderevent": (
        "price float8, quantity float8 NOT NULL, filled float8, created_at timestamptz, "
        "symbol_id integer NOT NULL",
        "order_id varchar(64) NOT NULL, side varchar(4) NOT NULL, order_type text, "
        "status text NOT NULL, ",
        "symbol_id, time",
    ),
    "history_positionsnapshot": (
        "quantity float8 NOT NULL, entry_price float8, mark_price float8, "
        "unrealized_pnl float8, realized_pnl float8, liquidation_price float8, "
        "symbol_id integer NOT NULL",
        "side text, ",
        "symbol_id, time",
    ),
    "history_accountsnapshot": (
        "total_balance float8 NOT NULL, available_balance float8, margin_used float8, "
        "unrealized_pnl float8, realized_pnl float8",
        "balances jsonb, ",
        "time",
    ),
    "history_strategysnapshot": (
        "pnl float8, trades bigint, win_rate float8, symbol_id integer NOT NULL",
        "name text, status text NOT NULL, ",
        "symbol_id, time",
    ),
}


def _create_tables() -> list[str]:
    statements = [f"ALTER TABLE history_{name} RENAME TO history_{name}_v2" for name in _OLD]
    statements.append("ALTER TABLE history_minutecandle RENAME TO history_minutecandle_v2")
    statements.append("ALTER INDEX history_minutecandle_pkey RENAME TO history_minutecandle_v2_pkey")
    for table, (fixed, variable, index) in _TABLES.items():
        statements.append(
            f"CREATE TABLE {table} ({_SHARED_8}, {fixed}, {_SHARED_4}, {variable}extra jsonb) "
            "PARTITION BY RANGE (time)"
        )
        # On the parent: every partition gets it. The API's reads ("one key, a time range,
        # newest first") and the recorder's replay-key lookup both use it.
        statements.append(f"CREATE INDEX {table}_key_time ON {table} ({index})")
    statements.append(
        """CREATE TABLE history_minutecandle (
            symbol_id integer NOT NULL, bucket timestamptz NOT NULL,
            open float8 NOT NULL, open_time timestamptz NOT NULL, open_n bigint NOT NULL,
            high float8 NOT NULL, low float8 NOT NULL,
            close float8 NOT NULL, close_time timestamptz NOT NULL, close_n bigint NOT NULL,
            volume float8, ticks bigint NOT NULL,
            open_writer integer NOT NULL, close_writer integer NOT NULL,
            PRIMARY KEY (symbol_id, bucket)
        )"""
    )
    # Retention only (candles are written in bucket order): see history_prune.
    statements.append(
        "CREATE INDEX history_minutecandle_bucket ON history_minutecandle USING brin (bucket)"
    )
    return statements


_STAGE_OLD = """
    INSERT INTO history_staging (writer, n, channel, seq, received_at, record)
    SELECT CASE WHEN k THEN ('x' || lpad(split_part(row_key, '-', 1), 16, '0'))::bit(64)::bigint
                ELSE 0 END,
           CASE WHEN k THEN split_part(row_key, '-', 2)::bigint
                ELSE stream_ms << 20 | stream_seq END,
           %s, seq, received_at, record
    FROM (SELECT *, coalesce(row_key ~ '^[0-9a-f]{1,16}-[0-9]{1,18}$', false) AS k
          FROM history_%s_v2) AS old
"""
_CHANNELS = {
    "markettick": "market_data",
    "orderevent": "orders",
    "positionsnapshot": "positions",
    "accountsnapshot": "account",
    "strategysnapshot": "strategies",
}


def _move_rows(apps: Any, schema_editor: Any) -> None:
    from history.batch_sql import STAGING_TABLE
    from history.services import staged_rows_write, staging_create

    conn = schema_editor.connection.connection  # the psycopg connection, in the migration's
    with conn.cursor() as cursor:  # transaction (staging_create's is a savepoint)
        for name in _OLD:
            cursor.execute(
                f"SELECT count(*) FROM history_{name}_v2 "  # noqa: S608 -- fixed names
                "WHERE (row_key IS NULL OR row_key !~ '^[0-9a-f]{1,16}-[0-9]{1,18}$') "
                "AND (stream_seq >= 1048576 OR stream_ms >= 8796093022208)"
            )
            (unkeyable,) = cursor.fetchone()
            if unkeyable:
                raise RuntimeError(f"history_{name}: {unkeyable} rows whose entry id is no key")
    staging_create(conn=conn)
    with conn.cursor() as cursor:
        for name, channel in _CHANNELS.items():
            cursor.execute(_STAGE_OLD % ("%s", name), [channel])
        cursor.execute("SELECT pg_advisory_xact_lock(0)")  # nothing else writes meanwhile
        staged_rows_write(cursor, set())
        cursor.execute(f"DROP TABLE {STAGING_TABLE}")


class Migration(migrations.Migration):

    dependencies = [
        ('history', '0002_row_key'),
    ]

    operations = [
        migrations.CreateModel(
            name='Symbol',
            fields=[
                ('id', models.AutoField(primary_key=True, serialize=False)),
                ('name', models.CharField(max_length=64, unique=True)),
            ],
            options={
                'indexes': [],
                'constraints': [],
            },
        ),
        migrations.CreateModel(
            name='Writer',
            fields=[
                ('id', models.AutoField(primary_key=True, serialize=False)),
                ('writer', models.BigIntegerField(help_text="The row keys' writer part, signed.", unique=True)),
            ],
            options={
                'indexes': [],
                'constraints': [],
            },
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(_create_tables())],
            state_operations=[
                *(migrations.DeleteModel(name) for name in (
                    "MarketTick", "OrderEvent", "PositionSnapshot", "AccountSnapshot",
                    "StrategySnapshot", "MinuteCandle",
                )),
                migrations.CreateModel(
                    name='MarketTick',
                    fields=[
                        ('pk', models.CompositePrimaryKey('writer_id', 'n', 'time', blank=True, editable=False, primary_key=True, serialize=False)),
                        ('time', models.DateTimeField(help_text='updated_at if the record has one, else received_at.')),
                        ('writer_id', models.IntegerField(help_text='history_writer id of the row key (0: legacy).')),
                        ('n', models.BigIntegerField(help_text="The row key's counter part.")),
                        ('seq', models.BigIntegerField(help_text="The state's seq after this change.")),
                        ('received_us', models.IntegerField(help_text='received_at - time, microseconds.', null=True)),
                        ('received_at', models.DateTimeField(help_text='When received_us cannot hold it.', null=True)),
                        ('updated_format', models.SmallIntegerField(help_text='How updated_at was spelled (UPDATED_FORMATS); NULL: absent.', null=True)),
                        ('extra', models.JSONField(help_text='Record fields the typed columns do not hold.', null=True)),
                        ('symbol_id', models.IntegerField()),
                        ('last_price', models.FloatField()),
                        ('bid_price', models.FloatField(null=True)),
                        ('ask_price', models.FloatField(null=True)),
                        ('volume_24h', models.FloatField(null=True)),
                        ('high_24h', models.FloatField(null=True)),
                        ('low_24h', models.FloatField(null=True)),
                    ],
                    options={
                        'db_table': 'history_markettick',
                        'managed': False,
                        'indexes': [],
                        'constraints': [],
                    },
                ),
                migrations.CreateModel(
                    name='OrderEvent',
                    fields=[
                        ('pk', models.CompositePrimaryKey('writer_id', 'n', 'time', blank=True, editable=False, primary_key=True, serialize=False)),
                        ('time', models.DateTimeField(help_text='updated_at if the record has one, else received_at.')),
                        ('writer_id', models.IntegerField(help_text='history_writer id of the row key (0: legacy).')),
                        ('n', models.BigIntegerField(help_text="The row key's counter part.")),
                        ('seq', models.BigIntegerField(help_text="The state's seq after this change.")),
                        ('received_us', models.IntegerField(help_text='received_at - time, microseconds.', null=True)),
                        ('received_at', models.DateTimeField(help_text='When received_us cannot hold it.', null=True)),
                        ('updated_format', models.SmallIntegerField(help_text='How updated_at was spelled (UPDATED_FORMATS); NULL: absent.', null=True)),
                        ('extra', models.JSONField(help_text='Record fields the typed columns do not hold.', null=True)),
                        ('symbol_id', models.IntegerField()),
                        ('order_id', models.CharField(max_length=64)),
                        ('side', models.CharField(max_length=4)),
                        ('order_type', models.TextField(null=True)),
                        ('price', models.FloatField(null=True)),
                        ('quantity', models.FloatField()),
                        ('filled', models.FloatField(null=True)),
                        ('status', models.TextField()),
                        ('created_at', models.DateTimeField(null=True)),
                    ],
                    options={
                        'db_table': 'history_orderevent',
                        'managed': False,
                        'indexes': [],
                        'constraints': [],
                    },
                ),
                migrations.CreateModel(
                    name='PositionSnapshot',
                    fields=[
                        ('pk', models.CompositePrimaryKey('writer_id', 'n', 'time', blank=True, editable=False, primary_key=True, serialize=False)),
                        ('time', models.DateTimeField(help_text='updated_at if the record has one, else received_at.')),
                        ('writer_id', models.IntegerField(help_text='history_writer id of the row key (0: legacy).')),
                        ('n', models.BigIntegerField(help_text="The row key's counter part.")),
                        ('seq', models.BigIntegerField(help_text="The state's seq after this change.")),
                        ('received_us', models.IntegerField(help_text='received_at - time, microseconds.', null=True)),
                        ('received_at', models.DateTimeField(help_text='When received_us cannot hold it.', null=True)),
                        ('updated_format', models.SmallIntegerField(help_text='How updated_at was spelled (UPDATED_FORMATS); NULL: absent.', null=True)),
                        ('extra', models.JSONField(help_text='Record fields the typed columns do not hold.', null=True)),
                        ('symbol_id', models.IntegerField()),
                        ('side', models.TextField(null=True)),
                        ('quantity', models.FloatField()),
                        ('entry_price', models.FloatField(null=True)),
                        ('mark_price', models.FloatField(null=True)),
                        ('unrealized_pnl', models.FloatField(null=True)),
                        ('realized_pnl', models.FloatField(null=True)),
                        ('liquidation_price', models.FloatField(null=True)),
                    ],
                    options={
                        'db_table': 'history_positionsnapshot',
                        'managed': False,
                        'indexes': [],
                        'constraints': [],
                    },
                ),
                migrations.CreateModel(
                    name='AccountSnapshot',
                    fields=[
                        ('pk', models.CompositePrimaryKey('writer_id', 'n', 'time', blank=True, editable=False, primary_key=True, serialize=False)),
                        ('time', models.DateTimeField(help_text='updated_at if the record has one, else received_at.')),
                        ('writer_id', models.IntegerField(help_text='history_writer id of the row key (0: legacy).')),
                        ('n', models.BigIntegerField(help_text="The row key's counter part.")),
                        ('seq', models.BigIntegerField(help_text="The state's seq after this change.")),
                        ('received_us', models.IntegerField(help_text='received_at - time, microseconds.', null=True)),
                        ('received_at', models.DateTimeField(help_text='When received_us cannot hold it.', null=True)),
                        ('updated_format', models.SmallIntegerField(help_text='How updated_at was spelled (UPDATED_FORMATS); NULL: absent.', null=True)),
                        ('extra', models.JSONField(help_text='Record fields the typed columns do not hold.', null=True)),
                        ('total_balance', models.FloatField()),
                        ('available_balance', models.FloatField(null=True)),
                        ('margin_used', models.FloatField(null=True)),
                        ('unrealized_pnl', models.FloatField(null=True)),
                        ('realized_pnl', models.FloatField(null=True)),
                        ('balances', models.JSONField(null=True)),
                    ],
                    options={
                        'db_table': 'history_accountsnapshot',
                        'managed': False,
                        'indexes': [],
                        'constraints': [],
                    },
                ),
                migrations.CreateModel(
                    name='StrategySnapshot',
                    fields=[
                        ('pk', models.CompositePrimaryKey('writer_id', 'n', 'time', blank=True, editable=False, primary_key=True, serialize=False)),
                        ('time', models.DateTimeField(help_text='updated_at if the record has one, else received_at.')),
                        ('writer_id', models.IntegerField(help_text='history_writer id of the row key (0: legacy).')),
                        ('n', models.BigIntegerField(help_text="The row key's counter part.")),
                        ('seq', models.BigIntegerField(help_text="The state's seq after this change.")),
                        ('received_us', models.IntegerField(help_text='received_at - time, microseconds.', null=True)),
                        ('received_at', models.DateTimeField(help_text='When received_us cannot hold it.', null=True)),
                        ('updated_format', models.SmallIntegerField(help_text='How updated_at was spelled (UPDATED_FORMATS); NULL: absent.', null=True)),
                        ('extra', models.JSONField(help_text='Record fields the typed columns do not hold.', null=True)),
                        ('symbol_id', models.IntegerField(help_text='history_symbol id of the strategy id.')),
                        ('name', models.TextField(null=True)),
                        ('status', models.TextField()),
                        ('pnl', models.FloatField(null=True)),
                        ('trades', models.BigIntegerField(null=True)),
                        ('win_rate', models.FloatField(null=True)),
                    ],
                    options={
                        'db_table': 'history_strategysnapshot',
                        'managed': False,
                        'indexes': [],
                        'constraints': [],
                    },
                ),
                migrations.CreateModel(
                    name='MinuteCandle',
                    fields=[
                        ('pk', models.CompositePrimaryKey('symbol_id', 'bucket', blank=True, editable=False, primary_key=True, serialize=False)),
                        ('symbol_id', models.IntegerField()),
                        ('bucket', models.DateTimeField(help_text='Start of the minute (UTC).')),
                        ('open', models.FloatField()),
                        ('open_time', models.DateTimeField()),
                        ('open_writer', models.IntegerField()),
                        ('open_n', models.BigIntegerField(help_text='With open_writer: the tick the open came from.')),
                        ('high', models.FloatField()),
                        ('low', models.FloatField()),
                        ('close', models.FloatField()),
                        ('close_time', models.DateTimeField()),
                        ('close_writer', models.IntegerField()),
                        ('close_n', models.BigIntegerField(help_text='With close_writer: the tick the close came from.')),
                        ('volume', models.FloatField(help_text="The closing tick's volume_24h.", null=True)),
                        ('ticks', models.BigIntegerField()),
                    ],
                    options={
                        'db_table': 'history_minutecandle',
                        'managed': False,
                        'indexes': [],
                        'constraints': [],
                    },
                ),
            ],
        ),
        migrations.RunPython(_move_rows),
        migrations.RunSQL(
            [f"DROP TABLE history_{name}_v2" for name in (*_OLD, "minutecandle")]
        ),
    ]
