// The toolkit's parallel restore: when the signed download URL's host ends in
// `.blob.core.windows.net`, @actions/cache downloads with a HEAD and ranged
// GETs, 8 at a time, instead of one GET (runner-setup.md, "Parallel restores").
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startHoard } from './hoard.mjs';
import { jobs } from './jobs.mjs';
import { BLOB_HOST } from './blob-host.mjs';

let hoard;
let root;

before(async () => {
  hoard = await startHoard();
  root = mkdtempSync(path.join(tmpdir(), 'hoard-blob-host-'));
});

after(async () => {
  await hoard.stop();
  rmSync(root, { recursive: true, force: true });
});

const resolver = pathToFileURL(path.join(path.dirname(fileURLToPath(import.meta.url)), 'blob-host.mjs'));
const viaBlobHost = jobs(() => hoard.url.replace('127.0.0.1', BLOB_HOST), () => root, () => ({ NODE_OPTIONS: `--import=${resolver}` }));

test('from a blob host under .blob.core.windows.net the toolkit restores in parallel ranges, intact', async () => {
  // The runner reaches hoard by a name under .blob.core.windows.net (a DNS
  // record the operator adds; here, blob-host.mjs in each job's process), so
  // the signed URLs carry that host and the toolkit takes its concurrent path:
  // a HEAD for the length, then 4 MiB ranged GETs, 8 at a time (this hoard
  // has direct downloads off, so every entry is served by hoard).
  const { j, expected } = viaBlobHost.bigJob('blob-host-save', 'big', 150);
  const { result: id } = await viaBlobHost.step(j, 'save', 'blob-host-v1', ['big']);
  assert.ok(id > 0, `save returned ${id}`);
  const ranged = () => hoard.log().split('\n').filter((l) => /method=GET/.test(l) && /status=206/.test(l)).length;
  const before = ranged();
  const r = await viaBlobHost.restoreInto('blob-host-restore', 'blob-host-v1', [], 'big');
  assert.equal(r.matched, 'blob-host-v1');
  assert.deepEqual(r.files, expected);
  // 150 MiB of random data compresses to about as much: ~38 ranges of 4 MiB.
  const segments = ranged() - before;
  assert.ok(segments >= 30, `${segments} ranged GETs`);
});
