// Stored bytes changed or lost behind hoard's back, restored with the real
// @actions/cache: the restore is a miss (the toolkit warns and the job goes
// on), never a corrupt tree; the entry is dropped, so the next lookup misses
// and the next save stores it again.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, statSync, openSync, readSync, writeSync, closeSync, truncateSync } from 'node:fs';
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

// The files of an entry's objects, largest first.
function objectFiles(id) {
  const dir = path.join(hoard.objectsDir, 'entries', String(id));
  const out = [];
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const p = path.join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(p);
    }
  };
  walk(dir);
  return out.sort((a, b) => statSync(b).size - statSync(a).size);
}

function flipByte(file) {
  const fd = openSync(file, 'r+');
  const at = Math.floor(statSync(file).size / 2);
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, at);
  b[0] ^= 0x01;
  writeSync(fd, b, 0, 1, at);
  closeSync(fd);
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
  ['a flipped bit', (files) => flipByte(files[0])],
  ['a truncated object', (files) => truncateSync(files[0], statSync(files[0]).size - 1000)],
  ['a deleted object', (files) => rmSync(files[0])],
]) {
  test(`${name}: the restore is a miss, the entry is dropped, the next save works`, async () => {
    const key = `corrupt-${name.replace(/ /g, '-')}`;
    const saved = await saveOne(key);
    damage(objectFiles(saved.id));

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
