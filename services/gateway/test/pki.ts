/**
 * A test certificate authority, made by the test with Debian's openssl
 * (`make deps`): a CA and server certificates it signs for given names,
 * valid now, expired, or for the wrong host, in a temporary directory
 * removed when the test process exits.
 */

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';

export interface Issued {
  certFile: string;
  keyFile: string;
  /** Certificate and key in one file, as HAProxy's `crt` takes them. */
  pemFile: string;
  cert: string;
}

export interface TestPki {
  dir: string;
  caFile: string;
  ca: string;
  /**
   * A server certificate (also good as a client's, as NATS routes need), or,
   * `client`, a client-only one, for `names` (DNS names or IP addresses), valid
   * from an hour ago for a year, or, `expired`, for January 2020.
   */
  issue(name: string, names: string[], options?: { expired?: boolean; client?: boolean }): Issued;
}

const CA_CONFIG = `[ca]
default_ca = test
[test]
database = db/index
new_certs_dir = db
serial = db/serial
default_md = sha256
policy = any
copy_extensions = none
unique_subject = no
[any]
commonName = supplied
`;

function openssl(dir: string, args: string[]): void {
  try {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    if (e.code === 'ENOENT') throw new Error('openssl not found; install it with: make deps', { cause: err });
    throw new Error(`openssl ${args[0]}: ${e.stderr?.toString().trim() ?? e.message}`, { cause: err });
  }
}

/** openssl's date form (YYYYMMDDHHMMSSZ). */
const stamp = (date: Date) => `${date.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

export function createPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'sb-pki-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'db'));
  writeFileSync(join(dir, 'db/index'), '');
  writeFileSync(join(dir, 'db/serial'), '01\n');
  writeFileSync(join(dir, 'ca.cnf'), CA_CONFIG);
  openssl(dir, [
    'req',
    '-x509',
    ...EC_KEY,
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '3650',
    '-subj',
    '/CN=Switchboard test CA',
  ]);
  const caFile = join(dir, 'ca.pem');
  return {
    dir,
    caFile,
    ca: readFileSync(caFile, 'utf8'),
    issue: (name, names, { expired = false, client = false } = {}) => {
      const san = names.map((n) => (/^[\d.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
      writeFileSync(
        join(dir, `${name}.ext`),
        `subjectAltName=${san}\nextendedKeyUsage=${client ? 'clientAuth' : 'serverAuth,clientAuth'}\n`,
      );
      openssl(dir, [
        'req',
        ...EC_KEY,
        '-keyout',
        `${name}.key`,
        '-out',
        `${name}.csr`,
        '-subj',
        `/CN=${names[0]}`,
      ]);
      const now = Date.now();
      const [start, end] = expired
        ? [new Date('2020-01-01T00:00:00Z'), new Date('2020-02-01T00:00:00Z')]
        : [new Date(now - 3600_000), new Date(now + 365 * 86400_000)];
      openssl(dir, [
        'ca',
        '-batch',
        '-config',
        'ca.cnf',
        '-cert',
        'ca.pem',
        '-keyfile',
        'ca.key',
        '-notext',
        '-in',
        `${name}.csr`,
        '-out',
        `${name}.pem`,
        '-extfile',
        `${name}.ext`,
        '-startdate',
        stamp(start),
        '-enddate',
        stamp(end),
      ]);
      const certFile = join(dir, `${name}.pem`);
      const keyFile = join(dir, `${name}.key`);
      const cert = readFileSync(certFile, 'utf8');
      const pemFile = join(dir, `${name}.bundle.pem`);
      writeFileSync(pemFile, cert + readFileSync(keyFile, 'utf8'));
      return { certFile, keyFile, pemFile, cert };
    },
  };
}

/** A `ws` WebSocket class that trusts `ca` (for centrifuge-js's `websocket` option over wss://). */
export function trustingWebSocket(ca: string): typeof WebSocket {
  return class extends WebSocket {
    constructor(address: string | URL, protocols?: string | string[]) {
      super(address, protocols, { ca });
    }
  } as typeof WebSocket;
}
