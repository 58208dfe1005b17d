// Budgets with the real @actions/cache: a namespace filled past its budget keeps
// the caches jobs restored and loses the least recently used, and ends under
// budget.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startHoard, twirp } from './hoard.mjs';
import { jobs } from './jobs.mjs';

let hoard;
let root;
const { saveFiles, restoreInto } = jobs(() => hoard.url, () => root);

// Four caches of ~1 MiB of incompressible data against a 2.5 MiB budget.
const BUDGET = 5 * 1024 * 1024 / 2;

before(async () => {
  hoard = await startHoard({
    HOARD_EVICTION_INTERVAL_SECS: '1',
    HOARD_EVICTION_NAMESPACE_BUDGET_BYTES: String(BUDGET),
  });
  root = mkdtempSync(path.join(tmpdir(), 'hoard-evict-'));
});

after(async () => {
  await hoard.stop();
  rmSync(root, { recursive: true, force: true });
});

async function listed() {
  const r = await twirp(hoard.url, 'ListCacheEntries', {});
  return r.body.entries || [];
}

// Access times are flushed in batches (every 5 s); a restore counts once flushed.
const flushed = () => new Promise((r) => setTimeout(r, 6000));

async function save(expected, key) {
  const saved = await saveFiles(`save-${key}`, key, { 'blob.bin': randomBytes(1024 * 1024) });
  assert.ok(saved.id > 0, saved.out);
  expected[key] = saved.expected;
}

function restored(key) {
  return restoreInto(`restore-${key}-${Date.now()}`, key);
}

test('least recently restored caches go, restored ones stay, the total ends under budget', async () => {
  const expected = {};
  await save(expected, 'deps-1');
  await save(expected, 'deps-2');
  // Jobs keep restoring deps-1, so it stays the most recently used while the
  // namespace overflows twice.
  assert.equal((await restored('deps-1')).matched, 'deps-1');
  await flushed();
  await save(expected, 'deps-3');
  assert.equal((await restored('deps-1')).matched, 'deps-1');
  await flushed();
  await save(expected, 'deps-4');

  // The evictor runs every second: wait until the namespace is under budget.
  const deadline = Date.now() + 30000;
  let entries = await listed();
  const total = (list) => list.reduce((n, e) => n + Number(e.size_bytes ?? e.sizeBytes ?? 0), 0);
  while (total(entries) > BUDGET || entries.length > 2) {
    assert.ok(Date.now() < deadline, `still over budget: ${JSON.stringify(entries)}`);
    await new Promise((r) => setTimeout(r, 250));
    entries = await listed();
  }
  assert.deepEqual(entries.map((e) => e.key).sort(), ['deps-1', 'deps-4']);
  assert.equal((await restored('deps-2')).matched, null, 'least recently used: gone');
  assert.equal((await restored('deps-3')).matched, null, 'least recently used: gone');
  const back = await restored('deps-1');
  assert.equal(back.matched, 'deps-1');
  assert.deepEqual(back.files, expected['deps-1']);
});
