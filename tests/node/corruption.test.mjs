// Stored bytes changed or lost behind hoard's back, restored with the real
// @actions/cache: the restore is a miss (the toolkit warns and the job goes
// on), never a corrupt tree; the entry is dropped, so the next lookup misses
// and the next save stores it again.
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

before(async () => {
  hoard = await startHoard();
  root = mkdtempSync(path.join(tmpdir(), 'hoard-corrupt-'));
});

after(async () => {
  await hoard.stop();
  rmSync(root, { recursive: true, force: true });
});

// The largest stored object of an entry (files of the local store, objects
// of the S3 server).
async function largestObject(id) {
  const all = await hoard.objects.list(`entries/${id}`);
  assert.ok(all.length > 0, `entry ${id} has objects`);
  return all.sort((a, b) => b.size - a.size)[0].name;
}

async function flipByte(name) {
  const bytes = await hoard.objects.read(name);
  bytes[Math.floor(bytes.length / 2)] ^= 0x01;
  await hoard.objects.write(name, bytes);
}

async function truncate(name) {
  const bytes = await hoard.objects.read(name);
  await hoard.objects.write(name, bytes.subarray(0, bytes.length - 1000));
}

async function lookupMisses(key) {
  const deadline = Date.now() + 10000;
  for (;;) {
    const r = await twirp(hoard.url, 'GetCacheEntryDownloadURL', { key, version: versionOf[key] });
    if (r.body.ok !== true) return true;
    if (Date.now() > deadline) return false;
    await new Promise((res) => setTimeout(res, 100));
  }
}

// The toolkit's version of each saved key, read from the listing.
const versionOf = {};

async function saveOne(key) {
  const saved = await saveFiles(`save-${key}-${Date.now()}`, key, { 'blob.bin': randomBytes(3 * 1024 * 1024) });
  assert.ok(saved.id > 0, saved.out);
  const listed = await twirp(hoard.url, 'ListCacheEntries', { key });
  versionOf[key] = listed.body.entries.find((e) => e.key === key).version;
  return saved;
}

for (const [name, damage] of [
  ['a flipped bit', flipByte],
  ['a truncated object', truncate],
  ['a deleted object', (name) => hoard.objects.remove(name)],
]) {
  test(`${name}: the restore is a miss, the entry is dropped, the next save works`, async () => {
    const key = `corrupt-${name.replace(/ /g, '-')}`;
    const saved = await saveOne(key);
    await damage(await largestObject(saved.id));

    const first = await restoreInto(`restore-${key}`, key);
    assert.equal(first.matched, null, first.out);
    assert.equal(first.files, null, 'nothing restored');
    assert.ok(await lookupMisses(key), 'lookups stop offering the entry');
    assert.match(hoard.log(), /stored bytes do not match the entry/);

    // The next job saves it again, and that one restores whole.
    const again = await saveOne(key);
    const back = await restoreInto(`restore-again-${key}`, key);
    assert.equal(back.matched, key, back.out);
    assert.deepEqual(back.files, again.expected);
  });
}
