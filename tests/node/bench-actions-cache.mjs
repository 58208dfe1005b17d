// Benchmark helper (not a test): times saveCache and restoreCache of one file
// through the real @actions/cache against a running hoard.
// node bench-actions-cache.mjs <file> <results-url> <work-dir> [v1|v2|v2-blob-host]
// v1 runs the toolkit as on a GHES runner (the legacy `_apis/artifactcache` API);
// v2-blob-host reaches hoard under a `.blob.core.windows.net` name, so signed
// URLs carry that host and the toolkit restores in parallel ranged segments.
import * as cache from '@actions/cache';
import { linkSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { BLOB_HOST } from './blob-host.mjs';

const [file, givenUrl, work, mode = 'v2'] = process.argv.slice(2);
const api = mode === 'v1' ? 'v1' : 'v2';
const resultsUrl = mode === 'v2-blob-host' ? givenUrl.replace('127.0.0.1', BLOB_HOST) : givenUrl;
const ws = path.join(work, 'ac-workspace');
const temp = path.join(work, 'ac-temp');
rmSync(ws, { recursive: true, force: true });
mkdirSync(path.join(ws, 'data'), { recursive: true });
mkdirSync(temp, { recursive: true });
linkSync(file, path.join(ws, 'data', 'blob.bin'));
Object.assign(process.env, {
  ACTIONS_RESULTS_URL: resultsUrl,
  ACTIONS_CACHE_URL: resultsUrl,
  ACTIONS_CACHE_SERVICE_V2: api === 'v1' ? '' : 'true',
  ACTIONS_RUNTIME_TOKEN: 'bench-token',
  GITHUB_WORKSPACE: ws,
  RUNNER_TEMP: temp,
});
if (api === 'v1') process.env.GITHUB_SERVER_URL = 'https://ghes.example.internal';
else delete process.env.GITHUB_SERVER_URL;
process.chdir(ws);
const key = `bench-actions-cache-${mode}-${Date.now()}`;
let t = performance.now();
const id = await cache.saveCache(['data'], key);
const saveSecs = (performance.now() - t) / 1000;
if (!(id > 0)) throw new Error(`save failed: ${id}`);
rmSync(path.join(ws, 'data'), { recursive: true, force: true });
t = performance.now();
const hit = await cache.restoreCache(['data'], key);
const restoreSecs = (performance.now() - t) / 1000;
if (hit !== key) throw new Error(`restore missed: ${hit}`);
const size = statSync(path.join(ws, 'data', 'blob.bin')).size;
if (size !== statSync(file).size) throw new Error(`restored ${size} bytes`);
// The client's own floor (v2 runs only): the toolkit's tar and zstd of the same
// directory into a local archive, and back, with no network at all. Internal
// modules of the package, reached by path (its exports list only the API).
let floor = null;
if (mode === 'v2') {
  const internal = (name) => import(new URL(`./node_modules/@actions/cache/lib/internal/${name}.js`, import.meta.url));
  const [tar, utils] = await Promise.all([internal('tar'), internal('cacheUtils')]);
  const method = await utils.getCompressionMethod();
  const archiveFolder = mkdtempSync(path.join(temp, 'floor-'));
  t = performance.now();
  await tar.createTar(archiveFolder, ['data'], method);
  const tarSecs = (performance.now() - t) / 1000;
  rmSync(path.join(ws, 'data'), { recursive: true, force: true });
  t = performance.now();
  await tar.extractTar(path.join(archiveFolder, utils.getCacheFileName(method)), method);
  const untarSecs = (performance.now() - t) / 1000;
  if (statSync(path.join(ws, 'data', 'blob.bin')).size !== statSync(file).size) throw new Error('floor: bad extract');
  floor = { save_secs: tarSecs, restore_secs: untarSecs };
}
const lookup = await fetch(`${resultsUrl}twirp/github.actions.results.api.v1.CacheService/ListCacheEntries`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ key }),
}).then((r) => r.json());
rmSync(ws, { recursive: true, force: true });
rmSync(temp, { recursive: true, force: true });

console.log(`BENCH:${JSON.stringify({ save_secs: saveSecs, restore_secs: restoreSecs, floor, archive_bytes: Number(lookup.entries[0].size_bytes) })}`);
