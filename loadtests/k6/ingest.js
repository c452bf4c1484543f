// POST /ingest/{source}: batches of seed events into a source declared with
// connector = 'http' (rest_k6.sh creates `pushed` and a kpi_1m over it).
//   k6 run -e BASE=http://127.0.0.1:8080 -e RATE=200 -e BATCH=100 -e DURATION=60s loadtests/k6/ingest.js
import http from 'k6/http';
import { check } from 'k6';

const BASE = __ENV.BASE || 'http://127.0.0.1:8080';
const RATE = parseInt(__ENV.RATE || '200');
const BATCH = parseInt(__ENV.BATCH || '100');
const SOURCE = __ENV.SOURCE || 'pushed';

export const options = {
  scenarios: {
    ingest: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: __ENV.DURATION || '60s',
      preAllocatedVUs: 20,
      maxVUs: 200,
    },
  },
  thresholds: {
    http_req_failed: ['rate==0'],
    // Each request is fsynced before it is answered.
    http_req_duration: ['p(99)<50'],
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(99)', 'max'],
};

function uuid() {
  const h = () => Math.floor(Math.random() * 0x10000).toString(16).padStart(4, '0');
  return `${h()}${h()}-${h()}-4${h().slice(1)}-${h()}-${h()}${h()}${h()}`;
}

export default function () {
  const now = Date.now();
  const lines = [];
  for (let i = 0; i < BATCH; i++) {
    lines.push(JSON.stringify({
      event_id: uuid(),
      source: `src-${String(Math.floor(Math.random() * 20)).padStart(4, '0')}`,
      timestamp: new Date(now - Math.floor(Math.random() * 500)).toISOString(),
      attributes: {
        user_id: `u${Math.floor(Math.random() * 1000)}`,
        metric: Math.random() * 100,
        status: Math.random() < 0.02 ? 'error' : 'ok',
      },
    }));
  }
  const res = http.post(`${BASE}/ingest/${SOURCE}`, lines.join('\n'), {
    headers: { 'Content-Type': 'application/x-ndjson' },
  });
  check(res, { 'status 202': (r) => r.status === 202 });
}
