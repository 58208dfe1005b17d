// The results passthrough: the real @actions/artifact (what upload-artifact and
// download-artifact run) with ACTIONS_RESULTS_URL pointing at hoard, which
// forwards the artifact service to a results service on 127.0.0.1 and keeps
// serving the cache itself.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startHoard, twirp } from './hoard.mjs';
import { jobs, runStep } from './jobs.mjs';
import { startResultsUpstream } from './results-upstream.mjs';

let hoard;
let upstream;
let root;

// A runtime token shaped like the runner's: the artifact client reads the run
// and job ids from its `scp` claim (it does not verify it).
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const token = `${b64({ alg: 'RS256', typ: 'JWT' })}.${b64({ scp: 'Actions.GenericRead:x Actions.Results:run-7:job-9' })}.c2ln`;

before(async () => {
  upstream = await startResultsUpstream();
  hoard = await startHoard({ HOARD_PASSTHROUGH_UPSTREAM: `${upstream.url}/`, HOARD_PASSTHROUGH_TIMEOUT_SECS: '2' });
  root = mkdtempSync(path.join(tmpdir(), 'hoard-artifacts-'));
});

after(async () => {
  await hoard.stop();
  await upstream.stop();
  rmSync(root, { recursive: true, force: true });
});

async function artifactStep(args) {
  const env = { GITHUB_SERVER_URL: '', ACTIONS_RESULTS_URL: `${hoard.url}/`, ACTIONS_RUNTIME_TOKEN: token, GITHUB_WORKSPACE: root };
  return (await runStep('artifact-worker.mjs', args, env)).result;
}

const sha = (b) => createHash('sha256').update(b).digest('hex');

test('upload-artifact and download-artifact work through hoard, with the token passed on', async () => {
  const src = path.join(root, 'src');
  mkdirSync(path.join(src, 'sub'), { recursive: true });
  const files = { 'report.txt': Buffer.from('built by job 9\n'), 'sub/data.bin': randomBytes(3 * 1024 * 1024) };
  for (const [rel, content] of Object.entries(files)) writeFileSync(path.join(src, rel), content);
  const up = await artifactStep(['upload', 'build-output', src, ...Object.keys(files).map((f) => path.join(src, f))]);
  assert.ok(up.id > 0, JSON.stringify(up));
  assert.equal(upstream.artifacts.length, 1);
  assert.equal(upstream.artifacts[0].run, 'run-7');

  const dest = path.join(root, 'dest');
  const down = await artifactStep(['download', 'build-output', dest]);
  assert.equal(down.id, up.id);
  for (const [rel, content] of Object.entries(files)) {
    assert.equal(sha(readFileSync(path.join(dest, rel))), sha(content), rel);
  }
  // Every artifact call went through hoard to the upstream, with the job's
  // token and without hoard's hop-by-hop headers.
  const twirpCalls = upstream.calls.filter((c) => c.path.includes('ArtifactService'));
  assert.deepEqual(
    [...new Set(twirpCalls.map((c) => c.path.split('/').pop()))].sort(),
    ['CreateArtifact', 'FinalizeArtifact', 'GetSignedArtifactURL', 'ListArtifacts'],
  );
  for (const c of twirpCalls) {
    assert.equal(c.headers.authorization, `Bearer ${token}`);
    assert.equal(c.headers.host, new URL(upstream.url).host);
  }
  // The cache on the same URL is still hoard's own.
  const { id } = await jobs(() => hoard.url, () => root).saveFiles('cache-beside-artifacts', 'beside-artifacts', { 'f.txt': 'cached' });
  assert.ok(id > 0);
  assert.equal(upstream.calls.filter((c) => c.path.includes('CacheService')).length, 0);
  const listed = await twirp(hoard.url, 'ListCacheEntries', { key: 'beside-artifacts' });
  assert.equal(listed.body.entries.length, 1);
});

test('large bodies stream through both ways with bounded memory, query and headers as sent', async (t) => {
  const size = 512 * 1024 * 1024;
  const chunk = randomBytes(1024 * 1024);
  const query = '?a=1&b=%2F%20x&c=caf%C3%A9&d=';
  const { port } = new URL(hoard.url);
  // node:http, not fetch, which refuses to send Connection headers.
  const { status, headers, body } = await new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: `/twirp/test.Probe/Count${query}`,
        headers: {
          'content-type': 'application/octet-stream',
          authorization: 'Bearer big',
          'x-custom': 'kept',
          connection: 'keep-alive, x-hop',
          'x-hop': 'dropped',
        },
      },
      (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: text }));
      },
    );
    req.on('error', reject);
    let sent = 0;
    const pump = () => {
      while (sent < size) {
        sent += chunk.length;
        if (!req.write(chunk)) return req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
  assert.equal(status, 200, body);
  assert.equal(headers['x-upstream'], 'results-test');
  const got = JSON.parse(body);
  assert.equal(got.bytes, size);
  assert.equal(got.rawUrl, `/twirp/test.Probe/Count${query}`);
  assert.equal(got.headers.authorization, 'Bearer big');
  assert.equal(got.headers['x-custom'], 'kept');
  assert.equal(got.headers['x-hop'], undefined);
  // Sent without a length, so it went on chunked, not buffered to count it.
  assert.equal(got.headers['content-length'], undefined);
  // And 512 MiB back from the upstream, counted as it arrives.
  const emitted = await fetch(`${hoard.url}/twirp/test.Probe/Emit?mib=512`, { method: 'POST' });
  assert.equal(emitted.status, 200);
  assert.equal(emitted.headers.get('content-length'), String(size));
  let received = 0;
  for await (const piece of emitted.body) received += piece.length;
  assert.equal(received, size);
  const proc = readFileSync(`/proc/${hoard.pid}/status`, 'utf8');
  const hwmMiB = Number(proc.match(/VmHWM:\s+(\d+) kB/)[1]) / 1024;
  t.diagnostic(`hoard's peak RSS after forwarding 512 MiB each way: ${hwmMiB.toFixed(1)} MiB`);
  assert.ok(hwmMiB < 128, `hoard's peak RSS was ${hwmMiB} MiB after forwarding 512 MiB each way`);
});

test('the upstream down or silent is a Twirp 503, never a hang', async () => {
  const closed = await new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
  const lonely = await startHoard({ HOARD_PASSTHROUGH_UPSTREAM: `http://127.0.0.1:${closed}/`, HOARD_PASSTHROUGH_TIMEOUT_SECS: '2' });
  try {
    const r = await fetch(`${lonely.url}/twirp/github.actions.results.api.v1.ArtifactService/CreateArtifact`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer secret-token-value' },
      body: '{}',
    });
    assert.equal(r.status, 503);
    const e = await r.json();
    assert.equal(e.code, 'unavailable');
    assert.match(e.msg, /results service upstream \(127\.0\.0\.1:\d+\) is unreachable/);
    assert.doesNotMatch(lonely.log(), /secret-token-value/);
  } finally {
    await lonely.stop();
  }
  const started = Date.now();
  const r = await fetch(`${hoard.url}/twirp/test.Probe/Hang`, { method: 'POST', body: '{}' });
  assert.equal(r.status, 503);
  assert.match((await r.json()).msg, /did not answer in time/);
  assert.ok(Date.now() - started < 10_000);
});

test('a tenant prefix is hoard\'s own: the upstream sees the path without it', async () => {
  for (const [sent, seen] of [
    ['/t/tenant-token-value/twirp/test.Probe/Count?x=1', '/twirp/test.Probe/Count?x=1'],
    ['/t/tenant-token-value/_apis/pipelines/x', '/_apis/pipelines/x'],
  ]) {
    const before = upstream.calls.length;
    const r = await fetch(`${hoard.url}${sent}`, { method: 'POST', body: 'x' });
    await r.arrayBuffer();
    assert.equal(upstream.calls.length, before + 1, sent);
    assert.equal(upstream.calls[before].rawUrl, seen);
  }
});

test('without an upstream, paths hoard does not serve are 404', async () => {
  const r = await fetch(`${hoard.url}/twirp/github.actions.results.api.v1.CacheService/NoSuchMethod`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{}',
  });
  // Methods of hoard's own service are never forwarded.
  assert.equal(r.status, 404);
  assert.equal((await r.json()).code, 'bad_route');
  const plain = await startHoard();
  try {
    const other = await fetch(`${plain.url}/twirp/github.actions.results.api.v1.ArtifactService/CreateArtifact`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    assert.equal(other.status, 404);
    assert.equal((await fetch(`${plain.url}/some/other/path`)).status, 404);
  } finally {
    await plain.stop();
  }
});
