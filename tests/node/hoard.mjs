// Starts the real hoard binary for a test file and gives the runner environment
// that points the real clients at it.
//
// HOARD_TEST_BACKEND picks the stores, as in the Rust harness: sqlite-dir
// (default), pg-dir (a throwaway PostgreSQL database) or pg-s3 (PostgreSQL and a
// real S3 server, s3s-fs, started here).
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, existsSync, rmSync } from 'node:fs';
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

async function waitForPort(port, timeoutMs = 10000) {
  const start = Date.now();
  for (;;) {
    const ok = await new Promise((resolve) => {
      const sock = net.connect(port, '127.0.0.1');
      sock.on('connect', () => { sock.end(); resolve(true); });
      sock.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() - start > timeoutMs) throw new Error(`nothing listens on ${port}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function s3Binary() {
  if (process.env.HOARD_S3_SERVER) return process.env.HOARD_S3_SERVER;
  const installed = path.join(homedir(), '.cache/hoard/tools/bin/s3s-fs');
  return existsSync(installed) ? installed : 's3s-fs';
}

// The database and bucket of the chosen backend: their hoard environment and a
// cleanup function.
async function deployment() {
  const env = {};
  const cleanups = [];
  let objectsRoot = null;
  if (backend !== 'sqlite-dir') {
    const name = `hoard_test_node_${process.pid}_${Math.random().toString(16).slice(2, 10)}`;
    await admin(`CREATE DATABASE ${name}`);
    env.HOARD_DATABASE_URL = adminUrl.replace(/\/[^/]*$/, `/${name}`);
    cleanups.push(() => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
  }
  if (backend === 'pg-s3') {
    const root = mkdtempSync(path.join(tmpdir(), 'hoard-s3-'));
    mkdirSync(path.join(root, 'hoard-test'));
    // s3s-fs keeps each object as a file: tests change them behind hoard's back.
    objectsRoot = path.join(root, 'hoard-test', 'cache');
    const port = await freePort();
    const s3 = spawn(s3Binary(), [
      '--host', '127.0.0.1', '--port', String(port),
      '--access-key', 'hoard-test-access', '--secret-key', 'hoard-test-secret-key', root,
    ], { stdio: 'ignore' });
    await waitForPort(port);
    Object.assign(env, {
      HOARD_STORAGE_URL: 's3://hoard-test/cache',
      HOARD_STORAGE_ENDPOINT: `http://127.0.0.1:${port}`,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'hoard-test-access',
      AWS_SECRET_ACCESS_KEY: 'hoard-test-secret-key',
    });
    cleanups.push(async () => {
      const exited = new Promise((r) => s3.once('exit', r));
      s3.kill('SIGKILL');
      await exited;
      rmSync(root, { recursive: true, force: true });
    });
  }
  return { env, objectsRoot, cleanup: async () => { for (const c of cleanups.reverse()) await c(); } };
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
    // Where the stored objects are files, whichever store holds them.
    objectsDir: stores.objectsRoot ?? path.join(dataDir, 'blobs', 'objects'),
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
