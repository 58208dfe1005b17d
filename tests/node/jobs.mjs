// Cache steps as a job runs them: each in its own process with the runner's
// environment, in a fresh workspace, through the real @actions/cache.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync, readdirSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runnerEnv } from './hoard.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

// Runs `script` (in this directory) as a job step with `env` over this
// process's environment; resolves with what it printed after `RESULT:` last
// (parsed) and all it printed.
export function runStep(script, args, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(here, script), ...args], {
      cwd: here,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('exit', (code) => {
      const m = out.match(/RESULT:(.*)\s*$/);
      if (code !== 0 || !m) return reject(new Error(`${script} ${args.join(' ')} exited ${code}:\n${out}`));
      resolve({ result: JSON.parse(m[1]), out });
    });
  });
}

// Helpers bound to a hoard (its URL) and a directory for job workspaces, both
// read when called, so they can be set up in a before() hook; `env` gives more
// runner variables (e.g. the job's ACTIONS_RUNTIME_TOKEN).
export function jobs(url, root, env = () => ({})) {
  // A fresh job workspace and temp dir.
  function job(name) {
    const ws = path.join(root(), name, 'workspace');
    const temp = path.join(root(), name, 'temp');
    mkdirSync(ws, { recursive: true });
    mkdirSync(temp, { recursive: true });
    return { ws, temp };
  }

  // Runs one cache step in its own process, as a job step does.
  function step(j, op, key, paths, restoreKeys = []) {
    // github.com unless the job's env() names another server (a GHES host
    // puts the toolkit on the v1 API).
    const stepEnv = { GITHUB_SERVER_URL: '', ...runnerEnv(url(), env()), GITHUB_WORKSPACE: j.ws, RUNNER_TEMP: j.temp };
    return runStep('worker.mjs', [op, key, JSON.stringify(restoreKeys), ...paths], stepEnv);
  }

  // Every file under dir, relative path -> sha256.
  function tree(dir) {
    const out = {};
    const walk = (d) => {
      for (const name of readdirSync(d)) {
        const p = path.join(d, name);
        if (statSync(p).isDirectory()) walk(p);
        else out[path.relative(dir, p)] = createHash('sha256').update(readFileSync(p)).digest('hex');
      }
    };
    walk(dir);
    return out;
  }

  function writeTree(dir, files) {
    for (const [rel, content] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
      writeFileSync(path.join(dir, rel), content);
    }
  }

  // A job whose workspace holds `dirName/random.bin` of `mib` random MiB,
  // written a MiB at a time; and that directory's tree.
  function bigJob(name, dirName, mib) {
    const j = job(name);
    const dir = path.join(j.ws, dirName);
    mkdirSync(dir, { recursive: true });
    const fd = openSync(path.join(dir, 'random.bin'), 'w');
    for (let i = 0; i < mib; i++) writeSync(fd, randomBytes(1024 * 1024));
    closeSync(fd);
    return { j, expected: tree(dir) };
  }

  async function saveFiles(name, key, files, dirName = 'cached') {
    const j = job(name);
    writeTree(path.join(j.ws, dirName), files);
    const expected = tree(path.join(j.ws, dirName));
    const { result, out } = await step(j, 'save', key, [dirName]);
    return { id: result, expected, out };
  }

  async function restoreInto(name, key, restoreKeys = [], dirName = 'cached') {
    const j = job(name);
    const { result, out } = await step(j, 'restore', key, [dirName], restoreKeys);
    const dir = path.join(j.ws, dirName);
    let files = null;
    try {
      files = tree(dir);
    } catch {
      files = null;
    }
    return { matched: result, files, out };
  }

  return { job, step, tree, writeTree, bigJob, saveFiles, restoreInto };
}
