/**
 * HMAC-SHA256 (RFC 2104 over FIPS 180-4 SHA-256) of ASCII text, in plain
 * JavaScript, for the HS256 token check on every connect. node:crypto's
 * createHmac builds an Hmac object, fetches the algorithm from OpenSSL and
 * imports the key on every call: about 25 µs per token in a busy gateway
 * (perf, connect benchmark). Here each key's two padded blocks are hashed
 * once, and a token costs its own blocks plus one, with nothing allocated.
 * The tests check it against node:crypto over keys and texts of every length
 * that matters.
 */

import { createHash } from 'node:crypto';

const ROUND_CONSTANTS = Int32Array.from(
  [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  ],
  (k) => k | 0,
);

const INITIAL_STATE = Int32Array.from(
  [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19],
  (h) => h | 0,
);

const BLOCK = 64;

/** The message schedule: a block's 16 words go into its first 16 entries. One gateway thread, so one is shared. */
const schedule = new Int32Array(64);
/** The state of the hash being computed, and the inner digest of an HMAC. */
const state = new Int32Array(8);
const inner = new Int32Array(8);

const rotr = (x: number, n: number): number => (x >>> n) | (x << (32 - n));

/** One SHA-256 compression of the block in `schedule[0..15]` into `h`. */
function compress(h: Int32Array): void {
  const w = schedule;
  for (let t = 16; t < 64; t++) {
    const a = w[t - 15]!;
    const b = w[t - 2]!;
    const s0 = rotr(a, 7) ^ rotr(a, 18) ^ (a >>> 3);
    const s1 = rotr(b, 17) ^ rotr(b, 19) ^ (b >>> 10);
    w[t] = (w[t - 16]! + s0 + w[t - 7]! + s1) | 0;
  }
  let a = h[0]!;
  let b = h[1]!;
  let c = h[2]!;
  let d = h[3]!;
  let e = h[4]!;
  let f = h[5]!;
  let g = h[6]!;
  let k = h[7]!;
  for (let t = 0; t < 64; t++) {
    const t1 =
      (k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + ROUND_CONSTANTS[t]! + w[t]!) | 0;
    const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    k = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  h[0] = (h[0]! + a) | 0;
  h[1] = (h[1]! + b) | 0;
  h[2] = (h[2]! + c) | 0;
  h[3] = (h[3]! + d) | 0;
  h[4] = (h[4]! + e) | 0;
  h[5] = (h[5]! + f) | 0;
  h[6] = (h[6]! + g) | 0;
  h[7] = (h[7]! + k) | 0;
}

/** Puts the 64-bit big-endian length of a message of `bytes` bytes into the schedule's last two words. */
function putLength(bytes: number): void {
  const bits = bytes * 8;
  schedule[14] = Math.floor(bits / 0x1_0000_0000);
  schedule[15] = bits | 0;
}

/**
 * Continues the hash in `h` (which has taken `before` bytes, whole blocks)
 * over the chars `text[0, end)` as bytes, and finishes it (padding, length).
 * Every char code must be below 256; the caller checks.
 */
function finishOverText(h: Int32Array, text: string, end: number, before: number): void {
  const whole = end - (end % BLOCK);
  for (let p = 0; p < whole; p += BLOCK) {
    for (let i = 0; i < 16; i++) {
      const at = p + i * 4;
      schedule[i] =
        (text.charCodeAt(at) << 24) |
        (text.charCodeAt(at + 1) << 16) |
        (text.charCodeAt(at + 2) << 8) |
        text.charCodeAt(at + 3);
    }
    compress(h);
  }
  const tail = end - whole;
  schedule.fill(0, 0, 16);
  for (let i = 0; i < tail; i++) schedule[i >> 2]! |= text.charCodeAt(whole + i) << (24 - 8 * (i & 3));
  schedule[tail >> 2]! |= 0x80 << (24 - 8 * (tail & 3));
  // No room for the length after the 0x80 byte: it goes into one more block.
  if (tail >= BLOCK - 8) {
    compress(h);
    schedule.fill(0, 0, 16);
  }
  putLength(before + end);
  compress(h);
}

/** The state after one block of `key` XOR `pad` (the key zero-padded to the block). */
function padded(key: Uint8Array, pad: number): Int32Array {
  for (let i = 0; i < 16; i++) {
    let word = 0;
    for (let j = 0; j < 4; j++) word = (word << 8) | ((key[i * 4 + j] ?? 0) ^ pad);
    schedule[i] = word;
  }
  const h = Int32Array.from(INITIAL_STATE);
  compress(h);
  return h;
}

/** One HMAC-SHA256 key, its padded blocks hashed once. */
export class HmacSha256 {
  private readonly innerStart: Int32Array;
  private readonly outerStart: Int32Array;

  constructor(secret: Uint8Array) {
    // A key longer than a block is hashed to 32 bytes first (RFC 2104 §2).
    const key = secret.length > BLOCK ? createHash('sha256').update(secret).digest() : secret;
    this.innerStart = padded(key, 0x36);
    this.outerStart = padded(key, 0x5c);
  }

  /**
   * The MAC of the chars `text[0, end)` taken as bytes (every char code must
   * be below 256), as eight big-endian words. The array is shared: it holds
   * this result until the next call.
   */
  digest(text: string, end: number): Int32Array {
    inner.set(this.innerStart);
    finishOverText(inner, text, end, BLOCK);
    state.set(this.outerStart);
    schedule.set(inner);
    schedule.fill(0, 8, 16);
    schedule[8] = 0x80 << 24;
    putLength(BLOCK + 32);
    compress(state);
    return state;
  }
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
/** The 6-bit value of each base64url char code; 64 for any other char below 128. */
const SEXTETS = Uint8Array.from({ length: 128 }, (_, code) => {
  const at = ALPHABET.indexOf(String.fromCharCode(code));
  return at < 0 ? 64 : at;
});

/** Whether `text[from, to)` is base64url without padding (possibly empty). */
export function isBase64url(text: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const code = text.charCodeAt(i);
    if (code >= 128 || SEXTETS[code] === 64) return false;
  }
  return true;
}

/**
 * Whether `text[from..]` (base64url, checked by the caller) decodes to the 32
 * bytes of `words` (big-endian). Every byte is compared, so that the time
 * taken says nothing of how much matched. Bits past the 32nd byte are ignored,
 * as Buffer's decoder ignores them.
 */
export function matchesBase64url(words: Int32Array, text: string, from: number): boolean {
  // 32 bytes are 43 chars unpadded (258 bits).
  if (text.length - from !== 43) return false;
  let diff = 0;
  let bits = 0;
  let acc = 0;
  let byte = 0;
  for (let i = from; i < text.length; i++) {
    acc = (acc << 6) | SEXTETS[text.charCodeAt(i)]!;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      diff |= ((acc >>> bits) & 0xff) ^ ((words[byte >> 2]! >>> (24 - 8 * (byte & 3))) & 0xff);
      byte++;
    }
  }
  return diff === 0;
}
