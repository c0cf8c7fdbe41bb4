import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Command, METHODS, type ParsedLine, parseFrame, parseLine } from '../src/index.js';

function ok(line: string): Command {
  const r = parseLine(line);
  assert.equal(r.ok, true, `expected ${line} to parse, got ${JSON.stringify(r)}`);
  return (r as Extract<ParsedLine, { ok: true }>).command;
}

function badRequest(line: string, detail?: RegExp): string {
  const r = parseLine(line);
  assert.equal(r.ok, false, `expected ${line} to be rejected`);
  const fail = r as Extract<ParsedLine, { ok: false }>;
  assert.equal(fail.kind, 'bad_request', `expected bad_request for ${line}, got ${JSON.stringify(r)}`);
  assert.ok(fail.detail.length > 0, 'detail must not be empty');
  if (detail) assert.match(fail.detail, detail);
  return fail.detail;
}

const cmd = (method: string, body: unknown, id: number | undefined = 1) =>
  JSON.stringify(id === undefined ? { [method]: body } : { [method]: body, id });

describe('parseLine: every method with a valid body', () => {
  const valid: Record<string, unknown> = {
    connect: {
      token: 'eyJ.x.y',
      name: 'js',
      version: '1.0',
      data: { hello: 1 },
      headers: { 'x-a': 'b' },
      subs: { 'personal:42': { recover: true, offset: 17, epoch: 'xYz' }, other: {} },
    },
    subscribe: {
      channel: 'chat:1',
      token: 't',
      data: [1, 2],
      positioned: true,
      recoverable: true,
      join_leave: true,
      flag: 3,
      recover: true,
      offset: 5,
      epoch: 'ab',
      delta: 'fossil',
    },
    unsubscribe: { channel: 'chat:1' },
    publish: { channel: 'chat:1', data: { text: 'hi' } },
    presence: { channel: 'chat:1' },
    presence_stats: { channel: 'chat:1' },
    history: { channel: 'chat:1', limit: 10, since: { offset: 5, epoch: 'ab12' }, reverse: true },
    rpc: { method: 'getX', data: { a: 1 } },
    send: { data: { a: 1 } },
    refresh: { token: 'new' },
    sub_refresh: { channel: 'chat:1', token: 'new' },
  };

  test('the table covers every method', () => {
    assert.deepEqual(Object.keys(valid).sort(), [...METHODS].sort());
  });

  for (const [method, body] of Object.entries(valid)) {
    test(method, () => {
      const c = ok(cmd(method, body, 7));
      assert.deepEqual(c, { id: 7, method, body });
    });
  }

  test('connect with an empty body and no subs', () => {
    assert.deepEqual(ok('{"connect":{},"id":1}'), { id: 1, method: 'connect', body: {} });
  });

  test('a missing or null body counts as an empty object', () => {
    assert.deepEqual(ok('{"rpc":null,"id":2}'), { id: 2, method: 'rpc', body: {} });
    badRequest('{"subscribe":null,"id":2}', /subscribe: channel is required/);
  });

  test('minimal subscribe and history bodies', () => {
    assert.deepEqual(ok('{"subscribe":{"channel":"c"},"id":3}'), {
      id: 3,
      method: 'subscribe',
      body: { channel: 'c' },
    });
    assert.deepEqual(ok('{"history":{"channel":"c"},"id":4}'), {
      id: 4,
      method: 'history',
      body: { channel: 'c' },
    });
  });

  test('history since with offset only or epoch only', () => {
    ok(cmd('history', { channel: 'c', since: { offset: 3 } }));
    ok(cmd('history', { channel: 'c', since: { epoch: 'e' } }));
    ok(cmd('history', { channel: 'c', since: {} }));
  });

  test('publish data may be any JSON value, including null and false', () => {
    for (const data of [null, false, 0, '', 'x', [1], { a: 1 }]) {
      const c = ok(cmd('publish', { channel: 'c', data }));
      assert.equal(c.method, 'publish');
    }
  });

  test('optional fields set to null are accepted', () => {
    ok(cmd('subscribe', { channel: 'c', token: null, offset: null, flag: null }));
  });

  test('unknown command fields are ignored', () => {
    const c = ok(cmd('subscribe', { channel: 'c', later_field: { op: 1 }, whatever: true }));
    assert.equal(c.method, 'subscribe');
  });

  test('large safe integer ids are fine', () => {
    assert.equal(ok(cmd('presence', { channel: 'c' }, Number.MAX_SAFE_INTEGER)).id, Number.MAX_SAFE_INTEGER);
  });
});

describe('parseLine: pong and send', () => {
  test('{} is a pong', () => {
    assert.deepEqual(ok('{}'), { id: 0, method: 'pong' });
  });

  test('{"id":0} is also a pong', () => {
    assert.deepEqual(ok('{"id":0}'), { id: 0, method: 'pong' });
  });

  test('an id with no method is rejected', () => {
    badRequest('{"id":5}', /empty command/);
  });

  test('send without id is fine and gets id 0', () => {
    assert.deepEqual(ok('{"send":{"data":"x"}}'), { id: 0, method: 'send', body: { data: 'x' } });
  });

  test('send with an id is accepted too', () => {
    assert.equal(ok('{"send":{"data":1},"id":9}').id, 9);
  });
});

describe('parseLine: malformed input is a bad_request', () => {
  test('malformed JSON', () => {
    badRequest('{"connect":', /malformed JSON/);
    badRequest('not json', /malformed JSON/);
    badRequest("{'id':1}", /malformed JSON/);
  });

  test('arrays and other non-objects', () => {
    for (const line of ['[]', '[{"connect":{},"id":1}]', '1', '"str"', 'null', 'true']) {
      badRequest(line, /JSON object/);
    }
  });

  test('non-object bodies', () => {
    for (const body of ['"x"', '1', 'true', '[]', '[{"channel":"c"}]']) {
      badRequest(`{"subscribe":${body},"id":1}`, /subscribe must be an object/);
    }
  });

  test('missing id on commands other than send', () => {
    for (const method of METHODS.filter((m) => m !== 'send')) {
      badRequest(`{"${method}":{}}`, new RegExp(`${method} requires an id`));
    }
  });

  test('explicit id 0 on a command other than send', () => {
    badRequest('{"presence":{"channel":"c"},"id":0}', /requires an id/);
  });

  test('negative, float, string and null ids', () => {
    for (const id of ['-1', '1.5', '"1"', 'null', '1e300', 'true']) {
      badRequest(`{"presence":{"channel":"c"},"id":${id}}`, /id must be a non-negative integer/);
    }
  });

  test('unsafe integer id', () => {
    badRequest(`{"presence":{"channel":"c"},"id":${2 ** 53 + 2}}`, /id must be/);
  });

  test('two method keys', () => {
    badRequest('{"connect":{},"subscribe":{"channel":"c"},"id":1}', /exactly one method/);
    badRequest('{"connect":{},"bogus":{},"id":1}', /exactly one method/);
  });
});

describe('parseLine: invalid field types', () => {
  const cases: [string, unknown, RegExp][] = [
    ['subscribe', { channel: 5 }, /subscribe: channel must be a string/],
    ['subscribe', {}, /subscribe: channel is required/],
    ['subscribe', { channel: 'c', offset: -1 }, /offset must be a non-negative integer/],
    ['subscribe', { channel: 'c', offset: 1.5 }, /offset must be a non-negative integer/],
    ['subscribe', { channel: 'c', offset: '5' }, /offset must be a non-negative integer/],
    ['subscribe', { channel: 'c', flag: '1' }, /flag must be a non-negative integer/],
    ['subscribe', { channel: 'c', recover: 'yes' }, /recover must be a boolean/],
    ['subscribe', { channel: 'c', epoch: 1 }, /epoch must be a string/],
    ['subscribe', { channel: 'c', token: {} }, /token must be a string/],
    ['subscribe', { channel: 'c', positioned: 1 }, /positioned must be a boolean/],
    ['subscribe', { channel: 'c', join_leave: 'true' }, /join_leave must be a boolean/],
    ['connect', { token: 1 }, /connect: token must be a string/],
    ['connect', { subs: [] }, /subs must be an object/],
    ['connect', { headers: 'x' }, /headers must be an object/],
    ['connect', { subs: { ch: true } }, /subs\.ch must be an object/],
    ['connect', { subs: { ch: { offset: -3 } } }, /subs\.ch\.offset must be a non-negative integer/],
    ['connect', { subs: { ch: { epoch: 7 } } }, /subs\.ch\.epoch must be a string/],
    ['connect', { subs: { ch: { recover: 'y' } } }, /subs\.ch\.recover must be a boolean/],
    ['unsubscribe', { channel: null }, /channel is required/],
    ['publish', { channel: 'c' }, /publish: data is required/],
    ['publish', { data: 1 }, /channel is required/],
    ['presence', { channel: [] }, /channel must be a string/],
    ['presence_stats', {}, /channel is required/],
    ['history', { channel: 'c', limit: -1 }, /limit must be a non-negative integer/],
    ['history', { channel: 'c', reverse: 'no' }, /reverse must be a boolean/],
    ['history', { channel: 'c', since: 5 }, /since must be an object/],
    ['history', { channel: 'c', since: [] }, /since must be an object/],
    ['history', { channel: 'c', since: { offset: -1 } }, /since must be \{offset, epoch\}/],
    ['history', { channel: 'c', since: { offset: '1' } }, /since must be/],
    ['history', { channel: 'c', since: { offset: 1, epoch: 5 } }, /since must be/],
    ['rpc', { method: 5 }, /rpc: method must be a string/],
    ['refresh', {}, /refresh: token is required/],
    ['refresh', { token: 1 }, /token must be a string/],
    ['sub_refresh', { token: 't' }, /sub_refresh: channel is required/],
    ['sub_refresh', { channel: 'c' }, /sub_refresh: token is required/],
  ];
  for (const [method, body, detail] of cases) {
    test(`${method} ${JSON.stringify(body)}`, () => {
      badRequest(cmd(method, body), detail);
    });
  }
});

describe('parseLine: unknown methods', () => {
  test('unknown method with an id is unknown_method carrying the id', () => {
    const r = parseLine('{"frobnicate":{},"id":12}');
    assert.equal(r.ok, false);
    assert.equal((r as { kind: string }).kind, 'unknown_method');
    const u = r as Extract<ParsedLine, { kind: 'unknown_method' }>;
    assert.equal(u.id, 12);
    assert.match(u.detail, /frobnicate/);
  });

  test('unknown method detail is truncated', () => {
    const r = parseLine(JSON.stringify({ ['x'.repeat(500)]: {}, id: 1 }));
    assert.equal(r.ok, false);
    assert.equal((r as Extract<ParsedLine, { kind: 'unknown_method' }>).detail.length, 32);
  });

  test('the body of an unknown method is not validated', () => {
    const r = parseLine('{"future_method":"not an object","id":3}');
    assert.equal(r.ok, false);
    assert.equal((r as { kind: string }).kind, 'unknown_method');
  });

  test('unknown method without id is bad_request', () => {
    badRequest('{"frobnicate":{}}', /unknown method frobnicate/);
  });

  test('unknown method with a bad id is bad_request', () => {
    badRequest('{"frobnicate":{},"id":-2}', /id must be/);
  });

  test('pong is not a method name on the wire', () => {
    const r = parseLine('{"pong":{},"id":1}');
    assert.equal((r as { kind: string }).kind, 'unknown_method');
  });

  test('prototype property names are not methods', () => {
    for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
      const r = parseLine(`{"${name}":{},"id":4}`);
      assert.equal(r.ok, false, name);
      assert.equal((r as { kind: string }).kind, 'unknown_method', name);
    }
  });
});

describe('parseFrame', () => {
  test('a single command', () => {
    const out = parseFrame('{"connect":{"name":"js"},"id":1}');
    assert.equal(out.length, 1);
    assert.deepEqual(out[0], { ok: true, command: { id: 1, method: 'connect', body: { name: 'js' } } });
  });

  test('several newline-delimited commands in order', () => {
    const frame = [
      '{"connect":{"name":"js"},"id":1}',
      '{"subscribe":{"channel":"news","flag":1},"id":2}',
      '{"subscribe":{"channel":"chat:1","flag":3},"id":3}',
    ].join('\n');
    const out = parseFrame(frame);
    assert.deepEqual(
      out.map((r) => (r.ok ? [r.command.method, r.command.id] : r.kind)),
      [
        ['connect', 1],
        ['subscribe', 2],
        ['subscribe', 3],
      ],
    );
  });

  test('blank lines, whitespace-only lines, CRLF and a trailing newline are skipped', () => {
    const frame = '\n{"presence":{"channel":"a"},"id":1}\r\n\n   \n\t\n{}\n{"send":{"data":1}}\n';
    const out = parseFrame(frame);
    assert.equal(out.length, 3);
    assert.ok(out.every((r) => r.ok));
    assert.deepEqual(
      out.map((r) => (r.ok ? r.command.method : '')),
      ['presence', 'pong', 'send'],
    );
  });

  test('an empty or blank frame gives nothing', () => {
    assert.deepEqual(parseFrame(''), []);
    assert.deepEqual(parseFrame('\n\n'), []);
    assert.deepEqual(parseFrame('   '), []);
  });

  test('a bad line does not swallow its neighbours', () => {
    const out = parseFrame('{"presence":{"channel":"a"},"id":1}\n{oops\n{"what":{},"id":3}\n{}');
    assert.equal(out.length, 4);
    assert.equal(out[0]!.ok, true);
    assert.deepEqual(out[1], { ok: false, kind: 'bad_request', detail: 'malformed JSON' });
    assert.equal(out[2]!.ok, false);
    assert.equal((out[2] as { kind: string }).kind, 'unknown_method');
    assert.deepEqual(out[3], { ok: true, command: { id: 0, method: 'pong' } });
  });

  test('a pong alone in a frame', () => {
    assert.deepEqual(parseFrame('{}'), [{ ok: true, command: { id: 0, method: 'pong' } }]);
  });
});

describe('parseLine: the nesting bound', () => {
  const publish = (depth: number) =>
    `{"id":9,"publish":{"channel":"c","data":${'['.repeat(depth)}${']'.repeat(depth)}}}`;

  test('a command nested within the bound parses; one level more is refused with 107, keeping the id', () => {
    assert.equal(parseLine(publish(6), { maxDepth: 8 }).ok, true);
    const refused = parseLine(publish(7), { maxDepth: 8 });
    assert.equal(refused.ok, false);
    assert.equal((refused as { kind: string }).kind, 'refused');
    assert.equal((refused as { id: number }).id, 9);
    assert.equal((refused as { error: { code: number } }).error.code, 107);
  });

  test('the default bound is 64 and depth far past it does not overflow the stack', () => {
    assert.equal(parseLine(publish(62)).ok, true);
    assert.equal((parseLine(publish(63)) as { kind: string }).kind, 'refused');
    assert.equal((parseLine(publish(100_000)) as { kind: string }).kind, 'refused');
  });

  test('malformed commands stay bad requests whatever their depth', () => {
    badRequest(`${'['.repeat(5000)}${']'.repeat(5000)}`, /JSON object/);
  });
});

describe('parseLine: the tags filter of a subscribe', () => {
  const subscribe = (tf: unknown) => JSON.stringify({ id: 4, subscribe: { channel: 'market:stocks', tf } });

  test('a valid filter is kept on the subscribe; null is none', () => {
    const tf = {
      op: 'and',
      nodes: [
        { key: 'ticker', cmp: 'eq', val: 'AAPL' },
        { key: 'price', cmp: 'ex' },
      ],
    };
    const command = ok(subscribe(tf));
    assert.equal(command.method, 'subscribe');
    assert.deepEqual((command.body as { tf?: unknown }).tf, tf);
    const none = ok(subscribe(null));
    assert.equal(none.method, 'subscribe');
    assert.equal('tf' in none.body, false);
  });

  test('an invalid filter refuses the subscribe with 107 and the reason, keeping the id (not a bad request)', () => {
    for (const [tf, reason] of [
      [{ key: 'ticker', cmp: 'like', val: 'A' }, /unknown comparison "like"/],
      ['ticker=AAPL', /tf must be an object/],
      [{ op: 'or', nodes: [] }, /or needs at least one node/],
    ] as const) {
      const r = parseLine(subscribe(tf));
      assert.equal(r.ok, false);
      const refused = r as Extract<ParsedLine, { kind: 'refused' }>;
      assert.equal(refused.kind, 'refused', JSON.stringify(r));
      assert.equal(refused.id, 4);
      assert.equal(refused.error.code, 107);
      assert.match(refused.error.message, /^invalid tags filter: /);
      assert.match(refused.error.message, reason);
    }
  });
});

describe('parseLine: subscribe delta', () => {
  const subscribe = (body: object) => cmd('subscribe', { channel: 'doc:1', ...body }, 5);

  test('delta "fossil" is read; null and "" are none', () => {
    const bodyOf = (body: object) => (ok(subscribe(body)) as Extract<Command, { method: 'subscribe' }>).body;
    assert.equal(bodyOf({ delta: 'fossil' }).delta, 'fossil');
    for (const none of [null, '']) assert.equal('delta' in bodyOf({ delta: none }), false);
  });

  test('an unknown or non-string delta type is a bad request (the connection closes, as in Centrifugo)', () => {
    badRequest(subscribe({ delta: 'xdelta' }), /subscribe: unknown delta type xdelta/);
    badRequest(subscribe({ delta: 1 }), /subscribe: delta must be a string/);
  });

  test('delta with a tags filter refuses the subscribe with 107, keeping the id', () => {
    const r = parseLine(subscribe({ delta: 'fossil', tf: { key: 'k', cmp: 'ex' } }));
    const refused = r as Extract<ParsedLine, { kind: 'refused' }>;
    assert.equal(refused.kind, 'refused', JSON.stringify(r));
    assert.equal(refused.id, 5);
    assert.equal(refused.error.code, 107);
    assert.equal(refused.error.message, 'delta and tags filter cannot be combined');
  });
});
