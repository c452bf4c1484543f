// GET /kpi at a constant arrival rate over the demo's 20 sources.
//   k6 run -e BASE=http://127.0.0.1:8080 -e RATE=5000 -e DURATION=60s loadtests/k6/kpi.js
import http from 'k6/http';
import { check } from 'k6';

const BASE = __ENV.BASE || 'http://127.0.0.1:8080';
const RATE = parseInt(__ENV.RATE || '5000');

export const options = {
  scenarios: {
    kpi: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: __ENV.DURATION || '60s',
      preAllocatedVUs: 50,
      maxVUs: 400,
    },
  },
  thresholds: {
    http_req_failed: ['rate==0'],
    http_req_duration: ['p(99)<5'],
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(99)', 'max'],
};

export default function () {
  const source = `src-${String(Math.floor(Math.random() * 20)).padStart(4, '0')}`;
  const res = http.get(`${BASE}/kpi?source=${source}&window=1m`);
  check(res, { 'status 200': (r) => r.status === 200 });
}
