/**
 * Token verification: HS256, RS256/ES256 with a PEM public key, JWKS from a
 * local HTTP server (including key rotation), audience/issuer, refusal of
 * algorithm confusion and `alg: none`; end to end, the real gateway with an
 * RS256 public key read from a PEM file.
 */

import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Centrifuge, DisconnectedContext } from 'centrifuge';
import { exportJWK, type JWK, SignJWT, UnsecuredJWT } from 'jose';
import { type TokenCheck, TokenVerifier } from '../src/auth.js';
import type { Config } from '../src/config.js';
import { client, type Gateway, nextEvent, startGateway, token } from './harness.js';

const SECRET = 'unit-test-hs256-secret';

function settings(overrides: Partial<Config['token']> = {}): Config['token'] {
  return {
    hmacSecrets: [],
    hmacSecretFile: '',
    publicKey: '',
    jwksUrl: '',
    audience: '',
    issuer: '',
    maxDepth: 64,
    maxSubs: 128,
    ...overrides,
  };
}

function rsaKeys() {
  return generateKeyPairSync('rsa', { modulusLength: 2048 });
}

function ecKeys() {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

function pem(key: KeyObject): string {
  return key.export({ type: 'spki', format: 'pem' }) as string;
}

interface SignOptions {
  kid?: string;
  expiresIn?: number;
  audience?: string;
  issuer?: string;
}

function sign(
  claims: Record<string, unknown>,
  alg: string,
  key: KeyObject | Uint8Array,
  options: SignOptions = {},
): Promise<string> {
  const jwt = new SignJWT(claims)
    .setProtectedHeader(options.kid ? { alg, kid: options.kid } : { alg })
    .setIssuedAt();
  if (options.expiresIn !== undefined)
    jwt.setExpirationTime(Math.floor(Date.now() / 1000) + options.expiresIn);
  if (options.audience) jwt.setAudience(options.audience);
  if (options.issuer) jwt.setIssuer(options.issuer);
  return jwt.sign(key);
}

const hs = (claims: Record<string, unknown>, options: SignOptions = {}, secret = SECRET) =>
  sign(claims, 'HS256', new TextEncoder().encode(secret), options);

function assertOk<T>(check: TokenCheck<T>): T {
  assert.ok(check.ok, `expected a valid token, got: ${check.ok ? '' : check.reason}`);
  return check.value;
}

function assertRefused<T>(check: TokenCheck<T>, reason?: RegExp): void {
  assert.equal(check.ok, false, 'expected the token to be refused');
  if (check.ok) return;
  assert.equal(check.expired, false, `refused as expired: ${check.reason}`);
  assert.ok(check.reason.length > 0);
  if (reason) assert.match(check.reason, reason);
}

describe('HS256', () => {
  const verifier = new TokenVerifier(settings({ hmacSecrets: [SECRET] }));

  test('valid token', async () => {
    const exp = Math.floor(Date.now() / 1000) + 60;
    const claims = assertOk(
      await verifier.connection(
        await hs({ sub: 'alice', channels: ['news'], info: { n: 1 } }, { expiresIn: 60 }),
      ),
    );
    assert.equal(claims.user, 'alice');
    assert.deepEqual(claims.channels, ['news']);
    assert.deepEqual(claims.info, { n: 1 });
    assert.ok(Math.abs(claims.expiresAt - exp) <= 1);
  });

  test('token without exp never expires', async () => {
    assert.equal(assertOk(await verifier.connection(await hs({ sub: 'alice' }))).expiresAt, 0);
  });

  test('wrong secret is refused', async () => {
    assertRefused(await verifier.connection(await hs({ sub: 'alice' }, {}, 'another-secret')), /signature/);
  });

  test('several secrets while one rotates: any verifies, the older ones are told of, a replaced one is refused', async () => {
    const rotating = new TokenVerifier(settings({ hmacSecrets: ['new-secret', SECRET] }));
    let olderUses = 0;
    rotating.hmac.onOlderKey = () => olderUses++;
    assert.equal(assertOk(await rotating.connection(await hs({ sub: 'a' }, {}, 'new-secret'))).user, 'a');
    assert.equal(olderUses, 0);
    assert.equal(assertOk(await rotating.connection(await hs({ sub: 'b' }))).user, 'b');
    assert.equal(olderUses, 1);
    rotating.hmac.replace(['new-secret']);
    assertRefused(await rotating.connection(await hs({ sub: 'b' })), /signature/);
  });

  test('tampered payload is refused', async () => {
    const [header, , signature] = (await hs({ sub: 'alice' })).split('.');
    const payload = Buffer.from(JSON.stringify({ sub: 'admin' })).toString('base64url');
    assertRefused(await verifier.connection(`${header}.${payload}.${signature}`), /signature/);
  });

  test('garbage is refused', async () => {
    assertRefused(await verifier.connection('not.a.jwt'));
    assertRefused(await verifier.connection(''));
  });

  test('expired token reports expired', async () => {
    const check = await verifier.connection(await hs({ sub: 'alice' }, { expiresIn: -10 }));
    assert.deepEqual(check, { ok: false, expired: true, reason: 'token expired' });
    const sub = await verifier.subscription(await hs({ sub: 'alice', channel: 'news' }, { expiresIn: -10 }));
    assert.equal(sub.ok, false);
    assert.equal(!sub.ok && sub.expired, true);
  });

  test('alg none is refused', async () => {
    const unsecured = new UnsecuredJWT({ sub: 'alice' }).setIssuedAt().encode();
    assert.equal(JSON.parse(Buffer.from(unsecured.split('.')[0]!, 'base64url').toString()).alg, 'none');
    assertRefused(await verifier.connection(unsecured));
    assertRefused(await verifier.subscription(new UnsecuredJWT({ sub: 'alice', channel: 'news' }).encode()));
  });

  test('an alg that is not configured is refused', async () => {
    assertRefused(
      await verifier.connection(await sign({ sub: 'alice' }, 'RS256', rsaKeys().privateKey)),
      /alg/i,
    );
    assertRefused(
      await verifier.connection(await sign({ sub: 'alice' }, 'ES256', ecKeys().privateKey)),
      /alg/i,
    );
    // HS512 with the right secret: same key, alg not allowed.
    const hs512 = await sign({ sub: 'alice' }, 'HS512', new TextEncoder().encode(SECRET.repeat(3)));
    assertRefused(
      await new TokenVerifier(settings({ hmacSecrets: [SECRET.repeat(3)] })).connection(hs512),
      /alg/i,
    );
  });
});

describe('RS256 with a PEM public key', () => {
  const { publicKey, privateKey } = rsaKeys();
  const verifier = new TokenVerifier(settings({ publicKey: pem(publicKey) }));

  test('valid token', async () => {
    assert.equal(
      assertOk(await verifier.connection(await sign({ sub: 'bob' }, 'RS256', privateKey))).user,
      'bob',
    );
  });

  test('token signed by another RSA key is refused', async () => {
    assertRefused(
      await verifier.connection(await sign({ sub: 'bob' }, 'RS256', rsaKeys().privateKey)),
      /signature/,
    );
  });

  test('expired token reports expired', async () => {
    const check = await verifier.connection(
      await sign({ sub: 'bob' }, 'RS256', privateKey, { expiresIn: -5 }),
    );
    assert.equal(check.ok, false);
    assert.equal(!check.ok && check.expired, true);
  });

  test('HS256 signed with the public key PEM as secret is refused (algorithm confusion)', async () => {
    for (const secret of [pem(publicKey), publicKey.export({ type: 'pkcs1', format: 'pem' }) as string]) {
      assertRefused(await verifier.connection(await hs({ sub: 'mallory' }, {}, secret)), /alg/i);
    }
  });

  test('ES256 token is refused when only an RSA key is configured', async () => {
    assertRefused(
      await verifier.connection(await sign({ sub: 'bob' }, 'ES256', ecKeys().privateKey)),
      /alg/i,
    );
  });

  test('alg none is refused', async () => {
    assertRefused(await verifier.connection(new UnsecuredJWT({ sub: 'bob' }).encode()));
  });

  test('HS256 with its own secret still works next to a public key, and cannot use the PEM', async () => {
    const both = new TokenVerifier(settings({ hmacSecrets: [SECRET], publicKey: pem(publicKey) }));
    assertOk(await both.connection(await hs({ sub: 'bob' })));
    assertOk(await both.connection(await sign({ sub: 'bob' }, 'RS256', privateKey)));
    assertRefused(await both.connection(await hs({ sub: 'mallory' }, {}, pem(publicKey))), /signature/);
  });
});

describe('ES256 with a PEM public key', () => {
  const { publicKey, privateKey } = ecKeys();
  const verifier = new TokenVerifier(settings({ publicKey: pem(publicKey) }));

  test('valid token', async () => {
    assert.equal(
      assertOk(await verifier.connection(await sign({ sub: 'carol' }, 'ES256', privateKey))).user,
      'carol',
    );
  });

  test('token signed by another P-256 key is refused', async () => {
    assertRefused(
      await verifier.connection(await sign({ sub: 'carol' }, 'ES256', ecKeys().privateKey)),
      /signature/,
    );
  });

  test('RS256 and HS256 (PEM as secret) are refused', async () => {
    assertRefused(
      await verifier.connection(await sign({ sub: 'carol' }, 'RS256', rsaKeys().privateKey)),
      /alg/i,
    );
    assertRefused(await verifier.connection(await hs({ sub: 'mallory' }, {}, pem(publicKey))), /alg/i);
  });

  test('a PEM file given as a private key works too (public part derived)', async () => {
    const fromPrivate = new TokenVerifier(
      settings({ publicKey: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string }),
    );
    assertOk(await fromPrivate.connection(await sign({ sub: 'carol' }, 'ES256', privateKey)));
  });

  test('keys other than RSA and EC P-256 are rejected at construction', () => {
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey;
    assert.throws(() => new TokenVerifier(settings({ publicKey: pem(p384) })), /RSA or EC P-256/);
    const ed = generateKeyPairSync('ed25519').publicKey;
    assert.throws(() => new TokenVerifier(settings({ publicKey: pem(ed) })), /RSA or EC P-256/);
  });
});

describe('audience and issuer', () => {
  const verifier = new TokenVerifier(
    settings({ hmacSecrets: [SECRET], audience: 'switchboard', issuer: 'idp' }),
  );

  test('matching aud and iss verify', async () => {
    assertOk(
      await verifier.connection(await hs({ sub: 'dave' }, { audience: 'switchboard', issuer: 'idp' })),
    );
  });

  test('missing or wrong aud is refused', async () => {
    assertRefused(await verifier.connection(await hs({ sub: 'dave' }, { issuer: 'idp' })), /aud/);
    assertRefused(
      await verifier.connection(await hs({ sub: 'dave' }, { audience: 'other', issuer: 'idp' })),
      /aud/,
    );
  });

  test('missing or wrong iss is refused', async () => {
    assertRefused(await verifier.connection(await hs({ sub: 'dave' }, { audience: 'switchboard' })), /iss/);
    assertRefused(
      await verifier.connection(await hs({ sub: 'dave' }, { audience: 'switchboard', issuer: 'evil' })),
      /iss/,
    );
  });

  test('not enforced when not configured', async () => {
    const plain = new TokenVerifier(settings({ hmacSecrets: [SECRET] }));
    assertOk(await plain.connection(await hs({ sub: 'dave' }, { audience: 'anything', issuer: 'anyone' })));
  });
});

describe('subscription tokens', () => {
  const verifier = new TokenVerifier(settings({ hmacSecrets: [SECRET] }));

  test('need the channel claim', async () => {
    const claims = assertOk(await verifier.subscription(await hs({ sub: 'erin', channel: 'chat:1' })));
    assert.equal(claims.channel, 'chat:1');
    assert.equal(claims.user, 'erin');
    assertRefused(await verifier.subscription(await hs({ sub: 'erin' })), /channel/);
    assertRefused(await verifier.subscription(await hs({ sub: 'erin', channel: '' })), /channel/);
    assertRefused(await verifier.subscription(await hs({ sub: 'erin', channel: 7 })), /channel/);
  });

  test('a connection token is not a subscription token', async () => {
    assertRefused(await verifier.subscription(await hs({ sub: 'erin', channels: ['chat:1'] })), /channel/);
  });
});

describe('JWKS', () => {
  const rsa = rsaKeys();
  const ec = ecKeys();
  const rotated = rsaKeys();
  const keys: JWK[] = [];
  let fetches = 0;
  let server: Server;
  let url: string;

  async function jwk(key: KeyObject, kid: string, alg: string): Promise<JWK> {
    return { ...(await exportJWK(key)), kid, alg, use: 'sig' };
  }

  before(async () => {
    keys.push(await jwk(rsa.publicKey, 'rsa-1', 'RS256'), await jwk(ec.publicKey, 'ec-1', 'ES256'));
    server = createServer((_req, res) => {
      fetches++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys }));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
  });

  after(async () => {
    server.closeAllConnections();
    server.close();
    await once(server, 'close');
  });

  test('RS256 and ES256 tokens with known kids verify', async () => {
    const verifier = new TokenVerifier(settings({ jwksUrl: url }));
    assert.equal(
      assertOk(
        await verifier.connection(await sign({ sub: 'frank' }, 'RS256', rsa.privateKey, { kid: 'rsa-1' })),
      ).user,
      'frank',
    );
    assert.equal(
      assertOk(
        await verifier.connection(await sign({ sub: 'grace' }, 'ES256', ec.privateKey, { kid: 'ec-1' })),
      ).user,
      'grace',
    );
  });

  test('a static PEM key and a JWKS serve side by side: tokens with a kid go to the JWKS', async () => {
    const legacy = rsaKeys();
    const verifier = new TokenVerifier(settings({ jwksUrl: url, publicKey: pem(legacy.publicKey) }));
    const fromJwks = await sign({ sub: 'new' }, 'RS256', rsa.privateKey, { kid: 'rsa-1' });
    const fromPem = await sign({ sub: 'old' }, 'RS256', legacy.privateKey);
    assert.equal(assertOk(await verifier.connection(fromJwks)).user, 'new');
    assert.equal(assertOk(await verifier.connection(fromPem)).user, 'old');
  });

  test('unknown kid, wrong key for a kid, HS256 and alg none are refused', async () => {
    const verifier = new TokenVerifier(settings({ jwksUrl: url }));
    assertRefused(
      await verifier.connection(await sign({ sub: 'x' }, 'RS256', rsa.privateKey, { kid: 'nope' })),
      /no applicable key|matching/i,
    );
    assertRefused(
      await verifier.connection(await sign({ sub: 'x' }, 'RS256', rsaKeys().privateKey, { kid: 'rsa-1' })),
      /signature/,
    );
    assertRefused(
      await verifier.connection(await hs({ sub: 'x' }, { kid: 'rsa-1' }, pem(rsa.publicKey))),
      /alg/i,
    );
    assertRefused(await verifier.connection(new UnsecuredJWT({ sub: 'x' }).encode()));
  });

  test('expired JWKS token reports expired', async () => {
    const verifier = new TokenVerifier(settings({ jwksUrl: url }));
    const check = await verifier.connection(
      await sign({ sub: 'x' }, 'ES256', ec.privateKey, { kid: 'ec-1', expiresIn: -5 }),
    );
    assert.equal(check.ok, false);
    assert.equal(!check.ok && check.expired, true);
  });

  test('default cooldown: a rotated-in key is not fetched right after a fetch', async () => {
    // jose refetches on an unknown kid only once the 30 s cooldown since the last fetch has passed.
    const verifier = new TokenVerifier(settings({ jwksUrl: url }));
    assertOk(await verifier.connection(await sign({ sub: 'x' }, 'RS256', rsa.privateKey, { kid: 'rsa-1' })));
    const unknown = await sign({ sub: 'x' }, 'RS256', rotated.privateKey, { kid: 'rsa-unpublished' });
    const before = fetches;
    assertRefused(await verifier.connection(unknown));
    assert.equal(fetches, before, 'no refetch within the cooldown');
  });

  test('key rotation: a new kid added to the served set verifies', async () => {
    const verifier = new TokenVerifier(settings({ jwksUrl: url }), { cooldownDuration: 0 });
    assertOk(await verifier.connection(await sign({ sub: 'x' }, 'RS256', rsa.privateKey, { kid: 'rsa-1' })));
    const next = await sign({ sub: 'heidi' }, 'RS256', rotated.privateKey, { kid: 'rsa-2' });
    assertRefused(await verifier.connection(next), /no applicable key|matching/i);

    keys.push(await jwk(rotated.publicKey, 'rsa-2', 'RS256'));
    const before = fetches;
    assert.equal(assertOk(await verifier.connection(next)).user, 'heidi');
    assert.equal(fetches, before + 1, 'the unknown kid triggered one refetch');
    // Old key still served, still valid; the cached set answers without a fetch.
    assertOk(await verifier.connection(await sign({ sub: 'x' }, 'RS256', rsa.privateKey, { kid: 'rsa-1' })));
    assert.equal(fetches, before + 1);
  });

  test('an unreachable JWKS URL refuses tokens without throwing', async () => {
    const closed = createServer();
    closed.listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const port = (closed.address() as AddressInfo).port;
    closed.close();
    await once(closed, 'close');
    const verifier = new TokenVerifier(settings({ jwksUrl: `http://127.0.0.1:${port}/jwks` }));
    assertRefused(
      await verifier.connection(await sign({ sub: 'x' }, 'RS256', rsa.privateKey, { kid: 'rsa-1' })),
    );
  });
});

describe('no key configured', () => {
  const verifier = new TokenVerifier(settings());

  test('disabled, and every token is refused with a clear reason', async () => {
    assert.equal(verifier.enabled, false);
    const { privateKey } = rsaKeys();
    for (const tok of [
      await hs({ sub: 'x' }),
      await sign({ sub: 'x' }, 'RS256', privateKey),
      new UnsecuredJWT({ sub: 'x' }).encode(),
      'garbage',
    ]) {
      assert.deepEqual(await verifier.connection(tok), {
        ok: false,
        expired: false,
        reason: 'no token key configured',
      });
      assert.deepEqual(await verifier.subscription(tok), {
        ok: false,
        expired: false,
        reason: 'no token key configured',
      });
    }
  });

  test('enabled with any one key', () => {
    assert.equal(new TokenVerifier(settings({ hmacSecrets: [SECRET] })).enabled, true);
    assert.equal(new TokenVerifier(settings({ publicKey: pem(ecKeys().publicKey) })).enabled, true);
    assert.equal(new TokenVerifier(settings({ jwksUrl: 'http://127.0.0.1:1/jwks' })).enabled, true);
  });
});

describe('gateway with an RS256 public key file', () => {
  const { publicKey, privateKey } = rsaKeys();
  let dir: string;
  let gateway: Gateway | undefined;
  const clients: Centrifuge[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'switchboard-auth-'));
    const file = join(dir, 'token-public.pem');
    writeFileSync(file, pem(publicKey));
    gateway = await startGateway({
      SWITCHBOARD_TOKEN_HMAC_SECRET_KEY: '',
      SWITCHBOARD_TOKEN_PUBLIC_KEY: file,
    });
  });

  after(async () => {
    for (const c of clients) c.disconnect();
    await gateway?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a client with an RS256 token connects', async () => {
    const c = client(gateway!, {
      token: await sign({ sub: 'ivan' }, 'RS256', privateKey, { expiresIn: 300 }),
    });
    clients.push(c);
    const connected = nextEvent<{ client: string }>(c, 'connected');
    c.connect();
    assert.ok((await connected).client);
  });

  test('a token signed by another RSA key is disconnected with 3500', async () => {
    const c = client(gateway!, { token: await sign({ sub: 'ivan' }, 'RS256', rsaKeys().privateKey) });
    clients.push(c);
    const disconnected = nextEvent<DisconnectedContext>(c, 'disconnected');
    c.connect();
    assert.equal((await disconnected).code, 3500);
  });

  test('an HS256 token is refused: no secret configured', async () => {
    const c = client(gateway!, { token: await token({ sub: 'ivan' }) });
    clients.push(c);
    const disconnected = nextEvent<DisconnectedContext>(c, 'disconnected');
    c.connect();
    assert.equal((await disconnected).code, 3500);
  });
});
