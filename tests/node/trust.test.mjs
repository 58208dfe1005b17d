// Trust with the real @actions/cache: tenants and repositories keep to their own
// namespaces, runtime tokens are verified against a JWKS this test serves, scopes
// come from the verified `ac` claim, signed URLs resist tampering and expire, and
// no secret reaches the logs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomBytes, sign, createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { hoardBin, startHoard, twirp } from './hoard.mjs';
import { jobs } from './jobs.mjs';

const b64u = (b) => Buffer.from(b).toString('base64url');

// Secrets every hoard of this file runs with; none may appear in a log.
const SIGNING_SECRET = `signing-${randomBytes(12).toString('hex')}`;
const DB_PASSWORD = `dbpass-${randomBytes(12).toString('hex')}`;
const tenantToken = (name) => `hoard_${name}_${randomBytes(16).toString('hex')}`;
const TOKEN_A = tenantToken('a');
const TOKEN_B = tenantToken('b');
const secrets = [SIGNING_SECRET, DB_PASSWORD, TOKEN_A, TOKEN_B];

function tokenHash(token) {
  const salt = randomBytes(16);
  const digest = createHash('sha256').update(salt).update(token).digest('hex');
  return `sha256:${salt.toString('hex')}:${digest}`;
}

// The environment shared by every hoard here: secrets set, debug logging, and
// the database password in its URL (trust auth ignores it).
function secretEnv(extra) {
  return { HOARD_SIGNING_SECRET: SIGNING_SECRET, HOARD_LOG: 'debug', ...extra };
}

async function start(extra) {
  const h = await startHoard(secretEnv(extra), {
    databaseUrl: (url) => url.replace('postgres://postgres@', `postgres://postgres:${DB_PASSWORD}@`),
  });
  started.push(h);
  return h;
}

// --- A JWKS endpoint and tokens signed by keys this test generates.
const issuer = 'https://token.hoard.test';
const audience = 'hoard-test';
const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 });
const strangerKey = generateKeyPairSync('rsa', { modulusLength: 2048 });
let jwks;
let jwksHits = 0;

function jwt(claims, { key = signingKey.privateKey, kid = 'k1', alg = 'RS256', exp = 3600 } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const header = b64u(JSON.stringify({ alg, typ: 'JWT', kid }));
  const payload = b64u(JSON.stringify({ iss: issuer, aud: audience, nbf: now - 5, exp: now + exp, ...claims }));
  const data = `${header}.${payload}`;
  return `${data}.${b64u(sign('RSA-SHA256', Buffer.from(data), key))}`;
}

const ac = (...scopes) => JSON.stringify(scopes.map(([Scope, Permission]) => ({ Scope, Permission })));
const repoToken = (repo, ...scopes) => jwt({ repository_id: repo, ac: ac(...scopes) });

let started = [];
let tenants;
let verified;
let root;

before(async () => {
  const jwk = signingKey.publicKey.export({ format: 'jwk' });
  jwks = http.createServer((req, res) => {
    jwksHits += 1;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys: [{ ...jwk, kid: 'k1', alg: 'RS256', use: 'sig' }] }));
  });
  await new Promise((r) => jwks.listen(0, '127.0.0.1', r));
  root = mkdtempSync(path.join(tmpdir(), 'hoard-trust-'));
  tenants = await start({
    HOARD_AUTH_MODE: 'tenant-token',
    HOARD_AUTH_TENANTS: `team-a=${tokenHash(TOKEN_A)},team-b=${tokenHash(TOKEN_B)}`,
    HOARD_DOWNLOADS_URL_TTL_SECS: '3',
  });
  verified = await start({
    HOARD_AUTH_MODE: 'github-jwt',
    HOARD_AUTH_GITHUB_ISSUER: issuer,
    HOARD_AUTH_GITHUB_AUDIENCE: audience,
    HOARD_AUTH_GITHUB_JWKS_URL: `http://127.0.0.1:${jwks.address().port}/jwks`,
  });
});

after(async () => {
  for (const h of started) await h.stop();
  await new Promise((r) => jwks.close(r));
  rmSync(root, { recursive: true, force: true });
});

const asJob = (h, token) => jobs(() => h.url, () => root, () => ({ ACTIONS_RUNTIME_TOKEN: token }));
const bearer = (token) => ({ authorization: `Bearer ${token}` });

async function downloadUrl(h, token, key, version) {
  const r = await twirp(h.url, 'GetCacheEntryDownloadURL', { key, restore_keys: [], version }, bearer(token));
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.ok, true, JSON.stringify(r.body));
  return r.body.signed_download_url;
}

// The version under which a tenant saved `key`.
async function versionOf(token, key) {
  const list = await twirp(tenants.url, 'ListCacheEntries', { key }, bearer(token));
  assert.equal(list.body.entries.length, 1, JSON.stringify(list.body));
  return list.body.entries[0].version;
}

test('tenants saving the same key and version each restore only their own bytes', async () => {
  const a = asJob(tenants, TOKEN_A);
  const b = asJob(tenants, TOKEN_B);
  const savedA = await a.saveFiles('a-save', 'deps-shared', { 'x.bin': randomBytes(200_000) });
  const savedB = await b.saveFiles('b-save', 'deps-shared', { 'x.bin': randomBytes(200_000) });
  assert.ok(savedA.id > 0 && savedB.id > 0, savedA.out + savedB.out);
  const gotA = await a.restoreInto('a-restore', 'deps-shared');
  const gotB = await b.restoreInto('b-restore', 'deps-shared');
  assert.equal(gotA.matched, 'deps-shared');
  assert.deepEqual(gotA.files, savedA.expected);
  assert.deepEqual(gotB.files, savedB.expected);
  assert.notDeepEqual(gotA.files, gotB.files);

  for (const [token, id] of [[TOKEN_A, savedA.id], [TOKEN_B, savedB.id]]) {
    const list = await twirp(tenants.url, 'ListCacheEntries', {}, bearer(token));
    assert.equal(list.status, 200);
    assert.equal(list.body.entries.length, 1, JSON.stringify(list.body));
    const found = await twirp(tenants.url, 'LookupCacheEntry',
      { key: 'deps-shared', version: list.body.entries[0].version }, bearer(token));
    assert.equal(found.body.exists, true);
    assert.equal(String(found.body.entry.size_bytes), String(list.body.entries[0].size_bytes));
    assert.ok(id > 0);
  }

  // The token in the base URL path (how BuildKit and OpenDAL can carry it).
  const version = (await twirp(tenants.url, 'ListCacheEntries', {}, bearer(TOKEN_B))).body.entries[0].version;
  const viaPath = await fetch(`${tenants.url}/t/${TOKEN_B}/twirp/github.actions.results.api.v1.CacheService/LookupCacheEntry`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: 'deps-shared', version }),
  });
  assert.equal(viaPath.status, 200);
  assert.equal((await viaPath.json()).exists, true);

  // Unknown or missing tenant tokens: 401 in Twirp's words, nothing read.
  for (const headers of [bearer(tenantToken('c')), {}, bearer(TOKEN_A.slice(0, -1))]) {
    const r = await twirp(tenants.url, 'ListCacheEntries', {}, headers);
    assert.equal(r.status, 401);
    assert.equal(r.body.code, 'unauthenticated');
    assert.equal(r.body.entries, undefined);
  }
});

test('a signed URL serves only its own entry, until it expires, and not with any byte changed', async () => {
  const a = asJob(tenants, TOKEN_A);
  const b = asJob(tenants, TOKEN_B);
  const body = randomBytes(50_000);
  assert.ok((await a.saveFiles('a-url', 'url-key', { 'u.bin': body })).id > 0);
  assert.ok((await b.saveFiles('b-url', 'url-key', { 'u.bin': randomBytes(50_000) })).id > 0);
  const urlA = await downloadUrl(tenants, TOKEN_A, 'url-key', await versionOf(TOKEN_A, 'url-key'));
  const urlB = await downloadUrl(tenants, TOKEN_B, 'url-key', await versionOf(TOKEN_B, 'url-key'));
  const ok = await fetch(urlA);
  assert.equal(ok.status, 200);
  const bytesA = Buffer.from(await ok.arrayBuffer());

  // A's signature on B's entry id.
  const idA = new URL(urlA).pathname.split('/').pop();
  const idB = new URL(urlB).pathname.split('/').pop();
  assert.notEqual(idA, idB);
  const swapped = urlA.replace(`/blob/cache/${idA}?`, `/blob/cache/${idB}?`);
  const r = await fetch(swapped);
  assert.equal(r.status, 403);
  assert.match(await r.text(), /<Code>AuthenticationFailed<\/Code>/);

  // Every byte of the path and query changed in turn: never served.
  const u = new URL(urlA);
  const tail = `${u.pathname}${u.search}`;
  const idStart = '/blob/cache/'.length;
  const query = tail.indexOf('?');
  for (let i = 1; i < tail.length; i += 1) {
    const c = tail[i];
    const other = c === '1' ? '2' : /[0-9]/.test(c) ? '1' : c === 'a' ? 'b' : 'a';
    const changed = `${u.origin}${tail.slice(0, i)}${other}${tail.slice(i + 1)}`;
    const res = await fetch(changed);
    const text = Buffer.from(await res.arrayBuffer());
    assert.ok(res.status >= 400, `byte ${i} (${c} -> ${other}) of ${tail}: ${res.status}`);
    assert.ok(!text.equals(bytesA));
    // The entry id and the whole query are covered by the signature.
    if (i >= idStart && i !== query) assert.equal(res.status, 403, changed);
  }

  // Download URLs live 3 s here.
  await new Promise((res) => setTimeout(res, 4000));
  const expired = await fetch(urlA);
  assert.equal(expired.status, 403);
  assert.match(await expired.text(), /expired/);
});

test('github-jwt: only a token signed by a JWKS key, for this issuer and audience, unexpired, is accepted', async () => {
  const claims = { repository_id: '1001', ac: ac(['refs/heads/main', 3]) };
  const now = Math.floor(Date.now() / 1000);
  const payload = (extra) => b64u(JSON.stringify({ iss: issuer, aud: audience, exp: now + 600, ...claims, ...extra }));
  const publicPem = signingKey.publicKey.export({ type: 'spki', format: 'pem' });
  const hs256 = (() => {
    const data = `${b64u(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid: 'k1' }))}.${payload({})}`;
    return `${data}.${b64u(createHmac('sha256', publicPem).update(data).digest())}`;
  })();
  const cases = {
    valid: jwt(claims),
    expired: jwt(claims, { exp: -600 }),
    'wrong issuer': jwt({ ...claims, iss: 'https://evil.test' }),
    'wrong audience': jwt({ ...claims, aud: 'someone-else' }),
    'wrong key': jwt(claims, { key: strangerKey.privateKey }),
    'wrong key, unknown kid': jwt(claims, { key: strangerKey.privateKey, kid: 'k2' }),
    'alg none': `${b64u(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${payload({})}.`,
    'HS256 keyed with the public key': hs256,
    malformed: 'eyJhbGciOiJSUzI1NiJ9.not-json.sig',
    'not a JWT': 'node-test-token',
    'no repository claim': jwt({ ac: claims.ac }),
  };
  for (const [name, token] of Object.entries(cases)) {
    const r = await twirp(verified.url, 'LookupCacheEntry', { key: 'k', version: 'v' }, bearer(token));
    if (name === 'valid') {
      assert.equal(r.status, 200, `${name}: ${JSON.stringify(r.body)}`);
    } else {
      assert.equal(r.status, 401, `${name}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.code, 'unauthenticated', name);
    }
  }
  const none = await twirp(verified.url, 'LookupCacheEntry', { key: 'k', version: 'v' });
  assert.equal(none.status, 401);
  // The key set is fetched at start and again for the unknown kid, not per request.
  assert.ok(jwksHits >= 1 && jwksHits <= 3, `JWKS fetched ${jwksHits} times`);
});

test('github-jwt scopes: a branch restores from main, writes only its own scope, a read-only token cannot save', async () => {
  const main = asJob(verified, repoToken('1001', ['refs/heads/main', 3]));
  const feature = asJob(verified, repoToken('1001', ['refs/heads/feature', 3], ['refs/heads/main', 1]));
  const readOnly = asJob(verified, repoToken('1001', ['refs/heads/main', 1]));
  const otherRepo = asJob(verified, repoToken('2002', ['refs/heads/main', 3]));

  const fromMain = await main.saveFiles('main-save', 'build-1', { 'b.bin': randomBytes(100_000) });
  assert.ok(fromMain.id > 0, fromMain.out);
  // The branch falls back to main's cache.
  const fallback = await feature.restoreInto('feature-restore-1', 'build-2', ['build-']);
  assert.equal(fallback.matched, 'build-1');
  assert.deepEqual(fallback.files, fromMain.expected);
  // The branch saves into its own scope; main does not see it.
  const fromFeature = await feature.saveFiles('feature-save', 'build-2', { 'b.bin': randomBytes(100_000) });
  assert.ok(fromFeature.id > 0, fromFeature.out);
  assert.deepEqual((await feature.restoreInto('feature-restore-2', 'build-', ['build-'])).files, fromFeature.expected);
  const mainView = await main.restoreInto('main-restore', 'build-', ['build-']);
  assert.equal(mainView.matched, 'build-1');
  // Another repository sees nothing of this one.
  assert.equal((await otherRepo.restoreInto('other-restore', 'build-1')).matched, null);

  // A read-only token: the toolkit reports a denied write and nothing is stored.
  const denied = await readOnly.saveFiles('ro-save', 'build-ro', { 'b.bin': randomBytes(1000) });
  assert.ok(!(denied.id > 0), denied.out);
  assert.match(denied.out, /cache write denied/);
  const raw = await twirp(verified.url, 'CreateCacheEntry', { key: 'build-ro', version: 'v' },
    bearer(repoToken('1001', ['refs/heads/main', 1])));
  assert.equal(raw.status, 200);
  assert.equal(raw.body.ok, false);
  assert.match(raw.body.message, /^cache write denied:/);
  const finalize = await twirp(verified.url, 'FinalizeCacheEntryUpload', { key: 'build-ro', version: 'v', size_bytes: '1' },
    bearer(repoToken('1001', ['refs/heads/main', 1])));
  assert.equal(finalize.status, 403);
  assert.equal(finalize.body.code, 'permission_denied');
  const listed = await twirp(verified.url, 'ListCacheEntries', {}, bearer(repoToken('1001', ['refs/heads/main', 1])));
  assert.deepEqual(listed.body.entries.map((e) => e.key), ['build-1']);
});

test('github-jwt: a token without a readable scope is denied reads in the words the toolkit knows, on v2 and v1', async () => {
  const main = asJob(verified, repoToken('1003', ['refs/heads/main', 3]));
  const saved = await main.saveFiles('rd-save', 'read-denied-key', { 'r.bin': randomBytes(1000) });
  assert.ok(saved.id > 0, saved.out);
  const writeOnly = repoToken('1003', ['refs/heads/main', 2]);
  const raw = await twirp(verified.url, 'GetCacheEntryDownloadURL', { key: 'read-denied-key', restore_keys: [], version: 'v' }, bearer(writeOnly));
  assert.equal(raw.status, 403);
  assert.equal(raw.body.code, 'permission_denied');
  assert.match(raw.body.msg, /^cache read denied:/);
  const v1 = await fetch(`${verified.url}/_apis/artifactcache/cache?keys=read-denied-key&version=v`, { headers: bearer(writeOnly) });
  assert.equal(v1.status, 403);
  assert.match((await v1.json()).message, /^cache read denied:/);
  // The real toolkit takes both as a policy denial: a warning and a miss.
  for (const extra of [{}, { GITHUB_SERVER_URL: 'https://ghes.example.internal', ACTIONS_CACHE_SERVICE_V2: '', ACTIONS_RESULTS_URL: '' }]) {
    const job = jobs(() => verified.url, () => root, () => ({ ACTIONS_RUNTIME_TOKEN: writeOnly, ...extra }));
    const r = await job.restoreInto('rd-restore', 'read-denied-key');
    assert.equal(r.matched, null, r.out);
    assert.match(r.out, /::warning::Failed to restore: .*cache read denied:/);
  }
  // A read-only job (the runner says so in ACTIONS_CACHE_MODE) restores and
  // does not try to save.
  const readOnly = jobs(() => verified.url, () => root, () => ({
    ACTIONS_RUNTIME_TOKEN: repoToken('1003', ['refs/heads/main', 1]),
    ACTIONS_CACHE_MODE: 'read',
  }));
  const back = await readOnly.restoreInto('ro-mode-restore', 'read-denied-key');
  assert.deepEqual(back.files, saved.expected);
  const skipped = await readOnly.saveFiles('ro-mode-save', 'read-only-mode-key', { 'x.txt': 'x' });
  assert.equal(skipped.id, -1);
  assert.match(skipped.out, /Cache save skipped/);
});

// `hoard runner check` as a job step runs it, with the job's token and URL.
// Asynchronously: the JWKS server it may need lives in this process.
const runnerCheck = (token, url) =>
  new Promise((resolve) => {
    const env = { PATH: process.env.PATH, ACTIONS_RESULTS_URL: url, ACTIONS_CACHE_SERVICE_V2: 'true', ACTIONS_RUNTIME_TOKEN: token, HOARD_LOG: 'warn' };
    execFile(hoardBin(), ['runner', 'check'], { env }, (error, stdout, stderr) =>
      resolve({ status: error ? error.code : 0, stdout, stderr }));
  });

test('github-jwt: `hoard runner check` in a job reports the verified namespace and scopes', async () => {
  const run = (token, url = `${verified.url}/`) => runnerCheck(token, url);
  const branch = await run(repoToken('1004', ['refs/heads/feature', 3], ['refs/heads/main', 1]));
  assert.equal(branch.status, 0, branch.stdout + branch.stderr);
  assert.match(branch.stdout, /auth mode github-jwt/);
  assert.match(branch.stdout, /namespace: 1004/);
  assert.match(branch.stdout, /read scopes: refs\/heads\/feature, refs\/heads\/main/);
  assert.match(branch.stdout, /write scope: refs\/heads\/feature/);
  assert.match(branch.stdout, /restore: allowed; save: allowed/);
  const readOnly = await run(repoToken('1004', ['refs/heads/main', 1]));
  assert.equal(readOnly.status, 0);
  assert.match(readOnly.stdout, /restore: allowed; save: denied/);
  const forged = await run(jwt({ repository_id: '1004' }, { key: strangerKey.privateKey }));
  assert.equal(forged.status, 1, forged.stdout);
  assert.match(forged.stdout, /FAIL: hoard \(github-jwt\) refused the job's token/);
  // Pointed at something that is not hoard (the JWKS server here).
  const notHoard = await run(repoToken('1004', ['refs/heads/main', 3]), `http://127.0.0.1:${jwks.address().port}/`);
  assert.equal(notHoard.status, 1);
  assert.match(notHoard.stdout, /is not hoard/);
});

test('tenant-token+github-jwt: the tenant in the path, the repository from the verified token', async () => {
  const both = await start({
    HOARD_AUTH_MODE: 'tenant-token+github-jwt',
    HOARD_AUTH_TENANTS: `team-a=${tokenHash(TOKEN_A)},team-b=${tokenHash(TOKEN_B)}`,
    HOARD_AUTH_GITHUB_ISSUER: issuer,
    HOARD_AUTH_GITHUB_JWKS_URL: `http://127.0.0.1:${jwks.address().port}/jwks`,
  });
  const token = repoToken('1001', ['refs/heads/main', 3]);
  const call = async (tenant, method, body, headers = bearer(token)) => {
    const prefix = tenant ? `/t/${tenant}` : '';
    const r = await fetch(`${both.url}${prefix}/twirp/github.actions.results.api.v1.CacheService/${method}`, {
      method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body),
    });
    return { status: r.status, body: await r.json() };
  };
  // Save in team-a through the path, with raw Azure Put Blob.
  const created = await call(TOKEN_A, 'CreateCacheEntry', { key: 'k', version: 'v' });
  assert.equal(created.body.ok, true, JSON.stringify(created.body));
  const put = await fetch(created.body.signed_upload_url, {
    method: 'PUT', headers: { 'x-ms-blob-type': 'BlockBlob' }, body: 'team-a bytes',
  });
  assert.equal(put.status, 201);
  assert.equal((await call(TOKEN_A, 'FinalizeCacheEntryUpload', { key: 'k', version: 'v', size_bytes: '12' })).body.ok, true);
  assert.equal((await call(TOKEN_A, 'LookupCacheEntry', { key: 'k', version: 'v' })).body.exists, true);
  // Same repository token, other tenant: nothing.
  assert.equal((await call(TOKEN_B, 'LookupCacheEntry', { key: 'k', version: 'v' })).body.exists, false);
  // Both are required.
  assert.equal((await call(null, 'LookupCacheEntry', { key: 'k', version: 'v' })).status, 401);
  assert.equal((await call(TOKEN_A, 'LookupCacheEntry', { key: 'k', version: 'v' }, {})).status, 401);
  assert.equal((await call(TOKEN_A, 'LookupCacheEntry', { key: 'k', version: 'v' }, bearer(TOKEN_A))).status, 401);
  // The self-check sees the same: the tenant from the path, the repository from the token.
  const checked = await runnerCheck(token, `${both.url}/t/${TOKEN_A}/`);
  assert.equal(checked.status, 0, checked.stdout + checked.stderr);
  assert.match(checked.stdout, /auth mode tenant-token\+github-jwt/);
  assert.match(checked.stdout, /namespace: team-a\/1001/);
  assert.ok(!checked.stdout.includes(TOKEN_A), checked.stdout);
  const noTenant = await runnerCheck(token, `${both.url}/`);
  assert.equal(noTenant.status, 1, noTenant.stdout);
  assert.match(noTenant.stdout, /refused the job's token/);
});

test('no secret appears in any log', async () => {
  // Make every hoard log what it has, including refusals.
  for (const h of started) {
    await twirp(h.url, 'ListCacheEntries', {}, bearer(TOKEN_A));
    await twirp(h.url, 'ListCacheEntries', {}, bearer('hoard_wrong_token'));
  }
  for (const h of started) {
    const log = h.log();
    assert.ok(log.length > 1000, 'debug logging is on');
    for (const s of secrets) assert.ok(!log.includes(s), `a secret appears in the log of ${h.url}`);
    for (const s of [process.env.AWS_SECRET_ACCESS_KEY, 'hoard-test-secret-key']) {
      if (s) assert.ok(!log.includes(s), 'the S3 secret appears in a log');
    }
    // Runtime tokens are secrets too: no JWT-looking string is logged.
    assert.doesNotMatch(log, /eyJ[A-Za-z0-9_-]{10,}\.eyJ/);
  }
});
