/**
 * Property-based fuzzing of the pure protocol code (fast-check): whatever
 * bytes arrive, parsing answers and never throws, bounds hold, names cannot
 * address another subject. A fixed seed in CI (FUZZ_SEED), more runs with
 * `make fuzz` (FUZZ_RUNS).
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  compilePattern,
  connectionClaims,
  decodeToken,
  encodeToken,
  matchesPattern,
  METHODS,
  nestedDeeperThan,
  parseChannel,
  parseEmulationRequest,
  parseFrame,
  parseJson,
  subscriptionClaims,
} from '../src/index.js';

const params = {
  seed: Number(process.env.FUZZ_SEED ?? 20261201),
  numRuns: Number(process.env.FUZZ_RUNS ?? 300),
};

/** Text that looks like commands: real method names with fuzzed bodies, and noise. */
const commandText = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.jsonValue({ maxDepth: 6 }).map((v) => JSON.stringify(v)),
  fc
    .record({
      id: fc.oneof(fc.nat(), fc.integer(), fc.double(), fc.string()),
      method: fc.constantFrom(...METHODS, 'bogus', '__proto__', 'constructor'),
      body: fc.jsonValue({ maxDepth: 8 }),
    })
    .map(({ id, method, body }) => JSON.stringify({ id, [method]: body })),
);

const depthOf = (v: unknown): number =>
  typeof v !== 'object' || v === null ? 0 : 1 + Math.max(0, ...Object.values(v).map(depthOf));

describe('fuzz: client frames', () => {
  test('any frame parses into lines without throwing, and accepted commands are well-formed', () => {
    fc.assert(
      fc.property(
        fc.array(commandText, { maxLength: 8 }),
        fc.integer({ min: 1, max: 10 }),
        (lines, maxDepth) => {
          for (const line of parseFrame(lines.join('\n'), { maxDepth })) {
            if (!line.ok) {
              if (line.kind === 'bad_request') assert.ok(line.detail.length > 0);
              else assert.ok(Number.isSafeInteger(line.id) && line.id > 0);
              continue;
            }
            const { command } = line;
            assert.ok(Number.isSafeInteger(command.id) && command.id >= 0);
            assert.ok(command.method === 'pong' || (METHODS as readonly string[]).includes(command.method));
            if (command.method !== 'pong') assert.ok(!nestedDeeperThan(command, maxDepth + 1));
          }
        },
      ),
      params,
    );
  });

  test('the iterative depth check agrees with a recursive definition', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 12 }), fc.nat(14), (value, bound) => {
        assert.equal(nestedDeeperThan(value, bound), depthOf(value) > bound);
        assert.equal(parseJson(JSON.stringify(value), bound).ok, depthOf(value) <= bound);
      }),
      params,
    );
  });

  test('emulation bodies: any text is parsed or refused with a reason', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: 'binary' }),
          fc.jsonValue().map((v) => JSON.stringify(v)),
        ),
        (text) => {
          const parsed = parseEmulationRequest(text);
          if (typeof parsed === 'string') assert.ok(parsed.length > 0);
          else assert.equal(typeof parsed.data, 'string');
        },
      ),
      params,
    );
  });
});

describe('fuzz: channel names, patterns and subjects', () => {
  test('a channel name that passes holds only the allowed characters, and its subject token is inert', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (name) => {
        const parsed = parseChannel(name, { maxLength: 255 });
        const token = encodeToken(name);
        assert.ok(!/[.*>\s]/.test(token), token);
        assert.equal(decodeToken(token), name);
        if (parsed.ok) assert.match(name, /^[A-Za-z0-9_\-:#,./@=!~+]{1,255}$/);
      }),
      params,
    );
  });

  test('the linear matcher agrees with a regular expression on every pattern', () => {
    const text = (chars: string[]) =>
      fc.array(fc.constantFrom(...chars), { maxLength: 12 }).map((a) => a.join(''));
    fc.assert(
      fc.property(text(['a', 'b', '*', '.']), text(['a', 'b', '.']), (pattern, channel) => {
        const escaped = pattern.split('*').map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
        const reference = new RegExp(`^${escaped.join('.*')}$`).test(channel);
        assert.equal(matchesPattern(compilePattern(pattern), channel), reference, `${pattern} ~ ${channel}`);
      }),
      { ...params, numRuns: params.numRuns * 10 },
    );
  });
});

describe('fuzz: token claims', () => {
  test('no payload is both a connection and a subscription token, and none makes the checks throw', () => {
    const claim = fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.string(), fc.integer(), fc.constant(undefined));
    fc.assert(
      fc.property(
        fc.record(
          {
            sub: claim,
            exp: claim,
            expire_at: claim,
            channel: claim,
            channels: claim,
            subs: claim,
            info: claim,
            b64info: claim,
            meta: claim,
          },
          { requiredKeys: [] },
        ),
        (payload) => {
          const limits = { maxSubs: 8, maxDepth: 4 };
          const asConnection = connectionClaims(payload as Record<string, unknown>, 1_700_000_000, limits);
          const asSubscription = subscriptionClaims(
            payload as Record<string, unknown>,
            1_700_000_000,
            limits,
          );
          assert.ok(!(asConnection.ok && asSubscription.ok), JSON.stringify(payload));
        },
      ),
      params,
    );
  });
});
