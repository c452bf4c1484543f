"""The steps of the real-client harness for psycopg 3 and asyncpg (server/tests/clients.rs).

Usage: py_clients.py psycopg|asyncpg HOST PORT DBNAME
Prints one line per step: `step<TAB>json`, the same against Weir as against PostgreSQL.
"""

import asyncio
import datetime
import json
import os
import sys

# Against Weir the harness logs in with SCRAM over TLS (tests/clients.rs sets these).
PASSWORD = os.environ.get("WEIR_CLIENT_PASSWORD")
SSLMODE = os.environ.get("WEIR_CLIENT_SSLMODE", "prefer")

SOURCE = "src-0001"
SINCE = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc)
# The same statement in each driver's placeholder style.
PARAMS_SQL = (
    "SELECT source, count, window_start FROM kpi_1m "
    "WHERE source = {0} AND window_start >= {1} ORDER BY window_start LIMIT 3"
)
PREPARED_SQL = "SELECT count(*) AS n, max(count) AS top FROM kpi_1m WHERE source = {0} AND count > {1}"
BINARY_SQL = (
    "SELECT window_start, source, count, avg_metric, error_rate FROM kpi_1m "
    "ORDER BY window_start, source LIMIT 4"
)
SIMPLE_SQL = "SELECT 1 AS one, 'it''s' AS t, NULL::text AS n, 2.5::float8 AS f, true AS b"
META_SQL = (
    "SELECT column_name, data_type FROM information_schema.columns "
    "WHERE table_name = 'kpi_1m' ORDER BY ordinal_position"
)
ERRORS = ["SELECT * FROM no_such_view", "SELECT nonsense FROM kpi_1m", "SELEC 1"]


def out(step, value):
    print(f"{step}\t{json.dumps(value, default=str, sort_keys=True)}", flush=True)


def cell(v):
    if isinstance(v, datetime.datetime):
        return v.astimezone(datetime.timezone.utc).isoformat()
    if isinstance(v, float):
        return round(v, 9)
    return v


def rows(rs):
    return [[cell(v) for v in r] for r in rs]


def run_psycopg(host, port, db):
    import psycopg

    conn = psycopg.connect(
        host=host,
        port=port,
        dbname=db,
        user="weir" if db == "weir" else "postgres",
        password=PASSWORD,
        sslmode=SSLMODE,
        autocommit=True,
    )
    out("connect", conn.info.server_version >= 90600)
    cur = conn.cursor()
    cur.execute(SIMPLE_SQL)
    out("simple", {"rows": rows(cur.fetchall()), "columns": [(d.name, d.type_code) for d in cur.description]})
    cur.execute(PARAMS_SQL.format("%s", "%s"), (SOURCE, SINCE))
    out("params", rows(cur.fetchall()))
    results = []
    for i in range(6):
        cur.execute(PREPARED_SQL.format("%s", "%s"), (SOURCE, i * 100), prepare=True)
        results.append(rows(cur.fetchall()))
    out("prepared_x6", results)
    bcur = conn.cursor(binary=True)
    bcur.execute(BINARY_SQL)
    out("binary", {"rows": rows(bcur.fetchall()), "columns": [(d.name, d.type_code) for d in bcur.description]})
    bcur.execute(PARAMS_SQL.format("%s", "%s"), (SOURCE, SINCE))
    out("binary_params", rows(bcur.fetchall()))
    codes = []
    for sql in ERRORS:
        try:
            cur.execute(sql)
            codes.append("no error")
        except psycopg.Error as e:
            codes.append(e.sqlstate)
    out("errors", codes)
    cur.execute("SELECT 1")
    out("after_errors", cur.fetchall())
    conn.autocommit = False
    with conn.transaction():
        cur.execute("SELECT count(*) FROM kpi_1m")
        n = cur.fetchone()[0]
    out("transaction", n > 0)
    state = []
    try:
        with conn.transaction():
            cur.execute("SELECT * FROM no_such_view")
    except psycopg.Error as e:
        state.append(e.sqlstate)
    cur.execute("SELECT 2")
    state.append(cur.fetchone()[0])
    conn.commit()
    # A failed statement inside an explicit transaction aborts it until ROLLBACK.
    cur.execute("BEGIN")
    try:
        cur.execute("SELECT * FROM no_such_view")
    except psycopg.Error as e:
        state.append(e.sqlstate)
    try:
        cur.execute("SELECT 3")
        state.append("ran")
    except psycopg.Error as e:
        state.append(e.sqlstate)
    conn.rollback()
    cur.execute("SELECT 4")
    state.append(cur.fetchone()[0])
    conn.rollback()
    out("transaction_errors", state)
    conn.autocommit = True
    cur.execute(META_SQL)
    out("metadata", rows(cur.fetchall()))
    conn.close()


async def run_asyncpg(host, port, db):
    import asyncpg

    conn = await asyncpg.connect(
        host=host,
        port=port,
        database=db,
        user="weir" if db == "weir" else "postgres",
        password=PASSWORD,
        ssl="require" if SSLMODE == "require" else False,
    )
    out("connect", conn.get_server_version().major >= 9)
    stmt = await conn.prepare(SIMPLE_SQL)
    out("simple", {"rows": rows(await stmt.fetch()), "columns": [(a.name, a.type.oid) for a in stmt.get_attributes()]})
    out("params", rows(await conn.fetch(PARAMS_SQL.format("$1", "$2"), SOURCE, SINCE)))
    stmt = await conn.prepare(PREPARED_SQL.format("$1", "$2"))
    out("prepared_x6", [rows(await stmt.fetch(SOURCE, i * 100)) for i in range(6)])
    stmt = await conn.prepare(BINARY_SQL)
    out("binary", {"rows": rows(await stmt.fetch()), "columns": [(a.name, a.type.oid) for a in stmt.get_attributes()]})
    out("binary_params", rows(await conn.fetch(PARAMS_SQL.format("$1", "$2"), SOURCE, SINCE)))
    codes = []
    for sql in ERRORS:
        try:
            await conn.fetch(sql)
            codes.append("no error")
        except asyncpg.PostgresError as e:
            codes.append(e.sqlstate)
    out("errors", codes)
    out("after_errors", rows(await conn.fetch("SELECT 1")))
    async with conn.transaction():
        n = await conn.fetchval("SELECT count(*) FROM kpi_1m")
    out("transaction", n > 0)
    state = []
    try:
        async with conn.transaction():
            await conn.fetch("SELECT * FROM no_such_view")
    except asyncpg.PostgresError as e:
        state.append(e.sqlstate)
    state.append(await conn.fetchval("SELECT 2"))
    tr = conn.transaction()
    await tr.start()
    try:
        await conn.fetch("SELECT * FROM no_such_view")
    except asyncpg.PostgresError as e:
        state.append(e.sqlstate)
    try:
        await conn.fetch("SELECT 3")
        state.append("ran")
    except asyncpg.PostgresError as e:
        state.append(e.sqlstate)
    await tr.rollback()
    state.append(await conn.fetchval("SELECT 4"))
    out("transaction_errors", state)
    out("metadata", rows(await conn.fetch(META_SQL)))
    await conn.close()


def main():
    driver, host, port, db = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    if driver == "psycopg":
        run_psycopg(host, port, db)
    else:
        asyncio.run(run_asyncpg(host, port, db))


main()
