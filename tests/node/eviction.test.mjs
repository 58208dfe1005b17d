// Budgets with the real @actions/cache: a namespace filled past its budget keeps
// the caches jobs restored and loses the least recently used, and ends under
// budget. The evictor's interval is an hour: the saves themselves make room.
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
    HOARD_EVICTION_INTERVAL_SECS: '3600',
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

async function save(expected, key) {
  const saved = await saveFiles(`save-${key}`, key, { 'blob.bin': randomBytes(1024 * 1024) });
  assert.ok(saved.id > 0, saved.out);
  expected[key] = saved.expected;
}

// The keys left once the namespace is back under budget (room is made right
// after the save's finalize, so this takes a moment, not an evictor interval).
async function underBudget() {
  const deadline = Date.now() + 10000;
  const total = (list) => list.reduce((n, e) => n + Number(e.size_bytes ?? e.sizeBytes ?? 0), 0);
  let entries = await listed();
  while (total(entries) > BUDGET) {
    assert.ok(Date.now() < deadline, `still over budget: ${JSON.stringify(entries)}`);
    await new Promise((r) => setTimeout(r, 100));
    entries = await listed();
  }
  return entries.map((e) => e.key).sort();
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
  // Each restore counts at once, though access times reach the database in
  // batches: the pass a save triggers writes them first.
  assert.equal((await restored('deps-1')).matched, 'deps-1');
  await save(expected, 'deps-3');
  assert.deepEqual(await underBudget(), ['deps-1', 'deps-3']);
  assert.equal((await restored('deps-1')).matched, 'deps-1');
  await save(expected, 'deps-4');
  assert.deepEqual(await underBudget(), ['deps-1', 'deps-4']);
  assert.equal((await restored('deps-2')).matched, null, 'least recently used: gone');
  assert.equal((await restored('deps-3')).matched, null, 'least recently used: gone');
  const back = await restored('deps-1');
  assert.equal(back.matched, 'deps-1');
  assert.deepEqual(back.files, expected['deps-1']);
});
