// Loaded with `node --import`: resolves every host name under
// `.blob.core.windows.net` to this machine, as the DNS record an operator adds
// for hoard's blob host does on a runner fleet (docs/deploy.md). The toolkit
// downloads from such a host in parallel ranged segments; from any other host,
// in one GET.
import dns from 'node:dns';

export const BLOB_HOST = 'hoard.blob.core.windows.net';

const lookup = dns.lookup;
dns.lookup = function (hostname, ...rest) {
  const name = typeof hostname === 'string' && hostname.endsWith('.blob.core.windows.net') ? '127.0.0.1' : hostname;
  return lookup.call(this, name, ...rest);
};
