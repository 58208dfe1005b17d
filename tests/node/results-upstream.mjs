// A results service for tests, on 127.0.0.1: the ArtifactService Twirp methods
// that @actions/artifact calls (JSON, snake_case fields as the client sends
// them), an Azure-style blob endpoint for the signed upload and download URLs
// it hands out, and probes: `test.Probe/Count` reads a body of any size and
// answers its length, the query and the headers it got; `test.Probe/Emit`
// answers `mib` MiB; `test.Probe/Hang` never answers. It stores what it is given and records every call.
import http from 'node:http';

const ARTIFACTS = '/twirp/github.actions.results.api.v1.ArtifactService/';

export async function startResultsUpstream() {
  const calls = [];
  const artifacts = [];
  const blocks = new Map(); // blob path -> Map(block id -> Buffer)
  const blobs = new Map(); // blob path -> Buffer
  let base;

  const readAll = (req) =>
    new Promise((resolve, reject) => {
      const parts = [];
      req.on('data', (d) => parts.push(d));
      req.on('end', () => resolve(Buffer.concat(parts)));
      req.on('error', reject);
    });
  const json = (res, status, body) => {
    res.writeHead(status, { 'content-type': 'application/json', 'x-upstream': 'results-test' });
    res.end(JSON.stringify(body));
  };
  const find = (b) =>
    artifacts.filter(
      (a) =>
        a.run === b.workflow_run_backend_id &&
        (b.id_filter === undefined || String(a.id) === String(b.id_filter)) &&
        (b.name_filter === undefined || a.name === b.name_filter),
    );

  async function artifactService(method, req, res) {
    const b = JSON.parse((await readAll(req)).toString() || '{}');
    switch (method) {
      case 'CreateArtifact': {
        const a = { id: artifacts.length + 1, run: b.workflow_run_backend_id, job: b.workflow_job_run_backend_id, name: b.name, size: 0 };
        a.blob = `/blob/${a.id}/${encodeURIComponent(a.name)}.zip`;
        artifacts.push(a);
        return json(res, 200, { ok: true, signed_upload_url: `${base}${a.blob}?sig=upload-${a.id}` });
      }
      case 'FinalizeArtifact': {
        const a = artifacts.find((x) => x.run === b.workflow_run_backend_id && x.name === b.name);
        if (!a) return json(res, 404, { code: 'not_found', msg: 'no such artifact' });
        a.size = Number(b.size);
        a.hash = b.hash;
        return json(res, 200, { ok: true, artifact_id: String(a.id) });
      }
      case 'ListArtifacts':
        return json(res, 200, {
          artifacts: find(b).map((a) => ({
            workflow_run_backend_id: a.run,
            workflow_job_run_backend_id: a.job,
            database_id: String(a.id),
            name: a.name,
            size: String(a.size),
            created_at: new Date().toISOString(),
          })),
        });
      case 'GetSignedArtifactURL': {
        const a = find({ ...b, name_filter: b.name })[0];
        if (!a) return json(res, 404, { code: 'not_found', msg: 'no such artifact' });
        return json(res, 200, { signed_url: `${base}${a.blob}?sig=download-${a.id}` });
      }
      default:
        return json(res, 404, { code: 'bad_route', msg: `no method ${method}` });
    }
  }

  async function blob(req, res, url) {
    const key = url.pathname;
    const comp = url.searchParams.get('comp');
    if (req.method === 'PUT' && comp === 'block') {
      if (!blocks.has(key)) blocks.set(key, new Map());
      blocks.get(key).set(url.searchParams.get('blockid'), await readAll(req));
      res.writeHead(201).end();
    } else if (req.method === 'PUT' && comp === 'blocklist') {
      const xml = (await readAll(req)).toString();
      const ids = [...xml.matchAll(/<(?:Latest|Uncommitted|Committed)>([^<]*)</g)].map((m) => m[1]);
      const staged = blocks.get(key) ?? new Map();
      blobs.set(key, Buffer.concat(ids.map((id) => staged.get(id))));
      blocks.delete(key);
      res.writeHead(201, { etag: '"1"', 'last-modified': new Date().toUTCString() }).end();
    } else if (req.method === 'PUT') {
      blobs.set(key, await readAll(req));
      res.writeHead(201, { etag: '"1"' }).end();
    } else if (req.method === 'GET' && blobs.has(key)) {
      const body = blobs.get(key);
      res.writeHead(200, { 'content-type': 'application/zip', 'content-length': body.length });
      res.end(body);
    } else {
      res.writeHead(404).end();
    }
  }

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, base);
    calls.push({ method: req.method, path: url.pathname, rawUrl: req.url, headers: { ...req.headers } });
    try {
      if (url.pathname.startsWith(ARTIFACTS)) return await artifactService(url.pathname.slice(ARTIFACTS.length), req, res);
      if (url.pathname.startsWith('/blob/')) return await blob(req, res, url);
      if (url.pathname === '/twirp/test.Probe/Count') {
        let bytes = 0;
        req.on('data', (d) => (bytes += d.length));
        await new Promise((r) => req.on('end', r));
        return json(res, 200, { bytes, rawUrl: req.url, headers: req.headers });
      }
      if (url.pathname === '/twirp/test.Probe/Emit') {
        // `mib` MiB of one repeated random MiB, written as the reader takes it.
        const mib = Number(url.searchParams.get('mib'));
        const piece = Buffer.alloc(1024 * 1024, 7);
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': mib * piece.length });
        let left = mib;
        const pump = () => {
          while (left > 0) {
            left -= 1;
            if (!res.write(piece)) return res.once('drain', pump);
          }
          res.end();
        };
        return pump();
      }
      if (url.pathname === '/twirp/test.Probe/Hang') return; // never answers
      json(res, 404, { code: 'bad_route', msg: `upstream has no ${url.pathname}` });
    } catch (e) {
      json(res, 500, { code: 'internal', msg: String(e) });
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${server.address().port}`;
  return {
    url: base,
    calls,
    artifacts,
    blobs,
    async stop() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
