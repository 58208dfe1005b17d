// The real @actions/cache package (what actions/cache runs) saving and restoring
// through the real hoard binary, with the environment a runner sets.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, openSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { backend, startHoard, twirp } from './hoard.mjs';
import { jobs } from './jobs.mjs';

let hoard;
let root;

// On object storage, single-object entries are downloaded straight from the
// bucket (storage.direct_download), which the toolkit must handle too.
const direct = backend === 'pg-s3';

before(async () => {
  hoard = await startHoard(direct ? { HOARD_STORAGE_DIRECT_DOWNLOAD: 'true' } : {});
  root = mkdtempSync(path.join(tmpdir(), 'hoard-jobs-'));
});

after(async () => {
  await hoard.stop();
  rmSync(root, { recursive: true, force: true });
});

const { job, step, tree, writeTree, saveFiles, restoreInto } = jobs(() => hoard.url, () => root);

test('a small directory round-trips byte for byte', async () => {
  const { id, expected } = await saveFiles('small-save', 'small-dir-v1', {
    'a.txt': 'hello from a job\n',
    'nested/deeper/b.bin': randomBytes(70_000),
    'empty.txt': '',
  });
  assert.ok(id > 0, `save returned ${id}`);
  const r = await restoreInto('small-restore', 'small-dir-v1');
  assert.equal(r.matched, 'small-dir-v1');
  assert.deepEqual(r.files, expected);
  // The restore above went where the lookup pointed: the bucket, or hoard.
  const listed = await twirp(hoard.url, 'ListCacheEntries', { key: 'small-dir-v1' });
  const { version } = listed.body.entries[0];
  const found = await twirp(hoard.url, 'GetCacheEntryDownloadURL', { key: 'small-dir-v1', version });
  const expectedBase = direct ? hoard.storageEndpoint : hoard.url;
  assert.ok(found.body.signed_download_url.startsWith(expectedBase), found.body.signed_download_url);
});

test('a ~300 MiB file goes through the multi-block upload and restores intact', async () => {
  const j = job('big-save');
  const dir = path.join(j.ws, 'big');
  mkdirSync(dir, { recursive: true });
  const fd = openSync(path.join(dir, 'random.bin'), 'w');
  for (let i = 0; i < 300; i++) writeSync(fd, randomBytes(1024 * 1024));
  closeSync(fd);
  const expected = tree(dir);
  const { result: id } = await step(j, 'save', 'big-file-v1', ['big']);
  assert.ok(id > 0, `save returned ${id}`);
  // The archive is larger than the toolkit's 128 MiB single-shot limit, so it
  // was sent as 64 MiB blocks and committed with a block list (several parts).
  const looked = await twirp(hoard.url, 'ListCacheEntries', { key: 'big-file-v1' });
  assert.equal(looked.status, 200);
  const entry = looked.body.entries.find((e) => e.key === 'big-file-v1');
  assert.ok(Number(entry.size_bytes) > 128 * 1024 * 1024, `size ${entry.size_bytes}`);
  assert.match(entry.hash, /^sha256-parts:/);
  const r = await restoreInto('big-restore', 'big-file-v1', [], 'big');
  assert.equal(r.matched, 'big-file-v1');
  assert.deepEqual(r.files, expected);
});

test('restore keys that prefix two saved keys restore the newest', async () => {
  const older = await saveFiles('prefix-save-1', 'deps-linux-aaa', { 'f.txt': 'older' });
  assert.ok(older.id > 0);
  const newer = await saveFiles('prefix-save-2', 'deps-linux-bbb', { 'f.txt': 'newer' });
  assert.ok(newer.id > 0);
  const r = await restoreInto('prefix-restore', 'deps-linux-ccc', ['deps-linux-', 'deps-']);
  assert.equal(r.matched, 'deps-linux-bbb');
  assert.deepEqual(r.files, newer.expected);
});

test('the same key with other paths is another version: a miss', async () => {
  const saved = await saveFiles('version-save', 'versioned-key', { 'x.txt': 'x' }, 'path-a');
  assert.ok(saved.id > 0);
  const r = await restoreInto('version-restore', 'versioned-key', [], 'path-b');
  assert.equal(r.matched, null);
  assert.equal(r.files, null);
});

test('a second save of an existing key fails cleanly and keeps the content', async () => {
  const first = await saveFiles('dup-save-1', 'dup-key', { 'f.txt': 'first' });
  assert.ok(first.id > 0);
  const second = await saveFiles('dup-save-2', 'dup-key', { 'f.txt': 'second' });
  assert.equal(second.id, -1);
  assert.match(second.out, /another job may be creating this cache/);
  const r = await restoreInto('dup-restore', 'dup-key');
  assert.deepEqual(r.files, first.expected);
});

test('two concurrent saves of one new key: exactly one wins, the restore is intact', async () => {
  const contents = [randomBytes(3 * 1024 * 1024), randomBytes(3 * 1024 * 1024)];
  const jobs = contents.map((c, i) => {
    const j = job(`race-save-${i}`);
    writeTree(path.join(j.ws, 'cached'), { 'data.bin': c });
    return { j, expected: tree(path.join(j.ws, 'cached')) };
  });
  const results = await Promise.all(jobs.map(({ j }) => step(j, 'save', 'race-key', ['cached'])));
  const ids = results.map((r) => r.result);
  const winners = ids.filter((id) => id > 0);
  assert.equal(winners.length, 1, `ids ${ids}`);
  assert.equal(ids.filter((id) => id === -1).length, 1, `ids ${ids}`);
  const winner = jobs[ids.findIndex((id) => id > 0)];
  const r = await restoreInto('race-restore', 'race-key');
  assert.equal(r.matched, 'race-key');
  assert.deepEqual(r.files, winner.expected);
});

test('a restore while a save of that key is in flight misses, never partial', async () => {
  // Another job's save in flight: reserved and half uploaded, not finalized.
  // The version is the one the toolkit computes for the path list ['cached'].
  const probe = await saveFiles('inflight-probe', 'probe-for-version', { 'p.txt': 'p' });
  assert.ok(probe.id > 0);
  const listed = await twirp(hoard.url, 'ListCacheEntries', { key: 'probe-for-version' });
  const version = listed.body.entries[0].version;
  const created = await twirp(hoard.url, 'CreateCacheEntry', { key: 'inflight-key', version });
  assert.equal(created.status, 200);
  const url = created.body.signed_upload_url;
  const blockId = Buffer.from('block-0001').toString('base64');
  const put = await fetch(`${url}&comp=block&blockid=${encodeURIComponent(blockId)}`, { method: 'PUT', body: randomBytes(1024) });
  assert.equal(put.status, 201);
  const list = `<?xml version="1.0" encoding="utf-8"?><BlockList><Latest>${blockId}</Latest></BlockList>`;
  assert.equal((await fetch(`${url}&comp=blocklist`, { method: 'PUT', body: list })).status, 201);

  // Committed blob, not finalized: still invisible to the real client.
  const r = await restoreInto('inflight-restore', 'inflight-key', ['inflight-']);
  assert.equal(r.matched, null);
  assert.equal(r.files, null);
  // And the real client's own save of that key is refused while it is reserved.
  const blocked = await saveFiles('inflight-save', 'inflight-key', { 'q.txt': 'q' });
  assert.equal(blocked.id, -1);
});

test('a key never saved is a clean miss', async () => {
  const r = await restoreInto('never-restore', 'never-saved-key', ['never-saved-']);
  assert.equal(r.matched, null);
  assert.equal(r.files, null);
  assert.doesNotMatch(r.out, /::error::/);
});
