/**
 * Fossil delta encoding, the `fossil` delta type of Centrifugo's delta
 * compression: a publication may be sent as the difference from the previous
 * one on its channel, which centrifuge-js applies to the data it kept.
 *
 * Format (https://fossil-scm.org/home/doc/tip/www/delta_format.wiki), all
 * numbers unsigned in base 64, most significant digit first, digits
 * `0-9 A-Z _ a-z ~`:
 *
 *     <target size>\n  then commands:  <n>@<offset>,   copy n bytes of the source
 *                                       <n>:<n bytes>   insert these bytes
 *                                       <checksum>;     end, checksum of the target
 *
 * The encoder indexes the source in 16-byte blocks and slides a rolling hash
 * of a 16-byte window along the target; a window found in the source is
 * extended both ways into a copy. Between copies, runs too short for a window
 * are copied when they continue the last copy's diagonal (a value that changed
 * but kept its length). Copy boundaries never fall inside a well-formed
 * UTF-8 sequence of the target, so a delta of UTF-8 text is UTF-8 text itself
 * and survives the JSON transport, which carries it as a string.
 */

/** Size of the hashed window and of the source blocks. */
const WINDOW = 16;
/** Candidate source blocks examined per target position at most, against repetitive inputs. */
const MAX_CANDIDATES = 64;
/** A copy long enough to stop looking for a longer one: a longer one would save a command or so. */
const LONG_MATCH = 4096;
/** Numbers of the format are read as 32-bit unsigned; the encoder refuses inputs it could not describe. */
const MAX_NUMBER = 0xffff_ffff;
/**
 * Entries of the index table and bytes of the delta kept from call to call
 * (the encoder runs to completion, so one of each serves every call): a
 * source of up to 64 KB with a delta of up to 16 KB then allocates nothing
 * but the result.
 */
const SCRATCH_SIZE = 1 << 14;
let indexScratch: Int32Array | undefined;
let deltaScratch: Uint8Array | undefined;
/** Target size `applyFossilDelta` accepts unless told otherwise. */
const DEFAULT_MAX_OUTPUT_BYTES = 16 * 1024 * 1024;

const NEWLINE = 0x0a;
const COPY = 0x40; // @
const COPY_END = 0x2c; // ,
const INSERT = 0x3a; // :
const END = 0x3b; // ;

const DIGITS = Uint8Array.from('0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~', (c) =>
  c.charCodeAt(0),
);
/** Digit value of each byte, -1 for bytes that are not digits. */
const DIGIT_VALUE = new Int8Array(256).fill(-1);
for (const [value, code] of DIGITS.entries()) DIGIT_VALUE[code] = value;

/** Rolling hash: the window as a polynomial in MULTIPLIER, modulo 2^32. */
const MULTIPLIER = 0x01000193;
/** MULTIPLIER^(WINDOW-1): the weight of the byte leaving the window. */
const OUTGOING = Array.from({ length: WINDOW - 1 }, () => MULTIPLIER).reduce((p, m) => Math.imul(p, m), 1);

/**
 * A delta turning `source` into `target`. It is always valid, but not always
 * worth sending: for unrelated inputs it is a little larger than `target`,
 * so compare its length before using it.
 */
export function fossilDelta(source: Uint8Array, target: Uint8Array): Uint8Array {
  if (source.length > MAX_NUMBER || target.length > MAX_NUMBER)
    throw new RangeError('fossil delta: inputs are limited to 4 GiB');
  const out = new Writer();
  out.number(target.length);
  out.byte(NEWLINE);
  const index = new SourceIndex(source);
  let pending = 0; // start of the target bytes no command describes yet
  let diagonal = 0; // source offset minus target position of the last copy
  let hash = target.length >= WINDOW ? windowHash(target, 0) : 0;
  for (let pos = 0; pos < target.length;) {
    const match =
      (pos + WINDOW <= target.length ? index.bestMatch(target, pos, pending, hash) : undefined) ??
      sameDiagonal(source, target, pos, pending, diagonal);
    if (match !== undefined) {
      if (match.start > pending) out.insert(target, pending, match.start);
      out.copy(match.length, match.offset);
      pending = pos = match.start + match.length;
      diagonal = match.offset - match.start;
      if (pos + WINDOW <= target.length) hash = windowHash(target, pos);
    } else {
      if (pos + WINDOW < target.length)
        hash = (Math.imul(hash - Math.imul(target[pos]!, OUTGOING), MULTIPLIER) + target[pos + WINDOW]!) | 0;
      pos++;
    }
  }
  if (pending < target.length) out.insert(target, pending, target.length);
  out.number(fossilChecksum(target));
  out.byte(END);
  return out.result();
}

/**
 * The target `delta` describes from `source`. Throws on any malformed or
 * hostile delta (commands out of range, sizes that disagree, a bad checksum)
 * and on a declared target size over `maxOutputBytes`; it reads and writes
 * nothing out of range and allocates only the declared size.
 */
export function applyFossilDelta(
  source: Uint8Array,
  delta: Uint8Array,
  maxOutputBytes: number = DEFAULT_MAX_OUTPUT_BYTES,
): Uint8Array {
  const reader = new Reader(delta);
  const size = reader.number();
  reader.expect(NEWLINE, 'target size not terminated by a newline');
  if (size > maxOutputBytes) fail(`target size ${size} exceeds the limit of ${maxOutputBytes} bytes`);
  // Each copy command takes at least 4 bytes ("1@0,") and inserts carry their bytes.
  if (size > delta.length + Math.floor(delta.length / 4) * source.length)
    fail(`target size ${size} is more than a delta of ${delta.length} bytes can produce`);
  const out = new Uint8Array(size);
  let written = 0;
  for (;;) {
    if (reader.pos === delta.length) fail('delta ends before its checksum');
    const count = reader.number();
    const at = reader.pos;
    switch (reader.byte()) {
      case COPY: {
        const offset = reader.number();
        reader.expect(COPY_END, "copy command not terminated by ','");
        if (offset + count > source.length)
          fail(`copy of ${count} bytes at ${offset} extends past the source (${source.length} bytes)`);
        if (count > size - written) fail('copy exceeds the declared target size');
        out.set(source.subarray(offset, offset + count), written);
        written += count;
        break;
      }
      case INSERT: {
        if (count > size - written) fail('insert exceeds the declared target size');
        if (count > delta.length - reader.pos) fail(`insert of ${count} bytes extends past the delta`);
        out.set(delta.subarray(reader.pos, reader.pos + count), written);
        reader.pos += count;
        written += count;
        break;
      }
      case END:
        if (written !== size) fail(`commands produce ${written} bytes, the delta declares ${size}`);
        if (count !== fossilChecksum(out)) fail('checksum mismatch');
        if (reader.pos !== delta.length) fail('bytes after the checksum');
        return out;
      default:
        fail(`unknown command at byte ${at}`);
    }
  }
}

/**
 * The format's checksum: the sum modulo 2^32 of the input read as big-endian
 * 32-bit words, the last one padded with zero bytes.
 */
function fossilChecksum(bytes: Uint8Array): number {
  let sum = 0;
  const whole = bytes.length & ~3;
  let i = 0;
  for (; i < whole; i += 4)
    sum = (sum + ((bytes[i]! << 24) | (bytes[i + 1]! << 16) | (bytes[i + 2]! << 8) | bytes[i + 3]!)) | 0;
  let last = 0;
  for (let shift = 24; i < bytes.length; i++, shift -= 8) last |= bytes[i]! << shift;
  return (sum + last) >>> 0;
}

function windowHash(bytes: Uint8Array, start: number): number {
  let hash = 0;
  for (let i = start; i < start + WINDOW; i++) hash = (Math.imul(hash, MULTIPLIER) + bytes[i]!) | 0;
  return hash;
}

/** Digits `value` takes in base 64. */
function digits(value: number): number {
  let n = 1;
  for (let rest = value >>> 6; rest > 0; rest >>>= 6) n++;
  return n;
}

/** A byte that continues a UTF-8 sequence: 10xxxxxx. */
function continues(byte: number | undefined): boolean {
  return byte !== undefined && (byte & 0xc0) === 0x80;
}

/** Bytes of the UTF-8 sequence `lead` begins (1 for ASCII, and for bytes that begin none). */
function sequenceLength(lead: number): number {
  return lead >= 0xf0 && lead < 0xf8
    ? 4
    : lead >= 0xe0 && lead < 0xf0
      ? 3
      : lead >= 0xc0 && lead < 0xe0
        ? 2
        : 1;
}

/** Where the UTF-8 sequence `p` falls strictly inside begins; `p` if it falls inside none. */
function sequenceStart(bytes: Uint8Array, p: number): number {
  for (let back = 1; back <= 3 && continues(bytes[p - back + 1]); back++) {
    const lead = bytes[p - back];
    if (!continues(lead)) return lead !== undefined && sequenceLength(lead) > back ? p - back : p;
  }
  return p;
}

interface Match {
  /** Where the copy begins in the target, and in the source. */
  start: number;
  offset: number;
  length: number;
  /** Bytes it saves over inserting. */
  gain: number;
}

/**
 * A copy of target bytes `start` to `end` from `offset` in the source, with
 * an end that falls inside a UTF-8 sequence moved inwards to its edge, if it
 * saves bytes over inserting them (`pending` is where the insert it
 * interrupts began).
 */
function copyOf(
  target: Uint8Array,
  start: number,
  end: number,
  offset: number,
  pending: number,
): Match | undefined {
  const from = start;
  const head = sequenceStart(target, start);
  if (head < start) start = head + sequenceLength(target[head]!);
  end = sequenceStart(target, end);
  if (end <= start) return undefined;
  offset += start - from;
  const length = end - start;
  const gain =
    length - digits(length) - digits(offset) - 2 - (start > pending ? digits(start - pending) + 1 : 0);
  return gain > 0 ? { start, offset, length, gain } : undefined;
}

/**
 * The copy at `pos` that continues the diagonal of the last one (the same
 * distance between source and target), the common case of a value that
 * changed but kept its length: runs too short for a window to find.
 */
function sameDiagonal(
  source: Uint8Array,
  target: Uint8Array,
  pos: number,
  pending: number,
  diagonal: number,
): Match | undefined {
  const from = pos + diagonal;
  if (from < 0 || source[from] !== target[pos]) return undefined;
  const max = Math.min(source.length - from, target.length - pos);
  let length = 1;
  while (length < max && source[from + length] === target[pos + length]) length++;
  return copyOf(target, pos, pos + length, from, pending);
}

/**
 * The source's hashes of its whole 16-byte blocks, chained by bucket, in one
 * table: per bucket, 1 + its first block (0: none); per block its hash, and
 * 1 + the next block in its bucket.
 */
class SourceIndex {
  private readonly table: Int32Array;
  private readonly hashes: number;
  private readonly next: number;
  private readonly shift: number;

  constructor(private readonly source: Uint8Array) {
    const blocks = Math.floor(source.length / WINDOW);
    const bits = Math.max(1, 32 - Math.clz32(blocks));
    this.shift = 32 - bits;
    this.hashes = 1 << bits;
    this.next = this.hashes + blocks;
    const size = this.next + blocks;
    const table =
      size <= SCRATCH_SIZE ? (indexScratch ??= new Int32Array(SCRATCH_SIZE)) : new Int32Array(size);
    table.fill(0, 0, this.hashes);
    this.table = table;
    // Last to first, so that each chain starts with the earliest block, the one with most source after it.
    for (let block = blocks - 1; block >= 0; block--) {
      const hash = windowHash(source, block * WINDOW);
      const bucket = this.bucket(hash);
      table[this.hashes + block] = hash;
      table[this.next + block] = table[bucket]!;
      table[bucket] = block + 1;
    }
  }

  private bucket(hash: number): number {
    return Math.imul(hash, 0x9e3779b1) >>> this.shift;
  }

  /**
   * The most profitable copy for the window at `pos` of `target` (whose hash
   * is `hash`), extended forward and back to `pending` at most; undefined if
   * none saves bytes over inserting.
   */
  bestMatch(target: Uint8Array, pos: number, pending: number, hash: number): Match | undefined {
    const source = this.source;
    let best: Match | undefined;
    let candidates = MAX_CANDIDATES;
    const table = this.table;
    for (let entry = table[this.bucket(hash)]!; entry !== 0 && candidates > 0; candidates--) {
      const block = entry - 1;
      entry = table[this.next + block]!;
      if (table[this.hashes + block] !== hash) continue;
      const from = block * WINDOW;
      const forwardMax = Math.min(source.length - from, target.length - pos);
      let forward = 0;
      while (forward < forwardMax && source[from + forward] === target[pos + forward]) forward++;
      if (forward < WINDOW) continue; // same hash, different bytes
      const backMax = Math.min(from, pos - pending);
      let back = 0;
      while (back < backMax && source[from - back - 1] === target[pos - back - 1]) back++;
      const match = copyOf(target, pos - back, pos + forward, from - back, pending);
      if (match !== undefined && match.gain > (best?.gain ?? 0)) {
        best = match;
        if (match.length >= LONG_MATCH) break;
      }
    }
    return best;
  }
}

/** A delta being written, in the scratch bytes until it outgrows them. */
class Writer {
  private bytes: Uint8Array;
  private length = 0;

  constructor() {
    this.bytes = deltaScratch ??= new Uint8Array(SCRATCH_SIZE);
  }

  byte(value: number): void {
    this.reserve(1);
    this.bytes[this.length++] = value;
  }

  number(value: number): void {
    const n = digits(value);
    this.reserve(n);
    for (let i = this.length + n - 1; i >= this.length; i--, value >>>= 6)
      this.bytes[i] = DIGITS[value & 63]!;
    this.length += n;
  }

  copy(length: number, offset: number): void {
    this.number(length);
    this.byte(COPY);
    this.number(offset);
    this.byte(COPY_END);
  }

  insert(from: Uint8Array, start: number, end: number): void {
    this.number(end - start);
    this.byte(INSERT);
    this.reserve(end - start);
    this.bytes.set(from.subarray(start, end), this.length);
    this.length += end - start;
  }

  result(): Uint8Array {
    return this.bytes.slice(0, this.length);
  }

  private reserve(n: number): void {
    if (this.length + n <= this.bytes.length) return;
    const grown = new Uint8Array(Math.max(this.bytes.length * 2, this.length + n));
    grown.set(this.bytes.subarray(0, this.length));
    this.bytes = grown;
  }
}

/** Reads a delta; every read past its end fails. */
class Reader {
  pos = 0;

  constructor(private readonly delta: Uint8Array) {}

  byte(): number {
    const value = this.delta[this.pos];
    if (value === undefined) fail('unterminated delta');
    this.pos++;
    return value;
  }

  expect(value: number, what: string): void {
    if (this.byte() !== value) fail(what);
  }

  /** A number of one or more digits, at most MAX_NUMBER. */
  number(): number {
    const start = this.pos;
    let value = 0;
    for (; this.pos < this.delta.length; this.pos++) {
      const digit = DIGIT_VALUE[this.delta[this.pos]!]!;
      if (digit < 0) break;
      value = value * 64 + digit;
      if (value > MAX_NUMBER) fail(`number at byte ${start} exceeds 32 bits`);
    }
    if (this.pos === start) fail(`number expected at byte ${start}`);
    return value;
  }
}

function fail(reason: string): never {
  throw new Error(`fossil delta: ${reason}`);
}
