/**
 * Publication tags filters without sockets: every comparison and logical
 * operation on Centrifugo's documented example, exact decimal comparison, and
 * validation of hostile filters (too deep, too big, unknown operators, wrong
 * types), which must be refused with a message and never throw.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  compareDecimals,
  type FilterNode,
  matchesTagsFilter,
  TAGS_FILTER_LIMITS,
  tagsFilterError,
} from '../src/index.js';

/** The publication tags of Centrifugo's documentation examples. */
const TAGS = { ticker: 'AAPL', source: 'NASDAQ', price: '150.25', category: 'tech', volume: '1000' };

/** A filter that must validate, evaluated against `tags`. */
function matches(filter: FilterNode, tags: Record<string, string> = TAGS): boolean {
  assert.equal(tagsFilterError(filter), undefined, JSON.stringify(filter));
  return matchesTagsFilter(filter, tags);
}

/** The validation message of a filter that must be refused. */
function refused(raw: unknown, message: RegExp): void {
  const error = tagsFilterError(raw);
  assert.ok(error !== undefined, `expected ${JSON.stringify(raw)?.slice(0, 200)} to be refused`);
  assert.match(error, message);
}

const leaf = (key: string, cmp: FilterNode['cmp'], val: string): FilterNode => ({ key, cmp, val });
const nest = (depth: number): FilterNode =>
  depth === 1 ? leaf('ticker', 'eq', 'AAPL') : { op: 'not', nodes: [nest(depth - 1)] };

describe('tags filter comparisons', () => {
  const cases: [FilterNode, boolean][] = [
    [leaf('ticker', 'eq', 'AAPL'), true],
    [leaf('ticker', 'eq', 'aapl'), false],
    [leaf('source', 'neq', 'TEST'), true],
    [leaf('source', 'neq', 'NASDAQ'), false],
    [{ key: 'category', cmp: 'in', vals: ['tech', 'finance'] }, true],
    [{ key: 'category', cmp: 'in', vals: ['finance'] }, false],
    [{ key: 'ticker', cmp: 'nin', vals: ['MSFT', 'GOOGL'] }, true],
    [{ key: 'ticker', cmp: 'nin', vals: ['AAPL'] }, false],
    [{ key: 'price', cmp: 'ex' }, true],
    [{ key: 'internal_id', cmp: 'ex' }, false],
    [{ key: 'internal_id', cmp: 'nex' }, true],
    [{ key: 'price', cmp: 'nex' }, false],
    [leaf('ticker', 'sw', 'AA'), true],
    [leaf('ticker', 'sw', 'PL'), false],
    [leaf('source', 'ew', 'DAQ'), true],
    [leaf('source', 'ew', 'NAS'), false],
    [leaf('category', 'ct', 'ec'), true],
    [leaf('category', 'ct', 'fin'), false],
    [leaf('price', 'gt', '100'), true],
    [leaf('price', 'gt', '150.25'), false],
    [leaf('volume', 'gte', '1000'), true],
    [leaf('volume', 'gte', '1000.0001'), false],
    [leaf('price', 'lt', '200'), true],
    [leaf('price', 'lt', '150.250'), false],
    [leaf('volume', 'lte', '1000'), true],
    [leaf('volume', 'lte', '999.99'), false],
  ];
  for (const [filter, expected] of cases) {
    test(`${JSON.stringify(filter)} → ${expected}`, () => assert.equal(matches(filter), expected));
  }

  test('a missing tag: eq, sw, ew, ct and the numeric comparisons fail, neq and nex pass', () => {
    for (const cmp of ['eq', 'sw', 'ew', 'ct', 'gt', 'gte', 'lt', 'lte'] as const)
      assert.equal(matches(leaf('missing', cmp, '1')), false, cmp);
    assert.equal(matches(leaf('missing', 'neq', '1')), true);
    assert.equal(matches({ key: 'missing', cmp: 'nex' }), true);
  });

  test('a missing tag is "" to in and nin, as in Centrifugo', () => {
    assert.equal(matches({ key: 'missing', cmp: 'in', vals: ['a'] }), false);
    assert.equal(matches({ key: 'missing', cmp: 'in', vals: ['a', ''] }), true);
    assert.equal(matches({ key: 'missing', cmp: 'nin', vals: ['a'] }), true);
    assert.equal(matches({ key: 'missing', cmp: 'nin', vals: [''] }), false);
  });

  test('a publication without tags is one with every tag missing', () => {
    assert.equal(matchesTagsFilter(leaf('ticker', 'eq', 'AAPL'), undefined), false);
    assert.equal(matchesTagsFilter(leaf('ticker', 'neq', 'AAPL'), undefined), true);
    assert.equal(matchesTagsFilter({ key: 'ticker', cmp: 'nex' }, undefined), true);
    assert.equal(matchesTagsFilter({ key: 'ticker', cmp: 'nin', vals: ['AAPL'] }, undefined), true);
  });

  test('a numeric comparison with a non-numeric tag is false, whichever way', () => {
    const tags = { price: 'n/a', exp: '1e3', hex: '0x10', empty: '' };
    for (const key of Object.keys(tags)) {
      assert.equal(matches(leaf(key, 'gt', '0'), tags), false, key);
      assert.equal(matches(leaf(key, 'lte', '0'), tags), false, key);
    }
  });

  test('only own tags count: Object.prototype names are not tags', () => {
    for (const key of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
      assert.equal(matches({ key, cmp: 'ex' }, {}), false, key);
      assert.equal(matches(leaf(key, 'sw', 'f'), {}), false, key);
    }
    const own = JSON.parse('{"__proto__":"x","constructor":"y"}') as Record<string, string>;
    assert.equal(matches(leaf('__proto__', 'eq', 'x'), own), true);
    assert.equal(matches(leaf('constructor', 'eq', 'y'), own), true);
  });

  test('the empty key is allowed for the existence checks only', () => {
    assert.equal(matches({ key: '', cmp: 'ex' }, { '': 'v' }), true);
    assert.equal(matches({ cmp: 'nex' }, { '': 'v' }), false);
    refused({ cmp: 'eq', val: 'v' }, /tf\.key is required/);
  });
});

describe('tags filter logical nodes', () => {
  test('and needs every node, or any, not inverts its one node', () => {
    const yes = leaf('ticker', 'eq', 'AAPL');
    const no = leaf('ticker', 'eq', 'MSFT');
    assert.equal(matches({ op: 'and', nodes: [yes, leaf('category', 'eq', 'tech')] }), true);
    assert.equal(matches({ op: 'and', nodes: [yes, no] }), false);
    assert.equal(matches({ op: 'or', nodes: [no, yes] }), true);
    assert.equal(matches({ op: 'or', nodes: [no, no] }), false);
    assert.equal(matches({ op: 'not', nodes: [no] }), true);
    assert.equal(matches({ op: 'not', nodes: [yes] }), false);
  });

  test('the documentation example: AAPL, price at least 100, on NASDAQ or NYSE', () => {
    const filter: FilterNode = {
      op: 'and',
      nodes: [
        leaf('ticker', 'eq', 'AAPL'),
        leaf('price', 'gte', '100'),
        { key: 'source', cmp: 'in', vals: ['NASDAQ', 'NYSE'] },
      ],
    };
    assert.equal(matches(filter), true);
    assert.equal(matches(filter, { ...TAGS, price: '99.999' }), false);
    assert.equal(matches(filter, { ...TAGS, source: 'LSE' }), false);
  });

  test('an empty op is a leaf', () => {
    assert.equal(matches({ op: '', key: 'ticker', cmp: 'eq', val: 'AAPL' }), true);
  });

  test('nesting up to the depth bound evaluates (an odd number of nots inverts)', () => {
    const max = TAGS_FILTER_LIMITS.maxDepth;
    assert.equal(matches(nest(max)), max % 2 === 1);
    assert.equal(matches(nest(max - 1)), max % 2 === 0);
  });
});

describe('exact decimal comparison', () => {
  const cases: [string, string, number][] = [
    ['1', '1', 0],
    ['007', '7.000', 0],
    ['-0', '0', 0],
    ['+0.0', '-0.00', 0],
    ['+5', '5', 0],
    ['10', '9.99', 1],
    ['9.99', '10', -1],
    ['-2', '-1.5', -1],
    ['-1.5', '-2', 1],
    ['-0.1', '0', -1],
    ['0', '-0.1', 1],
    ['0.1000000000000000001', '0.1', 1],
    ['0.1', '0.1000000000000000001', -1],
    ['123456789012345678901234567890', '123456789012345678901234567889', 1],
    ['9007199254740993', '9007199254740992', 1],
    ['1.05', '1.5', -1],
  ];
  for (const [a, b, expected] of cases) {
    test(`${a} vs ${b} → ${expected}`, () => assert.equal(compareDecimals(a, b), expected));
  }

  test('agrees with Number on values that are exact in floating point, and is antisymmetric', () => {
    const decimal = fc
      .tuple(fc.integer({ min: -1_000_000, max: 1_000_000 }), fc.integer({ min: 0, max: 3 }))
      .map(([n, scale]) => (n / 10 ** scale).toFixed(scale));
    fc.assert(
      fc.property(decimal, decimal, (a, b) => {
        const expected = Math.sign(Number(a) - Number(b));
        return compareDecimals(a, b) === expected && compareDecimals(b, a) === -expected;
      }),
      { numRuns: 2000 },
    );
  });
});

describe('tags filter validation refuses hostile filters', () => {
  test('deeper than the bound', () => {
    assert.equal(tagsFilterError(nest(TAGS_FILTER_LIMITS.maxDepth)), undefined);
    refused(nest(TAGS_FILTER_LIMITS.maxDepth + 1), /nested deeper than 8 levels/);
    // Far deeper: refused at the bound, the stack never in danger.
    refused(nest(1000), /nested deeper than/);
  });

  test('more nodes than the bound, a huge nodes array refused before it is walked', () => {
    const leaves = (n: number) => Array.from({ length: n }, () => leaf('ticker', 'eq', 'AAPL'));
    const max = TAGS_FILTER_LIMITS.maxNodes;
    assert.equal(tagsFilterError({ op: 'or', nodes: leaves(max - 1) }), undefined);
    refused({ op: 'or', nodes: leaves(max) }, /tf: more than 64 nodes/);
    refused({ op: 'and', nodes: new Array(1_000_000).fill(0) }, /tf: more than 64 nodes/);
    // Spread over branches, the whole tree counts.
    const branch = { op: 'and', nodes: leaves(20) };
    refused({ op: 'or', nodes: [branch, branch, branch, branch] }, /more than 64 nodes/);
  });

  test('more values or characters than the bounds', () => {
    const many = Array.from({ length: TAGS_FILTER_LIMITS.maxValues + 1 }, (_, i) => `v${i}`);
    refused({ key: 'k', cmp: 'in', vals: many }, /more than 128 values/);
    refused(
      { key: 'k', cmp: 'eq', val: 'x'.repeat(TAGS_FILTER_LIMITS.maxChars) },
      /longer than 4096 characters/,
    );
    const half = 'y'.repeat(TAGS_FILTER_LIMITS.maxChars / 2);
    refused(
      { op: 'and', nodes: [leaf('k', 'eq', half), leaf('k', 'eq', half)] },
      /tf\.nodes\[1\]: keys and values longer than 4096/,
    );
  });

  test('unknown operations, comparisons and fields, named in the message', () => {
    refused({ op: 'xor', nodes: [leaf('a', 'eq', 'b')] }, /tf\.op: unknown operation "xor"/);
    refused({ key: 'a', cmp: 'like', val: 'b' }, /tf\.cmp: unknown comparison "like"/);
    refused({ key: 'a', cmp: 'starts', val: 'b' }, /unknown comparison "starts"/);
    refused({ cmp: 'like', val: 'b' }, /tf\.cmp: unknown comparison "like"/);
    refused({ key: 'a', cmp: 'eq', val: 'b', extra: 1 }, /tf: unknown field "extra"/);
    refused(JSON.parse('{"key":"a","cmp":"ex","__proto__":{"op":"and"}}'), /unknown field "__proto__"/);
    refused({ op: 'and', nodes: [leaf('a', 'eq', 'b'), { key: 'a', cmp: 'nope' }] }, /tf\.nodes\[1\]\.cmp/);
  });

  test('wrong types', () => {
    refused('eq', /tf must be an object/);
    refused(null, /tf must be an object/);
    refused([leaf('a', 'eq', 'b')], /tf must be an object/);
    refused({ op: 1, nodes: [] }, /tf\.op must be a string/);
    refused({ key: 1, cmp: 'eq', val: 'b' }, /tf\.key must be a string/);
    refused({ key: 'a', cmp: ['eq'], val: 'b' }, /tf\.cmp must be a string/);
    refused({ key: 'a', cmp: 'eq', val: 5 }, /tf\.val must be a non-empty string/);
    refused({ key: 'a', cmp: 'in', vals: ['x', 5] }, /tf\.vals must hold strings/);
    refused({ key: 'a', cmp: 'in', vals: 'x' }, /tf\.vals must be a non-empty array/);
    refused({ op: 'and', nodes: { 0: leaf('a', 'eq', 'b') } }, /tf\.nodes must be an array/);
    refused({ op: 'or', nodes: ['a'] }, /tf\.nodes\[0\] must be an object/);
  });

  test('values that do not fit the comparison', () => {
    refused({ key: 'a', cmp: 'eq' }, /tf\.val must be a non-empty string/);
    refused({ key: 'a', cmp: 'eq', val: '' }, /tf\.val must be a non-empty string/);
    refused({ key: 'a', cmp: 'eq', val: 'b', vals: ['c'] }, /eq takes val, not vals/);
    refused({ key: 'a', cmp: 'in', vals: [] }, /tf\.vals must be a non-empty array/);
    refused({ key: 'a', cmp: 'nin', val: 'b', vals: ['b'] }, /nin takes vals, not val/);
    refused({ key: 'a', cmp: 'ex', val: 'b' }, /ex takes neither val nor vals/);
    refused({ key: 'a', cmp: 'nex', vals: ['b'] }, /nex takes neither val nor vals/);
    for (const val of ['abc', '1e3', '0x10', '1.', '.5', ' 1', 'NaN', 'Infinity'])
      refused({ key: 'a', cmp: 'gt', val }, /tf\.val must be a decimal number for gt/);
    refused({ key: 'a' }, /tf\.cmp must be a string/);
  });

  test('logical nodes: the right number of nodes and nothing of a leaf', () => {
    refused({ op: 'and', nodes: [] }, /and needs at least one node/);
    refused({ op: 'or' }, /tf\.nodes must be an array/);
    refused({ op: 'not', nodes: [] }, /not needs exactly one node/);
    refused({ op: 'not', nodes: [leaf('a', 'eq', 'b'), leaf('a', 'eq', 'c')] }, /not needs exactly one node/);
    refused({ op: 'and', key: 'a', nodes: [leaf('a', 'eq', 'b')] }, /and takes only nodes/);
    refused({ key: 'a', cmp: 'eq', val: 'b', nodes: [] }, /a comparison takes no nodes/);
  });

  test('any JSON value is refused with a message or validates and evaluates, never throws', () => {
    const key = fc.constantFrom('ticker', 'price', 'category', 'missing');
    const validLeaf = fc.oneof(
      fc.record({
        key,
        cmp: fc.constantFrom('eq', 'neq', 'sw', 'ew', 'ct'),
        val: fc.constantFrom('AAPL', 'tech', 'A'),
      }),
      fc.record({
        key,
        cmp: fc.constantFrom('gt', 'gte', 'lt', 'lte'),
        val: fc.constantFrom('100', '150.25', '-2'),
      }),
      fc.record({
        key,
        cmp: fc.constantFrom('in', 'nin'),
        vals: fc.array(fc.constantFrom('tech', 'AAPL', ''), { minLength: 1 }),
      }),
      fc.record({ key, cmp: fc.constantFrom('ex', 'nex') }),
    );
    const node: fc.Arbitrary<unknown> = fc.letrec<{ node: unknown }>((tie) => ({
      node: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        validLeaf,
        fc.record(
          {
            key: fc.oneof(key, fc.constant('')),
            cmp: fc.constantFrom('eq', 'neq', 'in', 'nin', 'ex', 'nex', 'sw', 'ew', 'ct', 'gt', 'lte', 'bad'),
            val: fc.oneof(fc.constantFrom('AAPL', '100', '1.5', ''), fc.jsonValue({ maxDepth: 1 })),
            vals: fc.oneof(fc.array(fc.constantFrom('tech', 'AAPL', '')), fc.jsonValue({ maxDepth: 1 })),
          },
          { requiredKeys: [] },
        ),
        fc.record(
          {
            op: fc.constantFrom('and', 'or', 'not', '', 'nand'),
            nodes: fc.array(tie('node'), { maxLength: 3 }),
          },
          { requiredKeys: ['op'] },
        ),
        fc.jsonValue({ maxDepth: 3 }),
      ),
    })).node;
    let valid = 0;
    fc.assert(
      fc.property(node, (raw) => {
        const error = tagsFilterError(raw);
        if (error !== undefined) return error.length > 0;
        valid++;
        const result = matchesTagsFilter(raw as FilterNode, TAGS);
        return typeof result === 'boolean';
      }),
      { numRuns: 3000 },
    );
    // The generator reaches valid filters, not only refusals.
    assert.ok(valid > 300, `only ${valid} valid filters generated`);
  });
});
