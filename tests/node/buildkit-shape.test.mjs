// BuildKit's upload shape (docker buildx cache-to type=gha) driven through the real
// Azure Blob SDK: 64-byte block ids, 1 MiB blocks sent one after another, a block
// list commit, Finalize, then reads from several offsets with `Range: bytes=N-`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { BlockBlobClient, BlobClient } from '@azure/storage-blob';
import { startHoard, twirp } from './hoard.mjs';

let hoard;
before(async () => {
  hoard = await startHoard();
});
after(async () => {
  await hoard.stop();
});

// A runtime token shaped like GitHub's: BuildKit reads the `ac` claim itself.
function runtimeToken(scopes) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${enc({ alg: 'RS256', typ: 'JWT' })}.${enc({ ac: JSON.stringify(scopes), exp: 4102444800 })}.c2ln`;
}

const auth = { authorization: `Bearer ${runtimeToken([{ Scope: 'refs/heads/main', Permission: 3 }])}` };

// 64-byte block ids with the block index as a big-endian integer inside.
function blockId(i) {
  const b = Buffer.alloc(64, 0x61);
  b.writeBigUInt64BE(BigInt(i), 56);
  return b.toString('base64');
}

async function download(url, headers = {}) {
  const r = await fetch(url, { headers });
  return { status: r.status, headers: r.headers, body: Buffer.from(await r.arrayBuffer()) };
}

test('1 MiB blocks in sequence, commit, finalize, ranged reads', async () => {
  const key = `buildkit-blob-1-sha256:${randomBytes(32).toString('hex')}`;
  const version = 'buildkit-version-1';
  const created = await twirp(hoard.url, 'CreateCacheEntry', { key, version }, auth);
  assert.equal(created.status, 200, JSON.stringify(created.body));
  const client = new BlockBlobClient(created.body.signed_upload_url);

  const blocks = Array.from({ length: 24 }, () => randomBytes(1024 * 1024));
  blocks.push(randomBytes(12345)); // a short last block
  const ids = blocks.map((_, i) => blockId(i));
  for (let i = 0; i < blocks.length; i++) {
    await client.stageBlock(ids[i], blocks[i], blocks[i].length);
  }
  // A retried block (same id, sent again) replaces, never duplicates.
  await client.stageBlock(ids[3], blocks[3], blocks[3].length);
  await client.commitBlockList(ids);
  const whole = Buffer.concat(blocks);

  const fin = await twirp(hoard.url, 'FinalizeCacheEntryUpload', { key, version, size_bytes: String(whole.length) }, auth);
  assert.equal(fin.status, 200, JSON.stringify(fin.body));
  assert.ok(Number(fin.body.entry_id) > 0);

  const got = await twirp(hoard.url, 'GetCacheEntryDownloadURL', { key, restore_keys: [], version }, auth);
  assert.equal(got.body.ok, true);
  assert.equal(got.body.matched_key, key);
  const url = got.body.signed_download_url;

  const full = await download(url);
  assert.equal(full.status, 200);
  assert.ok(full.body.equals(whole), 'whole blob differs');

  // BuildKit resumes a broken download with `Range: bytes=N-`, from anywhere.
  for (const offset of [0, 1, 1024 * 1024 - 1, 1024 * 1024, 5 * 1024 * 1024 + 777, whole.length - 1]) {
    const part = await download(url, { range: `bytes=${offset}-` });
    assert.equal(part.status, 206, `offset ${offset}`);
    assert.equal(part.headers.get('content-range'), `bytes ${offset}-${whole.length - 1}/${whole.length}`);
    assert.ok(part.body.equals(whole.subarray(offset)), `offset ${offset}`);
  }

  // The SDK's own reads: properties and an offset/count download across blocks.
  const reader = new BlobClient(url);
  const props = await reader.getProperties();
  assert.equal(props.contentLength, whole.length);
  const slice = await reader.downloadToBuffer(3 * 1024 * 1024 - 10, 20);
  assert.ok(slice.equals(whole.subarray(3 * 1024 * 1024 - 10, 3 * 1024 * 1024 + 10)));

  // The same key again: already_exists (409), which BuildKit treats as "someone
  // else is writing this blob" and moves on.
  const again = await twirp(hoard.url, 'CreateCacheEntry', { key, version }, auth);
  assert.equal(again.status, 409);
  assert.equal(again.body.code, 'already_exists');
});

test('a feature branch reads main but writes only its own scope', async () => {
  const main = { authorization: `Bearer ${runtimeToken([{ Scope: 'refs/heads/main', Permission: 3 }])}` };
  const feature = {
    authorization: `Bearer ${runtimeToken([
      { Scope: 'refs/heads/feature', Permission: 3 },
      { Scope: 'refs/heads/main', Permission: 1 },
    ])}`,
  };
  const version = 'scope-version';
  const created = await twirp(hoard.url, 'CreateCacheEntry', { key: 'index-main', version }, main);
  await new BlockBlobClient(created.body.signed_upload_url).upload('from main', 9);
  assert.equal((await twirp(hoard.url, 'FinalizeCacheEntryUpload', { key: 'index-main', version, size_bytes: '9' }, main)).status, 200);

  const hit = await twirp(hoard.url, 'GetCacheEntryDownloadURL', { key: 'index-main', version }, feature);
  assert.equal(hit.body.ok, true, 'feature reads main');
  assert.equal((await download(hit.body.signed_download_url)).body.toString(), 'from main');

  // The feature branch saving the same key writes its own scope: no conflict.
  const own = await twirp(hoard.url, 'CreateCacheEntry', { key: 'index-main', version }, feature);
  assert.equal(own.status, 200);
  await new BlockBlobClient(own.body.signed_upload_url).upload('from feature', 12);
  assert.equal((await twirp(hoard.url, 'FinalizeCacheEntryUpload', { key: 'index-main', version, size_bytes: '12' }, feature)).status, 200);
  const mine = await twirp(hoard.url, 'GetCacheEntryDownloadURL', { key: 'index-main', version }, feature);
  assert.equal((await download(mine.body.signed_download_url)).body.toString(), 'from feature');
  const theirs = await twirp(hoard.url, 'GetCacheEntryDownloadURL', { key: 'index-main', version }, main);
  assert.equal((await download(theirs.body.signed_download_url)).body.toString(), 'from main');
});
