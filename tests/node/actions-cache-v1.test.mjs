// The real @actions/cache package on the legacy v1 API, as it runs on a GitHub
// Enterprise Server runner: a GITHUB_SERVER_URL that is not github.com puts it
// on `_apis/artifactcache/` under ACTIONS_CACHE_URL (the results URL is left
// empty, so nothing can reach hoard through v2 by accident).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { backend, startHoard, twirp } from './hoard.mjs';
import { jobs } from './jobs.mjs';
import { sharedScenarios } from './cache-scenarios.mjs';

let hoard;
let root;

const direct = backend === 'pg-s3';
const ghes = { GITHUB_SERVER_URL: 'https://ghes.example.internal', ACTIONS_CACHE_SERVICE_V2: '', ACTIONS_RESULTS_URL: '' };

before(async () => {
  hoard = await startHoard(direct ? { HOARD_STORAGE_DIRECT_DOWNLOAD: 'true' } : {});
  root = mkdtempSync(path.join(tmpdir(), 'hoard-v1-jobs-'));
});

after(async () => {
  await hoard.stop();
  rmSync(root, { recursive: true, force: true });
});

const v1 = jobs(() => hoard.url, () => root, () => ghes);
const v2 = jobs(() => hoard.url, () => root);
const { bigJob, step, saveFiles, restoreInto } = v1;

// The entry a key names, as the v2 API lists it.
async function listed(key) {
  const r = await twirp(hoard.url, 'ListCacheEntries', { key });
  assert.equal(r.status, 200);
  return r.body.entries.find((e) => e.key === key);
}

test('v1: a small directory round-trips byte for byte', async () => {
  const { id, expected, out } = await saveFiles('small-save', 'v1-small-dir', {
    'a.txt': 'hello from a GHES job\n',
    'nested/deeper/b.bin': randomBytes(70_000),
    'empty.txt': '',
  });
  assert.ok(id > 0, `save returned ${id}:\n${out}`);
  assert.doesNotMatch(out, /::warning::|::error::/);
  const r = await restoreInto('small-restore', 'v1-small-dir');
  assert.equal(r.matched, 'v1-small-dir');
  assert.deepEqual(r.files, expected);
});

test('v1: a ~300 MiB file goes up as parallel 32 MiB chunks and restores intact', async () => {
  const { j, expected } = bigJob('big-save', 'big', 300);
  const { result: id, out } = await step(j, 'save', 'v1-big-file', ['big']);
  assert.ok(id > 0, `save returned ${id}:\n${out}`);
  // A failed chunk or commit is only a warning to the toolkit: the entry
  // itself says whether the save arrived, kept as its ten chunks.
  assert.doesNotMatch(out, /::warning::|::error::/);
  const entry = await listed('v1-big-file');
  assert.ok(Number(entry.size_bytes) > 300 * 1024 * 1024, `size ${entry.size_bytes}`);
  assert.match(entry.hash, /^sha256-parts:/);
  const r = await restoreInto('big-restore', 'v1-big-file', [], 'big');
  assert.equal(r.matched, 'v1-big-file');
  assert.deepEqual(r.files, expected);
});

test('an entry saved through v1 restores through v2, and the reverse', async () => {
  const fromV1 = await saveFiles('cross-save-v1', 'cross-from-v1', { 'f.bin': randomBytes(100_000) });
  assert.ok(fromV1.id > 0);
  const back2 = await v2.restoreInto('cross-restore-v2', 'cross-from-v1');
  assert.equal(back2.matched, 'cross-from-v1');
  assert.deepEqual(back2.files, fromV1.expected);

  const fromV2 = await v2.saveFiles('cross-save-v2', 'cross-from-v2', { 'g.bin': randomBytes(100_000) });
  assert.ok(fromV2.id > 0);
  const back1 = await restoreInto('cross-restore-v1', 'cross-from-v2', ['cross-from-']);
  assert.equal(back1.matched, 'cross-from-v2');
  assert.deepEqual(back1.files, fromV2.expected);
});

test('v1: a cache over the entry limit is refused at reservation with the reason', async () => {
  // On a GHES host the toolkit skips its own 10 GB check and leaves the limit
  // to the reservation, which is the last point where a refusal is not lost.
  const small = await startHoard({ HOARD_EVICTION_MAX_ENTRY_BYTES: '1000000' });
  try {
    const limited = jobs(() => small.url, () => root, () => ghes);
    const saved = await limited.saveFiles('limit-save', 'v1-too-big', { 'r.bin': randomBytes(3 * 1024 * 1024) });
    assert.equal(saved.id, -1);
    assert.match(saved.out, /::warning::Failed to save: the cache is \d+ bytes; this namespace allows at most 1000000 bytes/);
    const r = await limited.restoreInto('limit-restore', 'v1-too-big');
    assert.equal(r.matched, null);
  } finally {
    await small.stop();
  }
});

sharedScenarios('v1', v1);
