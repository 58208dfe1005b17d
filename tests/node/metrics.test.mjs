// What an operator sees, driven by the real @actions/cache: saves, an exact
// hit, a restore-key hit, a miss and an eviction, then /metrics read as
// Prometheus text with each counter at its value; each request in the access
// log with its id and no secret.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startHoard } from './hoard.mjs';
import { jobs } from './jobs.mjs';

let hoard;
let root;
const { saveFiles, restoreInto } = jobs(() => hoard.url, () => root);

// Three caches of ~1 MiB of incompressible data against a 2.5 MiB budget: the
// third save evicts one.
const BUDGET = 5 * 1024 * 1024 / 2;

before(async () => {
  hoard = await startHoard({
    HOARD_EVICTION_INTERVAL_SECS: '3600',
    HOARD_EVICTION_NAMESPACE_BUDGET_BYTES: String(BUDGET),
    HOARD_METRICS_REFRESH_SECS: '1',
  });
  root = mkdtempSync(path.join(tmpdir(), 'hoard-metrics-'));
});

after(async () => {
  await hoard.stop();
  rmSync(root, { recursive: true, force: true });
});

// Prometheus text exposition: `name{labels} value` lines into a list of
// samples; comments checked for the HELP and TYPE of each family.
function parse(text) {
  const samples = [];
  const typed = new Set();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const meta = line.match(/^# (HELP|TYPE) (\w+) (.*)$/);
    if (meta) {
      if (meta[1] === 'TYPE') {
        assert.match(meta[3], /^(counter|gauge|histogram)$/, line);
        typed.add(meta[2]);
      }
      continue;
    }
    const m = line.match(/^(\w+)(?:\{(.*)\})? (\S+)$/);
    assert.ok(m, `not a sample line: ${line}`);
    const labels = {};
    for (const l of (m[2] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    const family = m[1].replace(/_(bucket|sum|count)$/, '');
    assert.ok(typed.has(m[1]) || typed.has(family), `no TYPE for ${m[1]}`);
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

async function scrape() {
  const r = await fetch(`${hoard.url}/metrics`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/plain/);
  return parse(await r.text());
}

// The sum of the samples named `name` whose labels include `want`.
function value(samples, name, want = {}) {
  return samples
    .filter((s) => s.name === name && Object.entries(want).every(([k, v]) => s.labels[k] === v))
    .reduce((n, s) => n + s.value, 0);
}

test('counters match what the clients did', async () => {
  const saved = {};
  for (const key of ['deps-1', 'deps-2']) {
    const s = await saveFiles(`save-${key}`, key, { 'blob.bin': randomBytes(1024 * 1024) });
    assert.ok(s.id > 0, s.out);
    saved[key] = s.expected;
  }
  const exact = await restoreInto('exact', 'deps-1');
  assert.equal(exact.matched, 'deps-1');
  const partial = await restoreInto('partial', 'deps-9', ['deps-']);
  assert.equal(partial.matched, 'deps-2');
  const miss = await restoreInto('miss', 'nothing-like-it');
  assert.equal(miss.matched, null);
  // Over budget: the least recently used (deps-1) goes right after this save.
  const third = await saveFiles('save-deps-3', 'deps-3', { 'blob.bin': randomBytes(1024 * 1024) });
  assert.ok(third.id > 0, third.out);

  let m;
  const deadline = Date.now() + 15000;
  for (;;) {
    m = await scrape();
    const settled = value(m, 'hoard_evictions_total', { reason: 'namespace_budget' }) === 1
      && value(m, 'hoard_cache_entries', { namespace: 'default' }) === 2;
    if (settled) break;
    assert.ok(Date.now() < deadline, `eviction or usage never showed: ${JSON.stringify(m.filter((s) => /evict|cache_entries/.test(s.name)))}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const ns = { namespace: 'default' };
  assert.equal(value(m, 'hoard_cache_lookups_total', { ...ns, result: 'exact' }), 1);
  assert.equal(value(m, 'hoard_cache_lookups_total', { ...ns, result: 'restore_key' }), 1);
  assert.equal(value(m, 'hoard_cache_lookups_total', { ...ns, result: 'miss' }), 1);
  const twirpOk = (op) => value(m, 'hoard_http_requests_total', { surface: 'twirp', operation: op, status: '200' });
  assert.equal(twirpOk('CreateCacheEntry'), 3);
  assert.equal(twirpOk('FinalizeCacheEntryUpload'), 3);
  assert.equal(twirpOk('GetCacheEntryDownloadURL'), 3);
  assert.equal(value(m, 'hoard_http_requests_total', { surface: 'blob', operation: 'get_blob' }), 2);
  const uploads = value(m, 'hoard_http_requests_total', { surface: 'blob', status: '201' });
  assert.ok(uploads >= 3, `blob uploads answered 201: ${uploads}`);
  // The bytes the clients moved: three archives in, two out (each ~1 MiB).
  const received = value(m, 'hoard_http_received_bytes_total', { surface: 'blob' });
  const sent = value(m, 'hoard_http_sent_bytes_total', { surface: 'blob' });
  assert.ok(received >= 3 * 1024 * 1024 && received < 4 * 1024 * 1024, `received ${received}`);
  assert.ok(sent >= 2 * 1024 * 1024 && sent < 3 * 1024 * 1024, `sent ${sent}`);
  assert.equal(value(m, 'hoard_evictions_total', { reason: 'expired' }), 0);
  const stored = value(m, 'hoard_cache_stored_bytes', ns);
  assert.ok(stored >= 2 * 1024 * 1024 && stored <= BUDGET, `stored ${stored}`);
  assert.equal(value(m, 'hoard_transfers_in_flight'), 0);
  assert.equal(value(m, 'hoard_store_errors_total'), 0);
  // Every request is timed under its operation.
  assert.equal(
    value(m, 'hoard_http_request_duration_seconds_count', { surface: 'twirp', operation: 'GetCacheEntryDownloadURL' }),
    3,
  );
});

test('each request is in the access log with its id, and no secret is', async () => {
  const r = await fetch(`${hoard.url}/twirp/github.actions.results.api.v1.CacheService/GetCacheEntryDownloadURL`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-request-id': 'operator-trace-7', authorization: 'Bearer node-test-token' },
    body: JSON.stringify({ key: 'nowhere', version: 'v' }),
  });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('x-request-id'), 'operator-trace-7');
  assert.ok(
    await hoard.waitForLog(/id=operator-trace-7 method=POST surface="twirp" operation="GetCacheEntryDownloadURL" status=200/, 5000),
    hoard.log(),
  );
  // Restores are logged too, and the signed query and the token never are.
  // A restore the client read to its end says so.
  assert.match(hoard.log(), /surface="blob" operation="get_blob" status=200 received=0 sent=\d+ ms=\d+ namespace="" complete=true/);
  assert.doesNotMatch(hoard.log(), /node-test-token/);
  assert.doesNotMatch(hoard.log(), /sig=/);
});
