/**
 * Who the client is, for per-IP limits and logs: the peer address of the
 * socket, or, when that peer is a trusted proxy (HAProxy), the address the
 * proxy reports in `X-Forwarded-For`. Walking that header from the right,
 * every hop added by a trusted proxy is believed and the first untrusted one
 * is the client; a client cannot forge its way past a proxy it does not own.
 * Pure apart from node:net's address parsing.
 */

import { BlockList, isIP } from 'node:net';

/** An IPv4 address in IPv6 form (`::ffff:10.0.0.1`) as plain IPv4. */
function plain(address: string): string {
  const lower = address.toLowerCase();
  if (lower.startsWith('::ffff:') && isIP(lower.slice(7)) === 4) return lower.slice(7);
  return lower;
}

const family = (address: string) => (isIP(address) === 6 ? 'ipv6' : 'ipv4');

/**
 * Parses `addr` or `addr/prefix` entries into a list; throws with the entry
 * at fault (config start-up turns it into a configuration error).
 */
export function proxyList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [address = '', prefix, extra] = entry.split('/');
    const kind = isIP(address);
    const bits = prefix === undefined ? undefined : /^\d{1,3}$/.test(prefix) ? Number(prefix) : Number.NaN;
    if (kind === 0 || extra !== undefined || (bits !== undefined && !(bits <= (kind === 4 ? 32 : 128))))
      throw new Error(`${JSON.stringify(entry)} is not an IP address or CIDR range`);
    const type = kind === 4 ? 'ipv4' : 'ipv6';
    if (bits === undefined) list.addAddress(address, type);
    else list.addSubnet(address, bits, type);
  }
  return list;
}

export class ClientAddress {
  private readonly trusted: BlockList;
  private readonly any: boolean;

  constructor(trustedProxies: readonly string[]) {
    this.trusted = proxyList(trustedProxies);
    this.any = trustedProxies.length > 0;
  }

  private isTrusted(address: string): boolean {
    return this.any && isIP(address) !== 0 && this.trusted.check(address, family(address));
  }

  /** The client's address from the socket peer and the request's `X-Forwarded-For` (may be empty). */
  of(peer: string, forwardedFor: string): string {
    let client = plain(peer);
    if (forwardedFor === '' || !this.isTrusted(client)) return client;
    const hops = forwardedFor.split(',');
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = plain(hops[i]!.trim());
      if (isIP(hop) === 0) break;
      client = hop;
      if (!this.isTrusted(hop)) break;
    }
    return client;
  }
}

/**
 * The key a per-IP limit counts under: an IPv4 address, or the /64 network of
 * an IPv6 address (one subscriber line gets a whole /64, so per-address limits
 * would not hold anyone back).
 */
export function limitKey(address: string): string {
  if (isIP(address) !== 6 || address.includes('.')) return address;
  const [head = '', tail] = address.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups =
    tail === undefined
      ? left
      : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}
