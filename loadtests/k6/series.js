// GET /series (the last 10 minutes of one source) at a constant arrival rate.
//   k6 run -e BASE=http://127.0.0.1:8080 -e RATE=500 -e DURATION=60s loadtests/k6/series.js
import http from 'k6/http';
import { check } from 'k6';

const BASE = __ENV.BASE || 'http://127.0.0.1:8080';
const RATE = parseInt(__ENV.RATE || '500');

export const options = {
  scenarios: {
    series: {
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
    http_req_duration: ['p(99)<50'],
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(99)', 'max'],
};

export default function () {
  const source = `src-${String(Math.floor(Math.random() * 20)).padStart(4, '0')}`;
  const from = Date.now() - 10 * 60 * 1000;
  const res = http.get(`${BASE}/series?source=${source}&window=1m&from=${from}`);
  check(res, { 'status 200': (r) => r.status === 200 });
}
