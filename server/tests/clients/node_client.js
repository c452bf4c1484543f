// The steps of the real-client harness for node-postgres (server/tests/clients.rs).
// Usage: node node_client.js HOST PORT DBNAME (with NODE_PATH holding `pg`).
// Prints one line per step: `step<TAB>json`, the same against Weir as against PostgreSQL.
const { Client } = require('pg');

const SOURCE = 'src-0001';
const SINCE = new Date(Date.UTC(2024, 4, 1, 12, 30));
const PARAMS_SQL = 'SELECT source, count, window_start FROM kpi_1m ' +
  'WHERE source = $1 AND window_start >= $2 ORDER BY window_start LIMIT 3';
const PREPARED_SQL = 'SELECT count(*) AS n, max(count) AS top FROM kpi_1m WHERE source = $1 AND count > $2';
const SIMPLE_SQL = "SELECT 1 AS one, 'it''s' AS t, NULL::text AS n, 2.5::float8 AS f, true AS b";
const META_SQL = 'SELECT column_name, data_type FROM information_schema.columns ' +
  "WHERE table_name = 'kpi_1m' ORDER BY ordinal_position";
const ERRORS = ['SELECT * FROM no_such_view', 'SELECT nonsense FROM kpi_1m', 'SELEC 1'];

function out(step, value) {
  process.stdout.write(`${step}\t${JSON.stringify(value)}\n`);
}

const cell = (v) => (v instanceof Date ? v.toISOString() : v);
const rows = (r) => r.rows.map((row) => row.map(cell));
const columns = (r) => r.fields.map((f) => [f.name, f.dataTypeID]);

async function main() {
  const [host, port, database] = process.argv.slice(2);
  const user = database === 'weir' ? 'weir' : 'postgres';
  // Against Weir the harness logs in with SCRAM over TLS (tests/clients.rs sets these).
  const password = process.env.WEIR_CLIENT_PASSWORD;
  const ssl = process.env.WEIR_CLIENT_SSLMODE === 'require' ? { rejectUnauthorized: false } : false;
  const client = new Client({ host, port: Number(port), database, user, password, ssl });
  await client.connect();
  out('connect', true);
  let r = await client.query({ text: SIMPLE_SQL, rowMode: 'array' });
  out('simple', { rows: rows(r), columns: columns(r) });
  r = await client.query({ text: PARAMS_SQL, values: [SOURCE, SINCE], rowMode: 'array' });
  out('params', rows(r));
  const results = [];
  for (let i = 0; i < 6; i++) {
    r = await client.query({ name: 'top', text: PREPARED_SQL, values: [SOURCE, i * 100], rowMode: 'array' });
    results.push(rows(r));
  }
  out('prepared_x6', results);
  const codes = [];
  for (const sql of ERRORS) {
    try {
      await client.query(sql);
      codes.push('no error');
    } catch (e) {
      codes.push(e.code);
    }
  }
  out('errors', codes);
  r = await client.query({ text: 'SELECT 1', rowMode: 'array' });
  out('after_errors', rows(r));
  const state = [];
  await client.query('BEGIN');
  r = await client.query({ text: 'SELECT count(*) > 0 FROM kpi_1m', rowMode: 'array' });
  state.push(rows(r)[0][0]);
  await client.query('COMMIT');
  await client.query('BEGIN');
  try {
    await client.query('SELECT * FROM no_such_view');
  } catch (e) {
    state.push(e.code);
  }
  try {
    await client.query('SELECT 3');
    state.push('ran');
  } catch (e) {
    state.push(e.code);
  }
  await client.query('ROLLBACK');
  r = await client.query({ text: 'SELECT 4', rowMode: 'array' });
  state.push(rows(r)[0][0]);
  out('transaction_errors', state);
  r = await client.query({ text: META_SQL, rowMode: 'array' });
  out('metadata', rows(r));
  await client.end();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
