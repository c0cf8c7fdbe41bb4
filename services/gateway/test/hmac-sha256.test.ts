/** The JavaScript HMAC-SHA256 agrees with node:crypto on every length that matters, and compares signatures exactly. */

import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { HmacSha256, isBase64url, matchesBase64url } from '../src/hmac-sha256.js';

/** The eight big-endian words as bytes. */
const bytes = (words: Int32Array): Buffer => {
  const out = Buffer.alloc(32);
  words.forEach((w, i) => out.writeInt32BE(w, i * 4));
  return out;
};

/** A text of `length` chars with codes 0..255, as the HMAC takes them (one byte each). */
const latin1Text = (length: number): string => randomBytes(length).toString('latin1');

describe('HMAC-SHA256 in JavaScript', () => {
  test('RFC 4231 test case 2 (key "Jefe")', () => {
    const text = 'what do ya want for nothing?';
    const digest = new HmacSha256(Buffer.from('Jefe')).digest(text, text.length);
    assert.equal(
      bytes(digest).toString('hex'),
      '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
    );
  });

  test('agrees with node:crypto for keys of 0..200 bytes and texts of 0..300 chars', () => {
    for (const keyLength of [0, 1, 20, 32, 63, 64, 65, 131, 200]) {
      const secret = randomBytes(keyLength);
      const key = new HmacSha256(secret);
      for (let length = 0; length <= 300; length++) {
        const text = latin1Text(length);
        const want = createHmac('sha256', secret).update(Buffer.from(text, 'latin1')).digest('hex');
        assert.equal(
          bytes(key.digest(text, length)).toString('hex'),
          want,
          `key ${keyLength}, text ${length}`,
        );
      }
    }
  });

  test('hashes only the chars before `end`', () => {
    const secret = randomBytes(32);
    const text = `${latin1Text(90)}.rest-of-it`;
    const want = createHmac('sha256', secret)
      .update(Buffer.from(text.slice(0, 90), 'latin1'))
      .digest('hex');
    assert.equal(bytes(new HmacSha256(secret).digest(text, 90)).toString('hex'), want);
  });

  test('a signature matches only its own digest, every char and the length checked', () => {
    const key = new HmacSha256(randomBytes(32));
    const digest = Int32Array.from(key.digest('abc', 3));
    const signature = bytes(digest).toString('base64url');
    assert.equal(signature.length, 43);
    assert.ok(matchesBase64url(digest, `xx.${signature}`, 3));
    for (let i = 0; i < signature.length; i++) {
      const other = signature[i] === 'A' ? 'B' : 'A';
      const changed = `${signature.slice(0, i)}${other}${signature.slice(i + 1)}`;
      // The last char's two low bits lie past the 32 bytes: Buffer ignores them, and so does this.
      const same = Buffer.from(changed, 'base64url').equals(bytes(digest));
      assert.equal(matchesBase64url(digest, changed, 0), same, `char ${i}`);
      if (i < signature.length - 1) assert.equal(same, false);
    }
    assert.equal(matchesBase64url(digest, signature.slice(0, 42), 0), false);
    assert.equal(matchesBase64url(digest, `${signature}A`, 0), false);
    assert.equal(matchesBase64url(digest, '', 0), false);
  });

  test('base64url alphabet: letters, digits, - and _, nothing else', () => {
    assert.ok(isBase64url('AZaz09-_', 0, 8));
    assert.ok(isBase64url('', 0, 0));
    for (const bad of ['+', '/', '=', '.', ' ', 'é', '\u0000', '\u{1f600}'])
      assert.equal(isBase64url(`ab${bad}cd`, 0, 4 + bad.length), false, JSON.stringify(bad));
    assert.ok(isBase64url('ab.cd', 3, 5));
  });
});
