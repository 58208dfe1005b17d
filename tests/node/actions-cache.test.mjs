// The real @actions/cache package (what actions/cache runs) saving and restoring
// through the real hoard binary, with the environment a runner sets.
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

const helpers = jobs(() => hoard.url, () => root);
const { bigJob, step, saveFiles, restoreInto } = helpers;

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
  const { j, expected } = bigJob('big-save', 'big', 300);
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

sharedScenarios('', helpers);
