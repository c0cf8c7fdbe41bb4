/**
 * Publication tags filters (Centrifugo's `tf` subscribe field, centrifuge-js
 * `tagsFilter`): a tree of FilterNodes a subscriber sends so that only
 * publications whose `tags` match reach it. A bandwidth optimisation, not
 * access control: the subscriber may read the whole channel anyway.
 *
 * A leaf compares one tag (`key`, `cmp`, `val` or `vals`); `and`, `or` and
 * `not` combine child `nodes`. Validated once at subscribe time from hostile
 * input (bounded size, known fields and operators only); evaluated per
 * publication without allocating. Centrifugo never negotiates delta
 * compression for a filtered subscription (the two are exclusive): delta
 * support must keep that.
 */

import type { FilterNode } from './types.js';

/** What one filter may hold: a tree deeper or bigger than these is refused. */
export const TAGS_FILTER_LIMITS = {
  /** Levels of nodes, the root being 1. */
  maxDepth: 8,
  /** Nodes in the whole tree, leaves and logical ones. */
  maxNodes: 64,
  /** Entries of every `vals` list together. */
  maxValues: 128,
  /** Characters of every `key`, `val` and `vals` entry together. */
  maxChars: 4096,
} as const;

const LOGICAL = new Set(['and', 'or', 'not']);
/** Comparisons with one `val`; the numeric ones need it to be a decimal. */
const SINGLE = new Set(['eq', 'neq', 'sw', 'ew', 'ct', 'gt', 'gte', 'lt', 'lte']);
const NUMERIC = new Set(['gt', 'gte', 'lt', 'lte']);
/** Comparisons with a `vals` list. */
const LIST = new Set(['in', 'nin']);
/** Comparisons with neither. */
const PRESENCE = new Set(['ex', 'nex']);
const NODE_FIELDS = new Set(['op', 'key', 'cmp', 'val', 'vals', 'nodes']);

/** A decimal number without exponent, as Centrifugo compares numeric tags: `-12`, `150.25`, `+0.5`. */
const DECIMAL = /^[+-]?\d+(?:\.\d+)?$/;

interface Budget {
  nodes: number;
  values: number;
  chars: number;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Why `raw` is not a valid tags filter (a message naming the offending node,
 * `tf.nodes[1].cmp: ...`), or undefined when it is one: then it can be used
 * as a FilterNode.
 */
export function tagsFilterError(raw: unknown): string | undefined {
  const budget: Budget = { nodes: 0, values: 0, chars: 0 };
  return nodeError(raw, 'tf', 1, budget);
}

function nodeError(raw: unknown, path: string, depth: number, budget: Budget): string | undefined {
  const limits = TAGS_FILTER_LIMITS;
  if (depth > limits.maxDepth) return `${path}: nested deeper than ${limits.maxDepth} levels`;
  if (++budget.nodes > limits.maxNodes) return `${path}: more than ${limits.maxNodes} nodes`;
  if (!isObject(raw)) return `${path} must be an object`;
  for (const field in raw) {
    if (!NODE_FIELDS.has(field)) return `${path}: unknown field ${JSON.stringify(field.slice(0, 32))}`;
  }
  const { op = '', key, cmp, val, vals, nodes } = raw;
  if (typeof op !== 'string') return `${path}.op must be a string`;
  if (op !== '') {
    if (!LOGICAL.has(op)) return `${path}.op: unknown operation ${JSON.stringify(op.slice(0, 32))}`;
    if (key !== undefined || cmp !== undefined || val !== undefined || vals !== undefined)
      return `${path}: ${op} takes only nodes`;
    if (!Array.isArray(nodes)) return `${path}.nodes must be an array`;
    if (op === 'not' ? nodes.length !== 1 : nodes.length === 0)
      return `${path}: ${op} needs ${op === 'not' ? 'exactly one' : 'at least one'} node`;
    // Refused before walking it: a long array counts against the node budget at once.
    if (budget.nodes + nodes.length > limits.maxNodes) return `${path}: more than ${limits.maxNodes} nodes`;
    for (let i = 0; i < nodes.length; i++) {
      const err = nodeError(nodes[i], `${path}.nodes[${i}]`, depth + 1, budget);
      if (err) return err;
    }
    return undefined;
  }
  if (nodes !== undefined) return `${path}: a comparison takes no nodes`;
  if (typeof cmp !== 'string') return `${path}.cmp must be a string`;
  if (!SINGLE.has(cmp) && !LIST.has(cmp) && !PRESENCE.has(cmp))
    return `${path}.cmp: unknown comparison ${JSON.stringify(cmp.slice(0, 32))}`;
  const k = key ?? '';
  if (typeof k !== 'string') return `${path}.key must be a string`;
  // As Centrifugo: only the existence checks may name the empty key.
  if (k === '' && !PRESENCE.has(cmp)) return `${path}.key is required`;
  budget.chars += k.length;
  if (SINGLE.has(cmp)) {
    if (vals !== undefined) return `${path}: ${cmp} takes val, not vals`;
    if (typeof val !== 'string' || val === '') return `${path}.val must be a non-empty string`;
    if (NUMERIC.has(cmp) && !DECIMAL.test(val)) return `${path}.val must be a decimal number for ${cmp}`;
    budget.chars += val.length;
  } else if (LIST.has(cmp)) {
    if (val !== undefined) return `${path}: ${cmp} takes vals, not val`;
    if (!Array.isArray(vals) || vals.length === 0) return `${path}.vals must be a non-empty array`;
    budget.values += vals.length;
    if (budget.values > limits.maxValues) return `${path}: more than ${limits.maxValues} values`;
    for (const v of vals) {
      if (typeof v !== 'string') return `${path}.vals must hold strings`;
      budget.chars += v.length;
    }
  } else if (val !== undefined || vals !== undefined) {
    return `${path}: ${cmp} takes neither val nor vals`;
  }
  if (budget.chars > limits.maxChars)
    return `${path}: keys and values longer than ${limits.maxChars} characters`;
  return undefined;
}

/**
 * True when a publication with `tags` passes the filter (validated by
 * tagsFilterError). A missing tag is `""` to `in` and `nin`, as in
 * Centrifugo; a numeric comparison with a missing or non-numeric tag is false.
 */
export function matchesTagsFilter(
  filter: FilterNode,
  tags: Readonly<Record<string, string>> | undefined,
): boolean {
  switch (filter.op) {
    case 'and':
      for (const node of filter.nodes!) if (!matchesTagsFilter(node, tags)) return false;
      return true;
    case 'or':
      for (const node of filter.nodes!) if (matchesTagsFilter(node, tags)) return true;
      return false;
    case 'not':
      return !matchesTagsFilter(filter.nodes![0]!, tags);
    default:
      return compare(filter, tags);
  }
}

function compare(leaf: FilterNode, tags: Readonly<Record<string, string>> | undefined): boolean {
  const key = leaf.key ?? '';
  // Own properties only: a tag named `constructor` is not Object.prototype's.
  const raw = tags !== undefined && Object.hasOwn(tags, key) ? tags[key] : undefined;
  const value = typeof raw === 'string' ? raw : undefined;
  const val = leaf.val ?? '';
  switch (leaf.cmp) {
    case 'eq':
      return value === val;
    case 'neq':
      return value !== val;
    case 'in':
      return leaf.vals!.includes(value ?? '');
    case 'nin':
      return !leaf.vals!.includes(value ?? '');
    case 'ex':
      return value !== undefined;
    case 'nex':
      return value === undefined;
    case 'sw':
      return value !== undefined && value.startsWith(val);
    case 'ew':
      return value !== undefined && value.endsWith(val);
    case 'ct':
      return value !== undefined && value.includes(val);
    default: {
      if (value === undefined || !DECIMAL.test(value)) return false;
      const order = compareDecimals(value, val);
      return leaf.cmp === 'gt'
        ? order > 0
        : leaf.cmp === 'gte'
          ? order >= 0
          : leaf.cmp === 'lt'
            ? order < 0
            : order <= 0;
    }
  }
}

/**
 * -1, 0 or 1 as decimal `a` is below, equal to or above `b` (both matching
 * DECIMAL), exactly and at any length: digits are compared, never turned into
 * floating point (`0.1000000000000000001` is above `0.1`).
 */
export function compareDecimals(a: string, b: string): number {
  const negA = a.charCodeAt(0) === 45; // '-'
  const negB = b.charCodeAt(0) === 45;
  const magnitude = compareMagnitudes(a, b);
  if (negA === negB) return negA ? -magnitude : magnitude;
  // Signs differ: only -0 and 0 are equal.
  if (isZero(a) && isZero(b)) return 0;
  return negA ? -1 : 1;
}

const isSign = (c: number) => c === 43 || c === 45; // '+', '-'

function isZero(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 49 && c <= 57) return false; // '1'..'9'
  }
  return true;
}

/** Compares |a| and |b|: integer parts by length once leading zeros are skipped, then digit by digit, then the fractions. */
function compareMagnitudes(a: string, b: string): number {
  const pointA = pointOf(a);
  const pointB = pointOf(b);
  let i = isSign(a.charCodeAt(0)) ? 1 : 0;
  let j = isSign(b.charCodeAt(0)) ? 1 : 0;
  while (i < pointA && a.charCodeAt(i) === 48) i++;
  while (j < pointB && b.charCodeAt(j) === 48) j++;
  if (pointA - i !== pointB - j) return pointA - i > pointB - j ? 1 : -1;
  for (; i < pointA; i++, j++) {
    const d = a.charCodeAt(i) - b.charCodeAt(j);
    if (d !== 0) return d > 0 ? 1 : -1;
  }
  // Fractions without their trailing zeros: the longer one is above where the other has ended.
  let endA = a.length;
  let endB = b.length;
  while (endA > pointA + 1 && a.charCodeAt(endA - 1) === 48) endA--;
  while (endB > pointB + 1 && b.charCodeAt(endB - 1) === 48) endB--;
  for (i = pointA + 1, j = pointB + 1; ; i++, j++) {
    const moreA = i < endA;
    const moreB = j < endB;
    if (!moreA || !moreB) return moreA ? 1 : moreB ? -1 : 0;
    const d = a.charCodeAt(i) - b.charCodeAt(j);
    if (d !== 0) return d > 0 ? 1 : -1;
  }
}

/** Index of the decimal point, or the length for an integer. */
function pointOf(s: string): number {
  const point = s.indexOf('.');
  return point === -1 ? s.length : point;
}
