/**
 * Pusher signatures: the docs' worked examples, the pusher SDK (5.3.4) as
 * the signer (its auth helpers, its own query signing, and real requests it
 * sends to a local server), and requests tampered with every way we know.
 */

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import Pusher from 'pusher';
import {
  channelSignature,
  signRequest,
  userSignature,
  verifyChannelAuth,
  verifyRequest,
  verifyUserAuth,
  webhookSignature,
} from '../src/pusher/signature.js';

// The credentials of the worked examples in Pusher's auth-signatures and HTTP API reference pages.
const KEY = '278d425bdf160c739803';
const SECRET = '7ad3773142a6692b25b8';
const APP = { id: '3', key: KEY, secret: SECRET };
const lookup = (key: string) => (key === KEY ? APP : undefined);

const sdk = new Pusher({ appId: APP.id, key: KEY, secret: SECRET, cluster: 'mt1' });

describe('channel authorization', () => {
  test("the docs' worked example", () => {
    const signature = '58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4';
    assert.equal(channelSignature(SECRET, '1234.1234', 'private-foobar'), signature);
    assert.ok(verifyChannelAuth(KEY, SECRET, '1234.1234', 'private-foobar', `${KEY}:${signature}`));
  });

  test('what the pusher SDK signs verifies: private, presence, encrypted', () => {
    const priv = sdk.authorizeChannel('1234.1234', 'private-foobar');
    assert.ok(verifyChannelAuth(KEY, SECRET, '1234.1234', 'private-foobar', priv.auth));
    const presence = sdk.authorizeChannel('1.2', 'presence-room', {
      user_id: 'ann',
      user_info: { name: 'Ann' },
    });
    assert.ok(verifyChannelAuth(KEY, SECRET, '1.2', 'presence-room', presence.auth, presence.channel_data));
    // The channel_data is signed: without it, or changed, the auth does not verify.
    assert.equal(verifyChannelAuth(KEY, SECRET, '1.2', 'presence-room', presence.auth), false);
    const forged = presence.channel_data!.replace('ann', 'bob');
    assert.equal(verifyChannelAuth(KEY, SECRET, '1.2', 'presence-room', presence.auth, forged), false);
    const withKey = new Pusher({
      appId: APP.id,
      key: KEY,
      secret: SECRET,
      cluster: 'mt1',
      encryptionMasterKeyBase64: Buffer.alloc(32, 7).toString('base64'),
    });
    const encrypted = withKey.authorizeChannel('1.2', 'private-encrypted-x');
    assert.ok(encrypted.shared_secret);
    assert.ok(verifyChannelAuth(KEY, SECRET, '1.2', 'private-encrypted-x', encrypted.auth));
  });

  test('an empty channel_data is signed as sent', () => {
    const auth = `${KEY}:${channelSignature(SECRET, '1.2', 'private-a', '')}`;
    assert.ok(verifyChannelAuth(KEY, SECRET, '1.2', 'private-a', auth, ''));
    assert.equal(verifyChannelAuth(KEY, SECRET, '1.2', 'private-a', auth), false);
  });

  test('wrong key, secret, socket, channel, length or characters: refused', () => {
    const { auth } = sdk.authorizeChannel('1.2', 'private-a');
    const hex = auth.slice(KEY.length + 1);
    const check = (a: string, socket = '1.2', channel = 'private-a', key = KEY, secret = SECRET) =>
      verifyChannelAuth(key, secret, socket, channel, a);
    assert.ok(check(auth));
    assert.equal(check(`otherkey:${hex}`), false);
    assert.equal(check(auth, '1.2', 'private-a', 'otherkey'), false);
    assert.equal(check(auth, '1.2', 'private-a', KEY, 'other-secret'), false);
    assert.equal(check(auth, '1.3'), false);
    assert.equal(check(auth, '1.2', 'private-b'), false);
    assert.equal(check(auth.slice(0, -1)), false);
    assert.equal(check(`${auth}0`), false);
    assert.equal(check(`${KEY}:${hex.replace(/^./, 'z')}`), false);
    assert.equal(check(`${KEY}:${'g'.repeat(64)}`), false);
    assert.equal(check(`${KEY}:${hex.toUpperCase()}`), false);
    assert.equal(check(hex), false);
    assert.equal(check(`${KEY}${hex}`), false);
    assert.equal(check(''), false);
    assert.equal(check(`${KEY}:`), false);
    // Another app's valid auth for the same subscription.
    const other = new Pusher({
      appId: '4',
      key: 'otherkey',
      secret: 'other-secret',
      cluster: 'mt1',
    }).authorizeChannel('1.2', 'private-a');
    assert.equal(check(other.auth), false);
  });
});

describe('user authentication (pusher:signin)', () => {
  test("the docs' worked example", () => {
    const signature = '4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba';
    assert.equal(userSignature(SECRET, '1234.1234', '{"id":"12345"}'), signature);
    assert.ok(verifyUserAuth(KEY, SECRET, '1234.1234', '{"id":"12345"}', `${KEY}:${signature}`));
  });

  test('what the pusher SDK signs verifies; anything else does not', () => {
    const { auth, user_data } = sdk.authenticateUser('1.2', { id: 'ann', user_info: { name: 'Ann' } });
    assert.ok(verifyUserAuth(KEY, SECRET, '1.2', user_data, auth));
    assert.equal(verifyUserAuth(KEY, SECRET, '1.3', user_data, auth), false);
    assert.equal(verifyUserAuth(KEY, SECRET, '1.2', user_data.replace('ann', 'bob'), auth), false);
    assert.equal(verifyUserAuth(KEY, SECRET, '1.2', ` ${user_data}`, auth), false);
    assert.equal(verifyUserAuth(KEY, 'other', '1.2', user_data, auth), false);
    assert.equal(verifyUserAuth('otherkey', SECRET, '1.2', user_data, auth), false);
    assert.equal(verifyUserAuth(KEY, SECRET, '1.2', user_data, auth.slice(0, -2)), false);
    // A channel signature is no user signature.
    const channel = sdk.authorizeChannel('1.2', 'private-a');
    assert.equal(verifyUserAuth(KEY, SECRET, '1.2', user_data, channel.auth), false);
  });
});

describe('HTTP API request signing', () => {
  const BODY = '{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}';
  const EXAMPLE_QUERY =
    'auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f' +
    '&auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c';
  const NOW = 1353088179;

  const check = (query: string, overrides: Partial<Parameters<typeof verifyRequest>[0]> = {}) =>
    verifyRequest({
      method: 'POST',
      path: '/apps/3/events',
      query: new URLSearchParams(query),
      body: Buffer.from(BODY),
      nowSeconds: NOW,
      lookup,
      ...overrides,
    });
  const refusedWith = (result: ReturnType<typeof check>, status: number, message: RegExp) => {
    assert.equal(result.ok, false);
    if (result.ok) return;
    assert.equal(result.status, status, result.message);
    assert.match(result.message, message);
  };
  /** The example query with one parameter replaced (or removed, for undefined) and signed again. */
  const resigned = (changes: Record<string, string | undefined>, secret = SECRET) => {
    const params: Record<string, string> = Object.fromEntries(new URLSearchParams(EXAMPLE_QUERY));
    delete params.auth_signature;
    for (const [k, v] of Object.entries(changes)) {
      if (v === undefined) delete params[k];
      else params[k] = v;
    }
    const toSign = Object.keys(params)
      .sort()
      .map((k) => `${k}=${params[k]}`)
      .join('&');
    return `${new URLSearchParams(params)}&auth_signature=${hmacHex(secret, `POST\n/apps/3/events\n${toSign}`)}`;
  };

  test("the HTTP API reference's worked example", () => {
    assert.deepEqual(check(EXAMPLE_QUERY), { ok: true, authKey: KEY, app: APP });
    assert.equal(
      signRequest({
        method: 'POST',
        path: '/apps/3/events',
        key: KEY,
        secret: SECRET,
        timestampSeconds: NOW,
        body: BODY,
      }),
      EXAMPLE_QUERY,
    );
  });

  test('the body is bound by body_md5', () => {
    refusedWith(check(EXAMPLE_QUERY, { body: Buffer.from(BODY.replace('foo', 'bar')) }), 401, /body_md5/);
    refusedWith(check(EXAMPLE_QUERY, { body: Buffer.from(`${BODY} `) }), 401, /body_md5/);
    // The body stripped: body_md5 was signed, the empty body does not match it.
    refusedWith(check(EXAMPLE_QUERY, { body: new Uint8Array(0) }), 401, /body_md5/);
    // body_md5 left out of a request with a body.
    refusedWith(check(resigned({ body_md5: undefined })), 401, /Missing body_md5/);
    refusedWith(check(resigned({ body_md5: 'ec365a775a4cd0599faeb73354201b6e' })), 401, /body_md5/);
    refusedWith(check(resigned({ body_md5: 'not an md5' })), 401, /body_md5/);
  });

  test('auth_timestamp within 600 s either way, or the given bound', () => {
    assert.ok(check(EXAMPLE_QUERY, { nowSeconds: NOW + 600 }).ok);
    assert.ok(check(EXAMPLE_QUERY, { nowSeconds: NOW - 600 }).ok);
    refusedWith(
      check(EXAMPLE_QUERY, { nowSeconds: NOW + 601 }),
      401,
      /^Timestamp expired: Given timestamp \(2012-11-16T17:49:39Z\) not within 600s of server time \(2012-11-16T17:59:40Z\)$/,
    );
    refusedWith(check(EXAMPLE_QUERY, { nowSeconds: NOW - 601 }), 401, /Timestamp expired/);
    refusedWith(check(EXAMPLE_QUERY, { nowSeconds: NOW + 31, maxSkewSeconds: 30 }), 401, /not within 30s/);
    refusedWith(check(EXAMPLE_QUERY, { nowSeconds: Number.NaN }), 401, /Timestamp expired/);
    for (const bad of [
      '',
      '1353088179.5',
      '-1353088179',
      '0x50a67cb3',
      '1e9',
      '9'.repeat(13),
      ' 1353088179',
    ]) {
      refusedWith(check(resigned({ auth_timestamp: bad })), 401, /auth_timestamp/);
    }
  });

  test('wrong key, secret, method, path or parameters: refused', () => {
    refusedWith(check(EXAMPLE_QUERY.replace(KEY, 'otherkey')), 401, /^Unknown auth_key otherkey$/);
    refusedWith(
      check(resigned({}, 'other-secret')),
      401,
      /^Invalid signature: you should have sent HmacSHA256Hex\(/,
    );
    const wrongSecret = check(resigned({}, 'other-secret'));
    assert.ok(!wrongSecret.ok && wrongSecret.message.includes('"POST\\n/apps/3/events\\nauth_key='));
    refusedWith(check(EXAMPLE_QUERY, { method: 'PUT' }), 401, /Invalid signature/);
    refusedWith(check(EXAMPLE_QUERY, { path: '/apps/4/events' }), 401, /Invalid signature/);
    refusedWith(check(EXAMPLE_QUERY, { path: '/apps/3/events/' }), 401, /Invalid signature/);
    refusedWith(check(`${EXAMPLE_QUERY}&socket_id=1.2`), 401, /Invalid signature/);
    refusedWith(check(EXAMPLE_QUERY.replace('auth_version=1.0&', '')), 401, /Missing auth_version/);
    refusedWith(check(resigned({ auth_version: '2.0' })), 401, /auth_version/);
    refusedWith(check(EXAMPLE_QUERY.replace(/&auth_signature=.*/, '')), 401, /Missing auth_signature/);
    refusedWith(check(EXAMPLE_QUERY.replace(`auth_key=${KEY}&`, '')), 401, /Missing auth_key/);
    refusedWith(
      check(EXAMPLE_QUERY.replace('auth_timestamp=1353088179&', '')),
      401,
      /Missing auth_timestamp/,
    );
    refusedWith(check(''), 401, /Missing/);
  });

  test('the signature: hex of the right length, lower-case, nothing else', () => {
    const signature = 'da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c';
    for (const bad of [
      signature.toUpperCase(),
      signature.slice(0, -1),
      `${signature}0`,
      `${signature.slice(0, -1)}g`,
      'z'.repeat(64),
      '',
      Buffer.from(signature, 'hex').toString('base64'),
    ]) {
      refusedWith(check(EXAMPLE_QUERY.replace(signature, encodeURIComponent(bad))), 401, /Invalid signature/);
    }
    const long = check(EXAMPLE_QUERY.replace(signature, 'a'.repeat(10_000)));
    assert.ok(!long.ok && long.message.length < 400, 'the echo of what was sent is clipped');
  });

  test('parameters given twice, or holding & or =, are refused', () => {
    refusedWith(check(`${EXAMPLE_QUERY}&auth_key=${KEY}`), 400, /Duplicate query parameter auth_key/);
    refusedWith(check(`auth_timestamp=1&${EXAMPLE_QUERY}`), 400, /Duplicate query parameter auth_timestamp/);
    refusedWith(check(`${EXAMPLE_QUERY}&auth_signature=x`), 400, /Duplicate query parameter auth_signature/);
    // Keys are signed lower-cased, so AUTH_KEY and auth_key are the same parameter.
    refusedWith(check(`${EXAMPLE_QUERY}&AUTH_KEY=${KEY}`), 400, /Duplicate/);
    refusedWith(check(`info=a&${EXAMPLE_QUERY}&Info=b`), 400, /Duplicate query parameter info/);
    // Two parameters folded into one value sign the same string as the two: refused.
    const honest = signRequest({
      method: 'GET',
      path: '/apps/3/channels',
      key: KEY,
      secret: SECRET,
      timestampSeconds: NOW,
      params: { filter_by_prefix: 'presence-', info: 'user_count' },
    });
    const get = { method: 'GET', path: '/apps/3/channels', body: new Uint8Array(0) };
    assert.ok(check(honest, get).ok);
    const folded = honest
      .replace('&info=user_count', '')
      .replace('filter_by_prefix=presence-', 'filter_by_prefix=presence-%26info%3Duser_count');
    assert.notEqual(folded, honest);
    refusedWith(check(folded, get), 400, /holds & or =/);
    refusedWith(check(`a%3Db=c&${honest}`, get), 400, /holds & or =/);
  });

  test('parameter keys are signed lower-cased, values unescaped', () => {
    const query = signRequest({
      method: 'get',
      path: '/apps/3/channels',
      key: KEY,
      secret: SECRET,
      timestampSeconds: NOW,
      params: {
        Filter_By_Prefix: 'presence-',
        info: 'user_count,subscription_count',
        name: 'Something else',
      },
    });
    assert.match(query, /filter_by_prefix=presence-/);
    const get = { method: 'GET', path: '/apps/3/channels', body: new Uint8Array(0) };
    assert.ok(check(query, get).ok);
    // The value with the space is signed as `name=Something else`, whatever its escaping on the wire.
    assert.ok(check(query.replace('Something+else', 'Something%20else'), get).ok);
  });

  test("signRequest signs as the pusher SDK's own query signing does", () => {
    const body = JSON.stringify({ name: 'e', channels: ['a'], data: '{}' });
    const theirs = new URLSearchParams(
      sdk.createSignedQueryString({
        method: 'POST',
        path: '/apps/3/events',
        params: { socket_id: '1.2' },
        body,
      }),
    );
    const timestampSeconds = Number(theirs.get('auth_timestamp'));
    const ours = new URLSearchParams(
      signRequest({
        method: 'POST',
        path: '/apps/3/events',
        key: KEY,
        secret: SECRET,
        timestampSeconds,
        params: { socket_id: '1.2' },
        body,
      }),
    );
    assert.equal(ours.get('auth_signature'), theirs.get('auth_signature'));
    assert.deepEqual([...ours].sort(), [...theirs].sort());
    const result = verifyRequest({
      method: 'POST',
      path: '/apps/3/events',
      query: theirs,
      body: Buffer.from(body),
      nowSeconds: timestampSeconds,
      lookup,
    });
    assert.equal(result.ok, true);
  });
});

describe('requests the pusher SDK sends', () => {
  interface Captured {
    method: string;
    path: string;
    query: string;
    body: Buffer;
  }
  const captured: Captured[] = [];
  let server: Server;
  let pusher: Pusher;

  before(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const url = req.url ?? '';
        const q = url.indexOf('?');
        captured.push({
          method: req.method ?? '',
          path: q === -1 ? url : url.slice(0, q),
          query: q === -1 ? '' : url.slice(q + 1),
          body: Buffer.concat(chunks),
        });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    pusher = new Pusher({
      appId: APP.id,
      key: KEY,
      secret: SECRET,
      host: '127.0.0.1',
      port: String(port),
      useTLS: false,
    });
  });

  after(async () => {
    server.close();
    await once(server, 'close');
  });

  const verify = (
    r: Captured,
    changes: Partial<Captured> = {},
    nowSeconds = Math.floor(Date.now() / 1000),
  ) => {
    const c = { ...r, ...changes };
    return verifyRequest({
      method: c.method,
      path: c.path,
      query: new URLSearchParams(c.query),
      body: c.body,
      nowSeconds,
      lookup,
    });
  };

  test('trigger, batch, sendToUser, terminate and GETs all verify', async () => {
    captured.length = 0;
    await pusher.trigger(
      ['my-channel', 'presence-b'],
      'my-event',
      { hello: 'world' },
      { socket_id: '1.2', info: 'user_count' },
    );
    await pusher.triggerBatch([{ channel: 'c', name: 'e', data: 'plain' }]);
    await pusher.sendToUser('ann', 'note', { n: 1 });
    await pusher.terminateUserConnections('ann');
    await pusher.get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } });
    await pusher.get({ path: '/channels/presence-b/users' });
    assert.equal(captured.length, 6);
    for (const r of captured)
      assert.deepEqual(verify(r), { ok: true, authKey: KEY, app: APP }, `${r.method} ${r.path}`);
    const [trigger, , toUser, terminate, channels] = captured as [
      Captured,
      Captured,
      Captured,
      Captured,
      Captured,
    ];
    assert.equal(trigger.path, '/apps/3/events');
    assert.match(trigger.query, /body_md5=/);
    assert.doesNotMatch(channels.query, /body_md5=/);
    assert.equal(JSON.parse(toUser.body.toString()).channels[0], '#server-to-user-ann');
    assert.equal(terminate.path, '/apps/3/users/ann/terminate_connections');
  });

  test('tampered SDK requests are refused', async () => {
    captured.length = 0;
    await pusher.trigger('my-channel', 'my-event', { amount: 10 });
    const [r] = captured as [Captured];
    assert.ok(verify(r).ok);
    const body = Buffer.from(r.body.toString().replace('10', '99'));
    assert.equal(body.length, r.body.length);
    assert.match(JSON.stringify(verify(r, { body })), /body_md5 does not match/);
    assert.match(JSON.stringify(verify(r, { body: Buffer.alloc(0) })), /body_md5 does not match/);
    assert.match(JSON.stringify(verify(r, { path: '/apps/4/events' })), /Invalid signature/);
    assert.match(JSON.stringify(verify(r, { method: 'GET' })), /Invalid signature/);
    assert.match(JSON.stringify(verify(r, { query: `${r.query}&socket_id=1.2` })), /Invalid signature/);
    assert.match(JSON.stringify(verify(r, { query: `${r.query}&auth_version=1.0` })), /Duplicate/);
    const now = Math.floor(Date.now() / 1000);
    assert.match(JSON.stringify(verify(r, {}, now + 700)), /Timestamp expired/);
    assert.match(JSON.stringify(verify(r, {}, now - 700)), /Timestamp expired/);
    const other = verifyRequest({
      method: r.method,
      path: r.path,
      query: new URLSearchParams(r.query),
      body: r.body,
      nowSeconds: now,
      lookup: (key) => (key === KEY ? { secret: 'rotated-secret' } : undefined),
    });
    assert.equal(other.ok, false);
  });
});

describe('webhooks', () => {
  test("X-Pusher-Signature as the pusher SDK's WebHook checks it", () => {
    const body = JSON.stringify({ time_ms: 1, events: [{ name: 'channel_occupied', channel: 'a' }] });
    const signature = webhookSignature(SECRET, body);
    assert.match(signature, /^[0-9a-f]{64}$/);
    assert.equal(webhookSignature(SECRET, Buffer.from(body)), signature);
    const hook = (rawBody: string, sig: string, key = KEY) =>
      sdk.webhook({
        headers: { 'x-pusher-key': key, 'x-pusher-signature': sig, 'content-type': 'application/json' },
        rawBody,
      });
    assert.equal(hook(body, signature).isValid(), true);
    assert.equal(hook(body.replace('"a"', '"b"'), signature).isValid(), false);
    assert.equal(hook(body, webhookSignature('other', body)).isValid(), false);
    assert.equal(hook(body, signature, 'otherkey').isValid(), false);
  });
});

function hmacHex(secret: string, data: string): string {
  return createHmac('sha256', secret).update(data).digest('hex');
}
