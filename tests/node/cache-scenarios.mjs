// Save and restore scenarios that every API of the real @actions/cache must pass
// the same way: registered by each API's test file with its job helpers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';

// `label` prefixes the test names and keys ('' for the v2 suite); `helpers` is
// what jobs() returns for that API.
export function sharedScenarios(label, { job, step, tree, writeTree, saveFiles, restoreInto }) {
  const name = (text) => (label ? `${label}: ${text}` : text);
  const k = (key) => (label ? `${label}-${key}` : key);

  test(name('restore keys that prefix two saved keys restore the newest'), async () => {
    const older = await saveFiles('prefix-save-1', k('deps-linux-aaa'), { 'f.txt': 'older' });
    assert.ok(older.id > 0);
    const newer = await saveFiles('prefix-save-2', k('deps-linux-bbb'), { 'f.txt': 'newer' });
    assert.ok(newer.id > 0);
    const r = await restoreInto('prefix-restore', k('deps-linux-ccc'), [k('deps-linux-'), k('deps-')]);
    assert.equal(r.matched, k('deps-linux-bbb'));
    assert.deepEqual(r.files, newer.expected);
  });

  test(name('the same key with other paths is another version: a miss'), async () => {
    const saved = await saveFiles('version-save', k('versioned-key'), { 'x.txt': 'x' }, 'path-a');
    assert.ok(saved.id > 0);
    const r = await restoreInto('version-restore', k('versioned-key'), [], 'path-b');
    assert.equal(r.matched, null);
    assert.equal(r.files, null);
  });

  test(name('a second save of an existing key fails cleanly and keeps the content'), async () => {
    const first = await saveFiles('dup-save-1', k('dup-key'), { 'f.txt': 'first' });
    assert.ok(first.id > 0);
    const second = await saveFiles('dup-save-2', k('dup-key'), { 'f.txt': 'second' });
    assert.equal(second.id, -1);
    assert.match(second.out, /another job may be creating this cache/);
    const r = await restoreInto('dup-restore', k('dup-key'));
    assert.deepEqual(r.files, first.expected);
  });

  test(name('two concurrent saves of one new key: exactly one wins, the restore is intact'), async () => {
    const contents = [randomBytes(3 * 1024 * 1024), randomBytes(3 * 1024 * 1024)];
    const racers = contents.map((c, i) => {
      const j = job(`race-save-${i}`);
      writeTree(path.join(j.ws, 'cached'), { 'data.bin': c });
      return { j, expected: tree(path.join(j.ws, 'cached')) };
    });
    const results = await Promise.all(racers.map(({ j }) => step(j, 'save', k('race-key'), ['cached'])));
    const ids = results.map((r) => r.result);
    assert.equal(ids.filter((id) => id > 0).length, 1, `ids ${ids}`);
    assert.equal(ids.filter((id) => id === -1).length, 1, `ids ${ids}`);
    const winner = racers[ids.findIndex((id) => id > 0)];
    const r = await restoreInto('race-restore', k('race-key'));
    assert.equal(r.matched, k('race-key'));
    assert.deepEqual(r.files, winner.expected);
  });

  test(name('a key never saved is a clean miss'), async () => {
    const r = await restoreInto('never-restore', k('never-saved-key'), [k('never-saved-')]);
    assert.equal(r.matched, null);
    assert.equal(r.files, null);
    assert.doesNotMatch(r.out, /::error::|::warning::/);
  });
}
