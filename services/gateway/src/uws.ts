/**
 * Loads uWebSockets.js, always its native addon, from one of two pinned builds
 * (services/gateway/package.json; docs/runtime.md says where they come from):
 *
 * - @btc-vision/uwebsockets.js 20.57.0: binaries for Node 20, 22, 24 and 25
 *   (ABI 115, 127, 137, 141), linked against glibc 2.38 or later.
 * - `uWebSockets.js`, the npm alias of @trufflesuite/uws-js-unofficial
 *   20.30.0-unofficial.0: Node 20 (ABI 115) on glibc 2.27 or later, such as
 *   Debian 12. We compile against its type declarations (the gateway uses
 *   nothing the other build lacks).
 *
 * The first whose binary for this Node loads wins. The trufflesuite package
 * falls back silently to a slow JavaScript server when its binary does not
 * load, so we load each binary ourselves and refuse any fallback: when no
 * build loads, start-up fails with every build's reason.
 */

import type * as UWS from 'uWebSockets.js';
import type { TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export type { HttpRequest, HttpResponse, TemplatedApp, us_listen_socket, WebSocket } from 'uWebSockets.js';

const require = createRequire(import.meta.url);

export class NativeAddonError extends Error {}

/** A build we can load, in order of preference. */
export interface UwsCandidate {
  /** What we require: the package name, or the alias in package.json. */
  specifier: string;
  /** The package's root directory, relative to the directory of its main file. */
  root: string;
  /** Where its native binaries are, relative to its root. */
  binaries: string;
  /** What it runs on, for the error message. */
  supports: string;
}

/** The build that loaded (the start-up log line, `make bench`'s machine description). */
export interface UwsBuild {
  /** The npm package the build came from. */
  package: string;
  version: string;
  /** Node's ABI (`process.versions.modules`), the one of the binary loaded. */
  abi: string;
  /** The binary's file name. */
  binary: string;
}

export const UWS_CANDIDATES: readonly UwsCandidate[] = [
  {
    specifier: '@btc-vision/uwebsockets.js',
    root: '.',
    binaries: '.',
    supports: 'Node 20, 22, 24 and 25 with glibc 2.38 or later',
  },
  {
    specifier: 'uWebSockets.js',
    root: '..',
    binaries: 'binaries',
    supports: 'Node 20 with glibc 2.27 or later',
  },
];

type Attempt = { uws: typeof UWS; build: UwsBuild } | { reason: string };

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!;
}

function attempt(candidate: UwsCandidate): Attempt {
  let main: string;
  try {
    main = require.resolve(candidate.specifier);
  } catch (err) {
    return { reason: `${candidate.specifier} is not installed (${firstLine(err)}); run npm ci` };
  }
  const root = join(dirname(main), candidate.root);
  const { name, version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
    name: string;
    version: string;
  };
  const label = `${name} ${version} (${candidate.supports})`;
  const prefix = `uws_${process.platform}_${process.arch}_`;
  const binary = `${prefix}${process.versions.modules}.node`;
  const path = join(root, candidate.binaries, binary);
  if (!existsSync(path)) {
    const abis = readdirSync(join(root, candidate.binaries))
      .filter((f) => f.startsWith(prefix) && f.endsWith('.node'))
      .map((f) => f.slice(prefix.length, -'.node'.length))
      .sort((a, b) => Number(a) - Number(b));
    const has = abis.length > 0 ? `ABI ${abis.join(', ')}` : 'none';
    return {
      reason: `${label}: no binary ${binary} (for ${process.platform}-${process.arch} it has ${has})`,
    };
  }
  let native: unknown;
  try {
    native = require(path);
  } catch (err) {
    // Typically "/lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.38' not found (required by ...)".
    return { reason: `${label}: ${firstLine(err)}` };
  }
  const uws = require(candidate.specifier) as typeof UWS;
  if (uws !== native) return { reason: `${label}: the package did not return its native addon` };
  return { uws, build: { package: name, version, abi: process.versions.modules, binary } };
}

/** The C library this process runs on ("glibc 2.36"), for messages. */
export function libc(): string {
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)
    ?.header;
  return header?.glibcVersionRuntime ? `glibc ${header.glibcVersionRuntime}` : 'no glibc (musl?)';
}

/** Loads the first candidate whose native binary loads, or throws with every candidate's reason. */
export function loadUws(candidates: readonly UwsCandidate[]): { uws: typeof UWS; build: UwsBuild } {
  if (process.env.UWS_USE_FALLBACK) {
    throw new NativeAddonError(
      'UWS_USE_FALLBACK is set: unset it, Switchboard only runs on the native uWebSockets.js addon',
    );
  }
  const reasons: string[] = [];
  for (const candidate of candidates) {
    const result = attempt(candidate);
    if ('uws' in result) return result;
    reasons.push(result.reason);
  }
  throw new NativeAddonError(
    `no native uWebSockets.js addon loads on Node ${process.version} (ABI ${process.versions.modules}), ` +
      `${process.platform}-${process.arch}, ${libc()}:\n` +
      reasons.map((r) => `  - ${r}\n`).join('') +
      'Run Node 20, 22, 24 or 25 on glibc 2.38 or later (Debian 13, Ubuntu 24.04, the node:24-trixie-slim image), ' +
      'or Node 20 on an older glibc; scripts/install-node.sh installs a Node 24 that runs here (docs/runtime.md).',
  );
}

const loaded = loadUws(UWS_CANDIDATES);

export const uws = loaded.uws;
export const uwsBuild: UwsBuild = loaded.build;

/** "@btc-vision/uwebsockets.js 20.57.0 (ABI 137)" */
export function describeUwsBuild(build: UwsBuild = uwsBuild): string {
  return `${build.package} ${build.version} (ABI ${build.abi})`;
}

/** uWS takes host, port and options together at run time, which its type declarations omit. */
type ListenWithOptions = (
  host: string,
  port: number,
  options: number,
  cb: (socket: us_listen_socket | false) => void,
) => void;

/**
 * Listens on host:port, failing when the port is taken: by default uWS sets
 * SO_REUSEPORT and would silently share the port with another process.
 */
export function listenExclusive(app: TemplatedApp, host: string, port: number): Promise<us_listen_socket> {
  const exclusive = (uws as unknown as { LIBUS_LISTEN_EXCLUSIVE_PORT: number }).LIBUS_LISTEN_EXCLUSIVE_PORT;
  const listen = app.listen.bind(app) as unknown as ListenWithOptions;
  return new Promise((resolve, reject) => {
    listen(host, port, exclusive, (socket) =>
      socket ? resolve(socket) : reject(new Error(`cannot listen on ${host}:${port} (in use?)`)),
    );
  });
}

/**
 * Listens on host:port with SO_REUSEPORT, so that a second app can listen
 * beside this one (a certificate reload); the caller checks the port was free.
 */
export function listenShared(app: TemplatedApp, host: string, port: number): Promise<us_listen_socket> {
  const listen = app.listen.bind(app) as unknown as ListenWithOptions;
  return new Promise((resolve, reject) => {
    listen(host, port, 0, (socket) =>
      socket ? resolve(socket) : reject(new Error(`cannot listen on ${host}:${port}`)),
    );
  });
}
