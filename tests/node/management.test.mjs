// The management API with caches saved by the real @actions/cache: listing,
// filtering, sorting, paging and deleting them in GitHub's shapes (field names
// and types checked against the OpenAPI document hoard serves), usage, who
// may do what, GitHub's own paths for a mapped repository, and `hoard cache`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { hoardBin, startHoard } from './hoard.mjs';
import { jobs } from './jobs.mjs';

const token = (name) => `hoard_${name}_${randomBytes(16).toString('hex')}`;
const TOKEN_A = token('a');
const TOKEN_B = token('b');
const ADMIN = token('admin');

function tokenHash(t) {
  const salt = randomBytes(16);
  return `sha256:${salt.toString('hex')}:${createHash('sha256').update(salt).update(t).digest('hex')}`;
}

let hoard;
let root;
let openapi;
const asA = jobs(() => hoard.url, () => root, () => ({ ACTIONS_RUNTIME_TOKEN: TOKEN_A }));
const asB = jobs(() => hoard.url, () => root, () => ({ ACTIONS_RUNTIME_TOKEN: TOKEN_B }));

before(async () => {
  hoard = await startHoard({
    HOARD_AUTH_MODE: 'tenant-token',
    HOARD_AUTH_TENANTS: `team-a=${tokenHash(TOKEN_A)},team-b=${tokenHash(TOKEN_B)}`,
    HOARD_MANAGEMENT_ADMIN_TOKEN_HASH: tokenHash(ADMIN),
    HOARD_MANAGEMENT_REPOSITORIES: 'Octo/App=team-a',
  });
  root = mkdtempSync(path.join(tmpdir(), 'hoard-mgmt-'));
  openapi = await (await fetch(`${hoard.url}/_hoard/api/openapi.json`)).json();
  // Caches of different sizes, saved one after another (distinct times).
  for (const [key, kib] of [['npm-linux-1', 300], ['npm-linux-2', 100], ['cargo-1', 200]]) {
    const s = await asA.saveFiles(`save-${key}`, key, { 'data.bin': randomBytes(kib * 1024) });
    assert.ok(s.id > 0, s.out);
  }
  const b = await asB.saveFiles('save-b', 'b-only', { 'data.bin': randomBytes(1024) });
  assert.ok(b.id > 0, b.out);
});

after(async () => {
  await hoard.stop();
  rmSync(root, { recursive: true, force: true });
});

// A value against a schema of the served OpenAPI document: types, required
// fields, no others, formats of timestamps.
function conforms(value, schema, where = '$') {
  if (schema.$ref) return conforms(value, openapi.components.schemas[schema.$ref.split('/').pop()], where);
  switch (schema.type) {
    case 'object':
      assert.equal(typeof value, 'object', where);
      for (const k of schema.required || []) assert.ok(k in value, `${where}.${k} missing`);
      for (const [k, v] of Object.entries(value)) {
        assert.ok(schema.properties[k] || schema.additionalProperties !== false, `${where}.${k} is not in the document`);
        if (schema.properties[k]) conforms(v, schema.properties[k], `${where}.${k}`);
      }
      break;
    case 'array':
      assert.ok(Array.isArray(value), where);
      value.forEach((v, i) => conforms(v, schema.items, `${where}[${i}]`));
      break;
    case 'integer':
      assert.ok(Number.isInteger(value), `${where} = ${value} is not an integer`);
      break;
    case 'string':
      assert.equal(typeof value, 'string', where);
      if (schema.format === 'date-time') assert.match(value, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, where);
      break;
    default:
      throw new Error(`schema type ${schema.type} at ${where}`);
  }
}

// A call, its answer checked against the document's response for its status.
async function api(method, pathAndQuery, who, docPath) {
  const headers = { accept: 'application/vnd.github+json' };
  if (who) headers.authorization = `Bearer ${who}`;
  const r = await fetch(`${hoard.url}${pathAndQuery}`, { method, headers });
  const text = await r.text();
  const body = text ? JSON.parse(text) : null;
  const op = openapi.paths[docPath]?.[method.toLowerCase()];
  assert.ok(op, `${method} ${docPath} is not in the document`);
  const documented = op.responses[String(r.status)];
  assert.ok(documented, `${method} ${pathAndQuery} answered ${r.status}, not documented`);
  const schema = documented.content?.['application/json']?.schema
    ?? (documented.$ref && openapi.components.responses.Error.content['application/json'].schema);
  if (schema) conforms(body, schema);
  else assert.equal(body, null);
  return { status: r.status, body };
}

const NS = '/_hoard/api/namespaces/{namespace}';
const list = (query, who = ADMIN) => api('GET', `/_hoard/api/namespaces/team-a/caches${query}`, who, `${NS}/caches`);

test('lists, filters, sorts and pages what the clients saved', async () => {
  const all = await list('');
  assert.equal(all.status, 200);
  assert.equal(all.body.total_count, 3);
  // Default: most recently used first.
  assert.deepEqual(all.body.actions_caches.map((c) => c.key), ['cargo-1', 'npm-linux-2', 'npm-linux-1']);
  const refs = new Set(all.body.actions_caches.map((c) => c.ref));
  assert.equal(refs.size, 1);
  const [ref] = refs;

  const npm = await list('?key=npm-');
  assert.equal(npm.body.total_count, 2);
  assert.deepEqual(npm.body.actions_caches.map((c) => c.key).sort(), ['npm-linux-1', 'npm-linux-2']);
  assert.equal((await list(`?ref=${encodeURIComponent(ref)}`)).body.total_count, 3);
  assert.equal((await list('?ref=refs/heads/elsewhere')).body.total_count, 0);

  const bySize = await list('?sort=size_in_bytes&direction=asc');
  const sizes = bySize.body.actions_caches.map((c) => c.size_in_bytes);
  assert.deepEqual(sizes, [...sizes].sort((a, b) => a - b));
  assert.deepEqual(bySize.body.actions_caches.map((c) => c.key), ['npm-linux-2', 'cargo-1', 'npm-linux-1']);
  const oldest = await list('?sort=created_at&direction=asc');
  assert.deepEqual(oldest.body.actions_caches.map((c) => c.key), ['npm-linux-1', 'npm-linux-2', 'cargo-1']);

  const page1 = await list('?sort=created_at&direction=asc&per_page=2&page=1');
  const page2 = await list('?sort=created_at&direction=asc&per_page=2&page=2');
  assert.equal(page1.body.total_count, 3);
  assert.deepEqual(
    [...page1.body.actions_caches, ...page2.body.actions_caches].map((c) => c.key),
    ['npm-linux-1', 'npm-linux-2', 'cargo-1'],
  );
  assert.equal((await list('?per_page=101')).status, 422);
  assert.equal((await list('?sort=name')).status, 422);
});

test('only the admin token or the namespace\'s own token may look', async () => {
  assert.equal((await list('', TOKEN_A)).status, 200);
  assert.equal((await list('', TOKEN_B)).status, 403);
  assert.equal((await list('', null)).status, 401);
  assert.equal((await list('', token('stranger'))).status, 401);
  const all = (who) => api('GET', '/_hoard/api/cache/usage-by-namespace', who, '/_hoard/api/cache/usage-by-namespace');
  assert.equal((await all(TOKEN_A)).status, 403);
  const usage = await all(ADMIN);
  assert.equal(usage.status, 200);
  assert.deepEqual(usage.body.repository_cache_usages.map((u) => [u.full_name, u.active_caches_count]), [['team-a', 3], ['team-b', 1]]);
  const mine = await api('GET', '/_hoard/api/namespaces/team-b/cache/usage', TOKEN_B, `${NS}/cache/usage`);
  assert.equal(mine.body.active_caches_count, 1);
  assert.ok(mine.body.active_caches_size_in_bytes > 0);
});

test('GitHub\'s own paths answer for a mapped repository', async () => {
  for (const base of ['', '/api/v3']) {
    const r = await api('GET', `${base}/repos/octo/app/actions/caches?key=cargo`, ADMIN, '/repos/{owner}/{repo}/actions/caches');
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.actions_caches.map((c) => c.key), ['cargo-1']);
  }
  const usage = await api('GET', '/repos/octo/app/actions/cache/usage', TOKEN_A, '/repos/{owner}/{repo}/actions/cache/usage');
  assert.equal(usage.body.full_name, 'octo/app');
  const unmapped = await api('GET', '/repos/octo/other/actions/caches', ADMIN, '/repos/{owner}/{repo}/actions/caches');
  assert.equal(unmapped.status, 404);
});

function cli(args) {
  return new Promise((resolve) => {
    execFile(hoardBin(), ['cache', ...args, '--url', hoard.url], { env: { ...process.env, HOARD_TOKEN: ADMIN } },
      (error, stdout, stderr) => resolve({ code: error ? error.code : 0, stdout, stderr }));
  });
}

test('hoard cache lists, measures and deletes through the API', async () => {
  const ls = await cli(['ls', '--namespace', 'team-a', '--key', 'npm-', '--json']);
  assert.equal(ls.code, 0, ls.stderr);
  assert.deepEqual(JSON.parse(ls.stdout).map((c) => c.key).sort(), ['npm-linux-1', 'npm-linux-2']);
  const table = await cli(['ls', '--namespace', 'team-a']);
  assert.match(table.stdout, /^\s+ID\s+KEY/);
  assert.match(table.stdout, /3 of 3 caches/);
  const usage = await cli(['usage']);
  assert.match(usage.stdout, /team-b\s+1\s+\d+/);
  const refused = await cli(['ls', '--namespace', 'team-a', '--token', TOKEN_B]);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /403/);
});

test('deleting by key and by id takes the caches out of restores', async () => {
  const byKey = (who, key) => api('DELETE', `/_hoard/api/namespaces/team-a/caches?key=${key}`, who, `${NS}/caches`);
  assert.equal((await byKey(TOKEN_B, 'npm-linux-1')).status, 403);
  const gone = await byKey(TOKEN_A, 'npm-linux-1');
  assert.equal(gone.status, 200);
  assert.deepEqual(gone.body.actions_caches.map((c) => c.key), ['npm-linux-1']);
  assert.equal((await byKey(TOKEN_A, 'npm-linux-1')).status, 404);
  assert.equal((await asA.restoreInto('after-key', 'npm-linux-1')).matched, null);

  const cargo = (await list('?key=cargo-1')).body.actions_caches[0];
  const byId = (id) => api('DELETE', `/_hoard/api/namespaces/team-a/caches/${id}`, ADMIN, `${NS}/caches/{cache_id}`);
  assert.equal((await byId(cargo.id)).status, 204);
  assert.equal((await byId(cargo.id)).status, 404);
  assert.equal((await asA.restoreInto('after-id', 'cargo-1')).matched, null);
  // The CLI deletes too, and the other namespace kept its cache.
  const rm = await cli(['rm', '--namespace', 'team-a', '--key', 'npm-linux-2']);
  assert.equal(rm.code, 0, rm.stderr);
  assert.equal((await list('')).body.total_count, 0);
  assert.equal((await asB.restoreInto('b-kept', 'b-only')).matched, 'b-only');
});
