/** The node:crypto HS256 path refuses everything jose would, and accepts what jose signs. */

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, test } from 'node:test';
import { SignJWT } from 'jose';
import { headerAlg, verifyHs256 } from '../src/hs256.js';

const SECRET = 'a-test-secret-of-some-length';
const keys = [Buffer.from(SECRET)];
const NOW = 1_800_000_000;

/** Signs any header and payload by hand, to build tokens jose would never produce. */
function forge(header: unknown, payload: unknown, secret = SECRET): string {
  const enc = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const input = `${enc(header)}.${enc(payload)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

const refused = (token: string, reason: RegExp, options = {}) => {
  const result = verifyHs256(token, keys, options, NOW);
  assert.equal(result.ok, false, token);
  assert.match(!result.ok ? result.reason : '', reason);
};

describe('HS256 on node:crypto', () => {
  test('a jose-signed token verifies with its claims', async () => {
    const token = await new SignJWT({ sub: 'ann', info: { n: 1 } })
      .setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime(NOW + 60)
      .sign(Buffer.from(SECRET));
    assert.equal(headerAlg(token), 'HS256');
    const result = verifyHs256(token, keys, {}, NOW);
    assert.ok(result.ok);
    assert.equal(result.ok && result.payload.sub, 'ann');
  });

  test('a bad signature, another secret or a tampered payload is refused', () => {
    const token = forge({ alg: 'HS256' }, { sub: 'ann' });
    const [h, p, s] = token.split('.') as [string, string, string];
    refused(forge({ alg: 'HS256' }, { sub: 'ann' }, 'other'), /signature/);
    refused(`${h}.${Buffer.from('{"sub":"root"}').toString('base64url')}.${s}`, /signature/);
    refused(`${h}.${p}.${s.slice(0, -2)}`, /signature/);
    refused(`${h}.${p}.`, /signature/);
  });

  test('several secrets: tried in order, the one that verified named', () => {
    const secrets = [Buffer.from('new-secret'), ...keys];
    const check = (secret: string) =>
      verifyHs256(forge({ alg: 'HS256' }, { sub: 'ann' }, secret), secrets, {}, NOW);
    assert.deepEqual(check('new-secret'), { ok: true, payload: { sub: 'ann' }, secret: 0 });
    assert.deepEqual(check(SECRET), { ok: true, payload: { sub: 'ann' }, secret: 1 });
    assert.equal(check('other').ok, false);
    assert.equal(verifyHs256(forge({ alg: 'HS256' }, { sub: 'ann' }), [], {}, NOW).ok, false);
  });

  test('malformed tokens and headers are refused', () => {
    refused('', /malformed/);
    refused('a.b', /malformed/);
    refused('a.b.c.d', /malformed/);
    refused('a+b.c.d', /malformed/);
    refused(forge({ alg: 'none' }, { sub: 'ann' }), /HS256/);
    refused(forge({ alg: 'HS256', crit: ['exp'] }, { sub: 'ann' }), /crit/);
    refused(forge({ alg: 'HS256', b64: false }, { sub: 'ann' }), /unencoded/);
    refused(forge({ alg: 'HS256' }, ['not', 'an', 'object']), /payload/);
    assert.equal(headerAlg('not a token'), undefined);
  });

  test('a header decoded once for many tokens is judged the same for each; headers past the cache still are', () => {
    // The same header text again and again (then as many others as fill the cache and more).
    for (let i = 0; i < 3; i++) {
      refused(forge({ alg: 'HS256', crit: ['exp'] }, { sub: `ann${i}` }), /crit/);
      refused(forge({ alg: 'none' }, { sub: `ann${i}` }), /HS256/);
      assert.equal(verifyHs256(forge({ alg: 'HS256' }, { sub: `ann${i}` }), keys, {}, NOW).ok, true);
    }
    for (let i = 0; i < 100; i++) {
      const token = forge({ alg: 'HS256', kid: `k${i}` }, { sub: 'bob' });
      assert.equal(headerAlg(token), 'HS256');
      assert.equal(verifyHs256(token, keys, {}, NOW).ok, true);
      refused(forge({ alg: 'HS256', kid: `k${i}`, crit: ['x'] }, { sub: 'bob' }), /crit/);
    }
    // A malformed header is remembered as malformed, not as a pass.
    refused(`e30K!.${forge({ alg: 'HS256' }, { sub: 'ann' }).split('.').slice(1).join('.')}`, /malformed/);
    assert.equal(headerAlg('bm90IGpzb24.e30.x'), undefined);
    assert.equal(headerAlg('bm90IGpzb24.e30.x'), undefined);
  });

  test('time claims: expired, not yet valid, and non-numeric', () => {
    const expired = verifyHs256(forge({ alg: 'HS256' }, { exp: NOW }), keys, {}, NOW);
    assert.deepEqual(expired, { ok: false, expired: true, reason: 'token expired' });
    assert.ok(verifyHs256(forge({ alg: 'HS256' }, { exp: NOW + 1 }), keys, {}, NOW).ok);
    refused(forge({ alg: 'HS256' }, { nbf: NOW + 1 }), /nbf/);
    assert.ok(verifyHs256(forge({ alg: 'HS256' }, { nbf: NOW }), keys, {}, NOW).ok);
    refused(forge({ alg: 'HS256' }, { exp: String(NOW + 60) }), /exp.*number/);
    refused(forge({ alg: 'HS256' }, { iat: 'yesterday' }), /iat.*number/);
  });

  test('audience and issuer when configured', () => {
    const options = { audience: 'app', issuer: 'https://auth.example' };
    const ok = (payload: object) => verifyHs256(forge({ alg: 'HS256' }, payload), keys, options, NOW).ok;
    assert.ok(ok({ aud: 'app', iss: 'https://auth.example' }));
    assert.ok(ok({ aud: ['other', 'app'], iss: 'https://auth.example' }));
    refused(forge({ alg: 'HS256' }, { aud: 'other', iss: 'https://auth.example' }), /aud/, options);
    refused(forge({ alg: 'HS256' }, { iss: 'https://auth.example' }), /aud/, options);
    refused(forge({ alg: 'HS256' }, { aud: 'app', iss: 'https://evil.example' }), /iss/, options);
  });
});
