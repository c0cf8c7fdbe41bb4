/**
 * Test hosts on a real network: each host is a network namespace of its own
 * with one address, and every link between two hosts is a veth pair of its
 * own, so a test can cut and heal any single link, or limit its bandwidth
 * (tbf), while the processes on either side see a real network. The test's
 * own namespace is the host `outside` (HAProxy, clients and the test itself).
 *
 * A host reaches a peer only over their link (no forwarding): a cut link
 * silently drops what is sent over it, as a partition does, instead of
 * answering with errors. Addresses come from 198.18.0.0/15 (reserved for
 * benchmarks, never routed) and exist only on these links and namespaces.
 * Needs root and iproute2 (`make deps`).
 */

import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';

const exec = promisify(execFile);

export const OUTSIDE = 'outside';
const PREFIX = 'sbt';

interface Link {
  ends: [string, string];
  /** Interface name of each end, in its host's namespace. */
  devices: [string, string];
}

export interface TestNet {
  /** The address of `host` (`outside` is the test's own). */
  address(host: string): string;
  /** The namespace a host's processes run in (`ip netns exec <namespace> ...`). */
  namespace(host: string): string;
  /** Takes the link between two hosts down at both ends: what crosses it is dropped from now on. */
  cut(a: string, b: string): Promise<void>;
  /** Brings a cut link up again, with its routes. */
  heal(a: string, b: string): Promise<void>;
  /** Limits the link between two hosts to `rate` (tbf syntax: `1mbit`) each way; undefined lifts it. */
  limit(a: string, b: string, rate: string | undefined): Promise<void>;
  /** Removes every namespace and link (also done when the test process exits). */
  destroy(): void;
}

/** The program and arguments that run `program` in network namespace `ns` (as it is when undefined). */
export function inNamespace(ns: string | undefined, program: string, args: string[]): [string, string[]] {
  return ns ? ['ip', ['netns', 'exec', ns, program, ...args]] : [program, args];
}

async function ip(...args: string[]): Promise<void> {
  try {
    await exec('ip', args);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT')
      throw new Error('ip (iproute2) not found; install it with: make deps', { cause: err });
    throw new Error(`ip ${args.join(' ')}: ${e.stderr?.trim() || e.message}`, { cause: err });
  }
}

async function tc(ns: string | undefined, args: string[]): Promise<void> {
  const [program, argv] = inNamespace(ns, 'tc', args);
  await exec(program, argv).catch((err: { stderr?: string; message: string }) => {
    throw new Error(`tc ${args.join(' ')}: ${err.stderr?.trim() || err.message}`, { cause: err });
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Namespaces left by test processes that died without cleaning up. */
function removeOrphans(): void {
  const listed = execFileSync('ip', ['netns', 'list']).toString();
  for (const match of listed.matchAll(new RegExp(`^(${PREFIX}(\\d+)-\\S+)`, 'gm'))) {
    if (!alive(Number(match[2]))) execFileSync('ip', ['netns', 'del', match[1]!]);
  }
}

/**
 * Creates `hosts` (plus `outside`) and one link per pair in `links`; a host
 * with no link to `outside` cannot be reached by the test.
 */
export async function createNet(hosts: string[], links: [string, string][]): Promise<TestNet> {
  if (process.getuid?.() !== 0) throw new Error('network namespaces need root');
  removeOrphans();
  // One /24 per test process, so that test files running side by side never share addresses.
  const block = process.pid % 512;
  const base = `198.${18 + (block >> 8)}.${block & 255}`;
  const addresses = new Map<string, string>([[OUTSIDE, `${base}.254`]]);
  hosts.forEach((host, i) => addresses.set(host, `${base}.${i + 1}`));
  const ns = (host: string) => (host === OUTSIDE ? undefined : `${PREFIX}${process.pid}-${host}`);
  const nsArgs = (host: string) => (host === OUTSIDE ? [] : ['-n', ns(host)!]);
  const address = (host: string) => {
    const found = addresses.get(host);
    if (!found) throw new Error(`no host ${host}`);
    return found;
  };

  const destroy = () => {
    for (const host of hosts) execFileSync('ip', ['netns', 'del', ns(host)!], { stdio: 'ignore' });
  };
  process.once('exit', () => {
    try {
      destroy();
    } catch {
      // Already gone.
    }
  });

  for (const host of hosts) {
    await ip('netns', 'add', ns(host)!);
    await ip('-n', ns(host)!, 'link', 'set', 'lo', 'up');
    await ip('-n', ns(host)!, 'addr', 'add', `${address(host)}/32`, 'dev', 'lo');
    // What has no link (a cut one) goes to a device that drops it: silence, not an error.
    // (a veth whose other end stays down: this kernel has no dummy devices).
    await ip('-n', ns(host)!, 'link', 'add', 'sink', 'type', 'veth', 'peer', 'name', 'sinkpeer');
    await ip('-n', ns(host)!, 'link', 'set', 'sink', 'up');
    await ip('-n', ns(host)!, 'route', 'add', `${base}.0/24`, 'dev', 'sink', 'metric', '4000');
  }

  const all: Link[] = [];
  for (const [i, [a, b]] of links.entries()) {
    const devices: [string, string] = [`${PREFIX}${process.pid}l${i}a`, `${PREFIX}${process.pid}l${i}b`];
    await ip('link', 'add', devices[0], 'type', 'veth', 'peer', 'name', devices[1]);
    for (const [end, host] of [a, b].entries())
      if (host !== OUTSIDE) await ip('link', 'set', devices[end]!, 'netns', ns(host)!);
    all.push({ ends: [a, b], devices });
  }

  const up = async (link: Link) => {
    for (const end of [0, 1] as const) {
      const [self, peer] = end === 0 ? link.ends : [link.ends[1], link.ends[0]];
      const dev = link.devices[end];
      await ip(...nsArgs(self), 'link', 'set', dev, 'up');
      // The outside end carries the test's address (no loopback address in the test's own namespace).
      if (self === OUTSIDE)
        await ip('addr', 'replace', `${address(OUTSIDE)}/32`, 'dev', dev, 'noprefixroute');
      await ip(...nsArgs(self), 'route', 'replace', `${address(peer)}/32`, 'dev', dev, 'src', address(self));
    }
  };
  const find = (a: string, b: string) => {
    const link = all.find(
      (l) => (l.ends[0] === a && l.ends[1] === b) || (l.ends[0] === b && l.ends[1] === a),
    );
    if (!link) throw new Error(`no link between ${a} and ${b}`);
    return link;
  };
  for (const link of all) await up(link);

  return {
    address,
    namespace: (host) => {
      const name = ns(host);
      if (!name || !addresses.has(host)) throw new Error(`no namespace for ${host}`);
      return name;
    },
    cut: async (a, b) => {
      const link = find(a, b);
      for (const end of [0, 1] as const)
        await ip(...nsArgs(link.ends[end]), 'link', 'set', link.devices[end], 'down');
    },
    heal: (a, b) => up(find(a, b)),
    limit: async (a, b, rate) => {
      const link = find(a, b);
      for (const end of [0, 1] as const) {
        const args = ['qdisc', rate ? 'replace' : 'del', 'dev', link.devices[end], 'root'];
        if (rate) args.push('tbf', 'rate', rate, 'burst', '16kb', 'latency', '500ms');
        await tc(ns(link.ends[end]), args);
      }
    },
    destroy,
  };
}
