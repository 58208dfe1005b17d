// One cache step, as a job would run it: `node worker.mjs save|restore <key>
// <restoreKeysJSON> <path>...`, in the workspace named by GITHUB_WORKSPACE.
// Prints `RESULT:<json>` last.
import * as cache from '@actions/cache';

const [op, key, restoreKeys, ...paths] = process.argv.slice(2);
process.chdir(process.env.GITHUB_WORKSPACE);
let result;
if (op === 'save') {
  result = await cache.saveCache(paths, key);
} else {
  result = (await cache.restoreCache(paths, key, JSON.parse(restoreKeys))) ?? null;
}
console.log(`RESULT:${JSON.stringify(result)}`);
