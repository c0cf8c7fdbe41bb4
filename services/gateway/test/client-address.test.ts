import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ClientAddress, limitKey, proxyList } from '../src/transport/client-address.js';

describe('client address', () => {
  const behindHaproxy = new ClientAddress(['127.0.0.1', '10.0.0.0/8', 'fd00::/8']);

  test('without trusted proxies the socket peer is the client, whatever the header says', () => {
    const direct = new ClientAddress([]);
    assert.equal(direct.of('198.51.100.7', '1.2.3.4'), '198.51.100.7');
    assert.equal(direct.of('::ffff:198.51.100.7', ''), '198.51.100.7');
  });

  test('an untrusted peer cannot name another client', () => {
    assert.equal(behindHaproxy.of('198.51.100.7', '127.0.0.1, 10.1.1.1'), '198.51.100.7');
  });

  test('from a trusted proxy the rightmost untrusted hop is the client', () => {
    assert.equal(behindHaproxy.of('127.0.0.1', '203.0.113.9'), '203.0.113.9');
    // The client's own header is before the hops the proxies added: it cannot skip them.
    assert.equal(behindHaproxy.of('10.0.0.5', '6.6.6.6, 203.0.113.9, 10.2.3.4'), '203.0.113.9');
    assert.equal(behindHaproxy.of('::ffff:127.0.0.1', '2001:db8::1'), '2001:db8::1');
  });

  test('all hops trusted: the leftmost; a garbage hop stops the walk', () => {
    assert.equal(behindHaproxy.of('127.0.0.1', '10.0.0.1, 10.0.0.2'), '10.0.0.1');
    assert.equal(behindHaproxy.of('127.0.0.1', 'not-an-ip, 10.0.0.2'), '10.0.0.2');
    assert.equal(behindHaproxy.of('127.0.0.1', ''), '127.0.0.1');
  });

  test('proxy lists refuse what is not an address or a CIDR range', () => {
    for (const bad of ['example.com', '10.0.0.0/33', '10.0.0.0/8/1', '::1/129', '10.0.0.0/x', ''])
      assert.throws(() => proxyList([bad]), /not an IP address or CIDR range/, bad);
    assert.doesNotThrow(() => proxyList(['10.0.0.0/8', '::1', '2001:db8::/32', '192.0.2.1']));
  });

  test('limit keys: IPv4 as is, IPv6 by its /64', () => {
    assert.equal(limitKey('203.0.113.9'), '203.0.113.9');
    assert.equal(limitKey('2001:db8:1:2::1'), '2001:db8:1:2::/64');
    assert.equal(limitKey('2001:db8:1:2:ffff::9'), '2001:db8:1:2::/64');
    assert.equal(limitKey('2001:0db8:0001:0002:0000:0000:0000:0001'), '2001:db8:1:2::/64');
    assert.equal(limitKey('::1'), '0:0:0:0::/64');
    assert.equal(limitKey('2001:db8::'), '2001:db8:0:0::/64');
  });
});
