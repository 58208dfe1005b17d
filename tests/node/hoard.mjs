// Starts the real hoard binary for a test file and gives the runner environment
// that points the real clients at it.
import { spawn } from 'node:child_process';
import { mkdtempSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

export function hoardBin() {
  if (process.env.HOARD_BIN) return process.env.HOARD_BIN;
  const target = process.env.CARGO_TARGET_DIR || path.join(here, '..', '..', 'target');
  const bin = path.join(target, 'debug', 'hoard');
  if (!existsSync(bin)) throw new Error(`${bin} not found: build hoard first or set HOARD_BIN`);
  return bin;
}

export async function startHoard(env = {}) {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'hoard-node-'));
  const child = spawn(hoardBin(), ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir], {
    env: { ...process.env, HOARD_LOG: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const url = await new Promise((resolve, reject) => {
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
  child.removeAllListeners('exit');
  return {
    url,
    dataDir,
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
