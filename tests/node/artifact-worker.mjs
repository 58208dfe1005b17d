// One artifact step, as upload-artifact / download-artifact run it:
// `node artifact-worker.mjs upload <name> <root> <file>...` or
// `node artifact-worker.mjs download <name> <dir>`. Prints `RESULT:<json>` last.
import { DefaultArtifactClient } from '@actions/artifact';

const [op, name, dir, ...files] = process.argv.slice(2);
const client = new DefaultArtifactClient();
let result;
if (op === 'upload') {
  result = await client.uploadArtifact(name, files, dir);
} else {
  const { artifact } = await client.getArtifact(name);
  result = { id: artifact.id, size: artifact.size, ...(await client.downloadArtifact(artifact.id, { path: dir })) };
}
console.log(`RESULT:${JSON.stringify(result)}`);
