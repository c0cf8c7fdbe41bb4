import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Centrifuge as ProtobufCentrifuge } from 'centrifuge/build/protobuf';
import {
  DEFAULT_PROTOBUF_LIMITS,
  decodeCommands,
  decodeEmulationRequest,
  encodeEmulationRequest,
  encodeReplies,
  encodeReply,
  jsonCommand,
  type ParsedLine,
  parseLine,
  type ProtobufFrameLimits,
  type ProtobufReply,
} from '../src/index.js';

/**
 * centrifuge-js keeps its Protobuf codec internal; a client holds it as the
 * protected `_codec` (encodeCommands, decodeReplies), the very code a browser
 * runs.
 */
interface ClientCodec {
  encodeCommands(commands: object[]): Uint8Array;
  decodeReplies(data: Uint8Array): object[];
}

class CodecClient extends ProtobufCentrifuge {
  codec(): ClientCodec {
    return this._codec as ClientCodec;
  }
}

const client = new CodecClient('ws://127.0.0.1:9/connection/websocket').codec();
const utf8 = new TextEncoder();
const bytes = (text: string): Uint8Array => utf8.encode(text);

/** The client's frame of these commands, decoded here. */
const viaClient = (...commands: object[]): ParsedLine[] => decodeCommands(client.encodeCommands(commands));

/**
 * A Reply as the client decoded it, as plain data: uint64s (Long) as numbers,
 * bytes as plain Uint8Arrays, and the empty arrays and maps its generated
 * classes give every message left out.
 */
function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return new Uint8Array(value);
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value !== 'object' || value === null) return value;
  const v = value as Record<string, unknown>;
  if (typeof v.toNumber === 'function' && 'unsigned' in v) return (v.toNumber as () => number).call(v);
  const out: Record<string, unknown> = {};
  for (const [k, child] of Object.entries(v)) {
    if (Array.isArray(child) && child.length === 0) continue;
    if (['tags', 'subs', 'presence'].includes(k) && Object.keys(child as object).length === 0) continue;
    out[k] = plain(child);
  }
  return out;
}

const viaClientReplies = (replies: ProtobufReply[]): unknown[] =>
  client.decodeReplies(encodeReplies(replies)).map(plain);

// ---- hand-made wire bytes, for what no client sends

function varint(v: number): number[] {
  const out: number[] = [];
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return out;
}
const LEN = 2;
const tag = (field: number, wire: number): number[] => varint(field * 8 + wire);
const uintField = (field: number, v: number): number[] => [...tag(field, 0), ...varint(v)];
const lenField = (field: number, content: ArrayLike<number>): number[] => [
  ...tag(field, LEN),
  ...varint(content.length),
  ...Array.from(content),
];
const strField = (field: number, s: string): number[] => lenField(field, bytes(s));
/** Commands, each with its length in front. */
const frame = (...commands: number[][]): Uint8Array =>
  Uint8Array.from(commands.flatMap((c) => [...varint(c.length), ...c]));

function badRequest(lines: ParsedLine[], detail: RegExp): void {
  const last = lines.at(-1);
  assert.ok(
    last && !last.ok && last.kind === 'bad_request',
    `expected bad_request, got ${JSON.stringify(last)}`,
  );
  assert.match(last.detail, detail);
}

describe('decodeCommands: what centrifuge-js encodes', () => {
  test('connect, with data, headers and recovery of server-side subscriptions', () => {
    const [line] = viaClient({
      id: 1,
      connect: {
        token: 'eyJ.x.y',
        data: bytes('{"hello":1}'),
        name: 'js',
        version: '1.0',
        headers: { 'x-a': 'b' },
        subs: { 'personal:42': { recover: true, offset: 17, epoch: 'xYz' }, other: {} },
      },
    });
    assert.deepEqual(line, {
      ok: true,
      command: {
        id: 1,
        method: 'connect',
        body: {
          token: 'eyJ.x.y',
          data: bytes('{"hello":1}'),
          name: 'js',
          version: '1.0',
          headers: { 'x-a': 'b' },
          subs: { 'personal:42': { recover: true, offset: 17, epoch: 'xYz' }, other: {} },
        },
      },
    });
  });

  test('subscribe with recover, offset, epoch and every option', () => {
    const body = {
      channel: 'chat:1',
      token: 't',
      data: bytes('[1,2]'),
      positioned: true,
      recoverable: true,
      join_leave: true,
      flag: 3,
      recover: true,
      offset: 2 ** 40 + 5,
      epoch: 'ab',
      delta: 'fossil',
    };
    assert.deepEqual(viaClient({ id: 7, subscribe: body }), [
      { ok: true, command: { id: 7, method: 'subscribe', body } },
    ]);
  });

  test('subscribe with a tags filter, and the map fields JSON ignores too', () => {
    const tf = {
      op: 'and',
      nodes: [
        { key: 'k', cmp: 'eq', val: 'v' },
        { key: 'n', cmp: 'in', vals: ['1', '2'] },
      ],
    };
    const [line] = viaClient({
      id: 2,
      subscribe: { channel: 'c', tf, type: 1, phase: 2, cursor: 'x', limit: 5 },
    });
    assert.deepEqual(line, { ok: true, command: { id: 2, method: 'subscribe', body: { channel: 'c', tf } } });
  });

  test('the other methods', () => {
    const data = bytes('{"text":"hi"}');
    const cases: [object, object][] = [
      [
        { id: 9, unsubscribe: { channel: 'chat:1' } },
        { id: 9, method: 'unsubscribe', body: { channel: 'chat:1' } },
      ],
      [
        { id: 10, publish: { channel: 'chat:1', data } },
        { id: 10, method: 'publish', body: { channel: 'chat:1', data } },
      ],
      [
        { id: 11, presence: { channel: 'c' } },
        { id: 11, method: 'presence', body: { channel: 'c' } },
      ],
      [
        { id: 12, presence_stats: { channel: 'c' } },
        { id: 12, method: 'presence_stats', body: { channel: 'c' } },
      ],
      [
        { id: 13, history: { channel: 'c', limit: 10, since: { offset: 5, epoch: 'ab12' }, reverse: true } },
        {
          id: 13,
          method: 'history',
          body: { channel: 'c', limit: 10, since: { offset: 5, epoch: 'ab12' }, reverse: true },
        },
      ],
      [
        { id: 14, history: { channel: 'c', since: {} } },
        { id: 14, method: 'history', body: { channel: 'c', since: { offset: 0, epoch: '' } } },
      ],
      [
        { id: 15, rpc: { method: 'getX', data } },
        { id: 15, method: 'rpc', body: { method: 'getX', data } },
      ],
      [{ send: { data } }, { id: 0, method: 'send', body: { data } }],
      [
        { id: 16, refresh: { token: 'new' } },
        { id: 16, method: 'refresh', body: { token: 'new' } },
      ],
      [
        { id: 17, sub_refresh: { channel: 'c', token: 'new' } },
        { id: 17, method: 'sub_refresh', body: { channel: 'c', token: 'new' } },
      ],
      [{}, { id: 0, method: 'pong' }],
    ];
    const lines = viaClient(...cases.map(([command]) => command));
    assert.deepEqual(
      lines,
      cases.map(([, command]) => ({ ok: true, command })),
    );
  });

  test('the same commands as parseLine gives for JSON, data as the bytes of its JSON text', () => {
    const commands: Record<string, unknown>[] = [
      {
        id: 1,
        connect: { token: 't', name: 'js', data: { a: [1] }, subs: { 'p:1': { recover: true, offset: 3 } } },
      },
      { id: 2, subscribe: { channel: 'news', flag: 1, recover: true, epoch: 'e', recoverable: true } },
      { id: 3, publish: { channel: 'news', data: { text: 'hi' } } },
      { id: 4, rpc: { method: 'm', data: 'x' } },
      { send: { data: 42 } },
      { id: 5, history: { channel: 'news', limit: 2, since: { offset: 1, epoch: 'e' } } },
      { id: 6, refresh: { token: 'r' } },
      { id: 7, sub_refresh: { channel: 'news', token: 's' } },
      { id: 8, presence: { channel: 'news' } },
      { id: 8, publish: { channel: 'news', data: 1 }, presence: { channel: 'news' } },
      { id: 0, publish: { channel: 'news', data: 1 } },
      { id: 9, subscribe: { channel: 'news', delta: 'zstd' } },
      { id: 10, subscribe: { channel: 'news', delta: 'fossil', tf: { key: 'k', cmp: 'eq', val: 'v' } } },
      { id: 11, subscribe: { channel: 'news', tf: { op: 'xor' } } },
    ];
    /** The JSON command's data as the bytes Protobuf carries instead. */
    const withBytes = (value: unknown): unknown => {
      if (typeof value !== 'object' || value === null) return value;
      return Object.fromEntries(
        Object.entries(value).map(([k, v]) => [k, k === 'data' ? bytes(JSON.stringify(v)) : withBytes(v)]),
      );
    };
    for (const command of commands) {
      const [got] = viaClient(withBytes(command) as object);
      assert.deepEqual(got, withBytes(parseLine(JSON.stringify(command))), JSON.stringify(command));
    }
  });

  test('several commands in a frame, in order; multi-byte lengths and UTF-8', () => {
    const big = new Uint8Array(20_000).map((_, i) => i % 251);
    const lines = viaClient(
      { id: 1, connect: { name: 'js' } },
      { id: 2, subscribe: { channel: 'чат:🙂' } },
      { id: 3, publish: { channel: 'чат:🙂', data: big } },
    );
    assert.deepEqual(
      lines.map((l) => l.ok && l.command.method),
      ['connect', 'subscribe', 'publish'],
    );
    assert.deepEqual(lines[2], {
      ok: true,
      command: { id: 3, method: 'publish', body: { channel: 'чат:🙂', data: big } },
    });
  });

  test('a frame that is a view into a larger buffer', () => {
    const f = client.encodeCommands([{ id: 1, presence: { channel: 'c' } }]);
    const inside = Buffer.concat([Buffer.from([0xff, 0xff, 0xff]), f, Buffer.from([0xff])]).subarray(
      3,
      3 + f.length,
    );
    assert.deepEqual(decodeCommands(inside), [
      { ok: true, command: { id: 1, method: 'presence', body: { channel: 'c' } } },
    ]);
  });

  test('data is a copy, not a view of the frame', () => {
    const f = client.encodeCommands([{ id: 1, publish: { channel: 'c', data: bytes('ab') } }]);
    const [line] = decodeCommands(f);
    const data = (line as Extract<ParsedLine, { ok: true }>).command as unknown as {
      body: { data: Uint8Array };
    };
    f.fill(0);
    assert.deepEqual(data.body.data, bytes('ab'));
    assert.equal(Object.getPrototypeOf(data.body.data), Uint8Array.prototype);
  });
});

describe('decodeCommands: refusals, as the JSON path gives them', () => {
  test('proto3 defaults: publish without data has empty data; a bare command id is an empty command', () => {
    assert.deepEqual(decodeCommands(frame([...uintField(1, 3), ...lenField(7, [])])), [
      { ok: true, command: { id: 3, method: 'publish', body: { channel: '', data: new Uint8Array(0) } } },
    ]);
    badRequest(decodeCommands(frame(uintField(1, 3))), /empty command/);
    assert.deepEqual(decodeCommands(new Uint8Array(0)), []);
  });

  test('unknown methods: ping and fields past the schema', () => {
    assert.deepEqual(decodeCommands(frame([...uintField(1, 4), ...lenField(11, [])])), [
      { ok: false, kind: 'unknown_method', id: 4, detail: 'ping' },
    ]);
    assert.deepEqual(decodeCommands(frame([...uintField(1, 4), ...lenField(40, [1, 2])])), [
      { ok: false, kind: 'unknown_method', id: 4, detail: 'field 40' },
    ]);
    badRequest(decodeCommands(frame(lenField(40, []))), /unknown method/);
  });

  test('unknown fields inside a body are skipped, whatever their wire type', () => {
    const body = [
      ...strField(1, 'c'),
      ...uintField(99, 5),
      ...tag(98, 1),
      ...[1, 2, 3, 4, 5, 6, 7, 8],
      ...tag(97, 5),
      ...[1, 2, 3, 4],
      ...lenField(96, [7, 7]),
      ...lenField(2, [1]),
    ];
    assert.deepEqual(decodeCommands(frame([...uintField(1, 1), ...lenField(7, body)])), [
      { ok: true, command: { id: 1, method: 'publish', body: { channel: 'c', data: Uint8Array.of(1) } } },
    ]);
  });

  test('wrong wire types, groups, bad keys', () => {
    badRequest(
      decodeCommands(frame([...uintField(1, 1), ...lenField(7, uintField(1, 5))])),
      /publish: channel has wire type 0/,
    );
    badRequest(decodeCommands(frame([...uintField(1, 1), ...uintField(7, 5)])), /publish has wire type 0/);
    badRequest(decodeCommands(frame([...lenField(1, [1])])), /id has wire type 2/);
    badRequest(
      decodeCommands(frame([...uintField(1, 1), ...lenField(7, [...tag(50, 3), ...tag(50, 4)])])),
      /wire type 3/,
    );
    badRequest(decodeCommands(frame([...tag(9, 7), 0])), /wire type 7/);
    badRequest(decodeCommands(frame([0x00, 0x01])), /invalid field key/);
  });

  test('values out of range', () => {
    const negative = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    badRequest(decodeCommands(frame(uintField(1, 2 ** 32))), /id must be a non-negative integer/);
    const sub = (content: number[]) =>
      frame([...uintField(1, 1), ...lenField(5, [...strField(1, 'c'), ...content])]);
    badRequest(
      decodeCommands(sub([...tag(14, 0), ...negative])),
      /subscribe: flag must be a non-negative integer/,
    );
    badRequest(
      decodeCommands(sub(uintField(7, 2 ** 53))),
      /subscribe: offset must be a non-negative integer/,
    );
    assert.equal(decodeCommands(sub(uintField(7, 2 ** 53 - 1)))[0]?.ok, true);
    const history = frame([...uintField(1, 1), ...lenField(10, [...tag(7, 0), ...negative])]);
    badRequest(decodeCommands(history), /history: limit must be a non-negative integer/);
    badRequest(
      decodeCommands(frame([...tag(1, 0), ...Array<number>(11).fill(0xff)])),
      /varint longer than 10 bytes/,
    );
  });

  test('strings must be UTF-8; a __proto__ key stays data', () => {
    const channel = lenField(1, [0x63, 0xff, 0xfe]);
    badRequest(
      decodeCommands(frame([...uintField(1, 1), ...lenField(6, channel)])),
      /unsubscribe: channel is not UTF-8/,
    );
    const header = lenField(6, [...strField(1, '__proto__'), ...strField(2, 'x')]);
    const [line] = decodeCommands(frame([...uintField(1, 1), ...lenField(4, header)]));
    const { body } = (line as Extract<ParsedLine, { ok: true }>).command as unknown as {
      body: { headers: Record<string, string> };
    };
    assert.deepEqual(Object.keys(body.headers), ['__proto__']);
    assert.equal(Object.getPrototypeOf(body.headers), Object.prototype);
  });

  test('framing: a truncated length, a length past the frame, an oversized command, too many commands', () => {
    badRequest(decodeCommands(Uint8Array.of(0x80)), /command length: truncated varint/);
    badRequest(decodeCommands(Uint8Array.of(0x05, 0x08)), /past the end of the frame/);
    const limits: ProtobufFrameLimits = { ...DEFAULT_PROTOBUF_LIMITS, maxCommandSize: 16 };
    const publish = client.encodeCommands([{ id: 1, publish: { channel: 'c', data: new Uint8Array(32) } }]);
    badRequest(decodeCommands(publish, limits), /command of \d+ bytes exceeds 16/);
    // A length claiming far more than there is allocates nothing.
    badRequest(decodeCommands(Uint8Array.of(...varint(2 ** 50), 0)), /exceeds 65536/);
    const pongs = decodeCommands(new Uint8Array(200), { ...DEFAULT_PROTOBUF_LIMITS, maxCommands: 128 });
    assert.equal(pongs.length, 129);
    badRequest(pongs, /more than 128 commands/);
    // A broken command amid others: the frame goes on, as a bad JSON line does.
    const lines = decodeCommands(frame([...uintField(1, 1), ...lenField(7, [0x0a, 0x09])], []));
    assert.equal(lines.length, 2);
    assert.equal(lines[1]?.ok, true);
  });

  test('a tags filter nested past maxDepth is skipped unread and refused', () => {
    let node: number[] = strField(2, 'k');
    for (let i = 0; i < 1_000; i++) node = lenField(6, node);
    const command = [...uintField(1, 3), ...lenField(5, [...strField(1, 'c'), ...lenField(13, node)])];
    const [line] = decodeCommands(frame(command), { ...DEFAULT_PROTOBUF_LIMITS, maxCommandSize: 1 << 20 });
    assert.deepEqual(line, {
      ok: false,
      kind: 'refused',
      id: 3,
      error: { code: 107, message: 'command nested deeper than 64' },
    });
  });
});

describe('encodeReplies: what centrifuge-js decodes', () => {
  const info = { user: 'u1', client: 'c1', conn_info: bytes('{"n":1}'), chan_info: bytes('"x"') };
  const pub = { data: bytes('{"text":"hi"}'), offset: 42, epoch: 'e1', info, tags: { k: 'v' } };

  test('results of every command', () => {
    const replies: ProtobufReply[] = [
      {
        id: 1,
        connect: {
          client: 'b7c0',
          version: '0.1.0',
          expires: true,
          ttl: 3600,
          ping: 25,
          pong: true,
          session: 's-1',
          node: 'n-1',
          data: bytes('{"welcome":1}'),
          subs: {
            'personal:42': { recoverable: true, epoch: 'e', offset: 3, recovered: true, publications: [pub] },
          },
        },
      },
      {
        id: 2,
        subscribe: {
          expires: true,
          ttl: 60,
          recoverable: true,
          positioned: true,
          epoch: 'ab12',
          offset: 2 ** 40 + 1,
          publications: [pub, { ...pub, offset: 43, delta: true }],
          recovered: true,
          was_recovering: true,
          data: bytes('{}'),
          delta: true,
        },
      },
      { id: 3, subscribe: {} },
      { id: 4, unsubscribe: {} },
      { id: 5, publish: {} },
      { id: 6, presence: { presence: { c1: info, c2: { user: 'u2', client: 'c2' } } } },
      { id: 7, presence_stats: { num_clients: 3, num_users: 2 } },
      { id: 8, history: { publications: [pub], offset: 42, epoch: 'e1' } },
      { id: 9, rpc: { data: bytes('{"r":1}') } },
      { id: 10, rpc: {} },
      { id: 11, refresh: { client: 'b7c0', version: '0.1.0', expires: true, ttl: 600 } },
      { id: 12, sub_refresh: { expires: true, ttl: 600 } },
      { id: 13, error: { code: 100, message: 'internal server error', temporary: true } },
      { id: 14, error: { code: 103, message: 'permission denied' } },
    ];
    assert.deepEqual(viaClientReplies(replies), replies);
  });

  test('pushes', () => {
    const connect = {
      client: 'c',
      version: '1',
      expires: true,
      ttl: 5,
      data: bytes('1'),
      subs: { s: { epoch: 'e' } },
    };
    const pushes: ProtobufReply[] = [
      { push: { channel: 'chat:1', pub } },
      { push: { channel: 'chat:1', join: { info } } },
      { push: { channel: 'chat:1', leave: { info: { user: 'u2', client: 'c2' } } } },
      { push: { channel: 'chat:1', unsubscribe: { code: 2500, reason: 'insufficient state' } } },
      {
        push: {
          channel: 'p:1',
          subscribe: { recoverable: true, epoch: 'e1', offset: 9, positioned: true, data: bytes('{}') },
        },
      },
      { push: { message: { data: bytes('{"m":1}') } } },
      { push: { disconnect: { code: 3001, reason: 'shutdown', reconnect: true } } },
      { push: { connect } },
    ];
    assert.deepEqual(viaClientReplies(pushes), pushes);
  });

  test('a ping is one zero byte; lengths past 127 and UTF-8 survive', () => {
    assert.deepEqual([...encodeReply({})], [0]);
    const big = new Uint8Array(70_000).map((_, i) => i % 253);
    const replies: ProtobufReply[] = [
      {},
      { push: { channel: 'чат:🙂', pub: { data: big, tags: { ключ: 'значение🙂' } } } },
      {
        id: 1,
        history: {
          publications: Array.from({ length: 50 }, (_, i) => ({ ...pub, offset: i + 1 })),
          offset: 50,
          epoch: 'e',
        },
      },
    ];
    assert.deepEqual(viaClientReplies(replies), replies);
    // The shared buffer grew for the big one: later frames are right too.
    assert.deepEqual(viaClientReplies([{ id: 2, publish: {} }]), [{ id: 2, publish: {} }]);
  });

  test('a JSON value where bytes go is written as its JSON text; a value JSON cannot hold is a TypeError', () => {
    const reply = {
      push: {
        channel: 'c',
        pub: { data: { a: [1, 'é'] }, info: { user: 'u', client: 'x', conn_info: 'hi' }, offset: 3 },
      },
    };
    assert.deepEqual(viaClientReplies([reply]), [
      {
        push: {
          channel: 'c',
          pub: {
            data: bytes('{"a":[1,"é"]}'),
            info: { user: 'u', client: 'x', conn_info: bytes('"hi"') },
            offset: 3,
          },
        },
      },
    ]);
    assert.throws(() => encodeReply({ push: { message: { data: 10n } } }), TypeError);
    assert.throws(() => encodeReply({ push: { message: { data: () => 1 } } }), TypeError);
    // The shared writer is fine after a throw.
    assert.deepEqual(viaClientReplies([{ id: 1, publish: {} }]), [{ id: 1, publish: {} }]);
  });
});

describe('jsonCommand: a Protobuf command with its data bytes as JSON', () => {
  const json = (...commands: object[]) => viaClient(...commands).map((line) => jsonCommand(line, 4));

  test('publish, rpc, send and connect data become the JSON values they hold', () => {
    const lines = json(
      { id: 1, publish: { channel: 'c', data: bytes('{"n":1}') } },
      { id: 2, rpc: { method: 'm', data: bytes('[1,2]') } },
      { send: { data: bytes('"x"') } },
      { id: 3, connect: { token: 't', data: bytes('{"a":null}') } },
      { id: 4, rpc: { method: 'empty' } },
    );
    assert.deepEqual(
      lines.map((l) => (l.ok ? l.command : l)),
      [
        { id: 1, method: 'publish', body: { channel: 'c', data: { n: 1 } } },
        { id: 2, method: 'rpc', body: { method: 'm', data: [1, 2] } },
        { id: 0, method: 'send', body: { data: 'x' } },
        { id: 3, method: 'connect', body: { token: 't', data: { a: null } } },
        { id: 4, method: 'rpc', body: { method: 'empty' } },
      ],
    );
  });

  test('bytes that are not JSON, not UTF-8, too deep, or missing where required refuse that command only', () => {
    const lines = json(
      { id: 1, publish: { channel: 'c', data: bytes('not json') } },
      { id: 2, publish: { channel: 'c', data: new Uint8Array([0x22, 0xff, 0x22]) } },
      { id: 3, rpc: { data: bytes('[[[[[1]]]]]') } },
      { id: 4, publish: { channel: 'c' } },
      { id: 5, publish: { channel: 'c', data: bytes('1') } },
    );
    assert.deepEqual(
      lines.map((l) =>
        l.ok ? l.command.id : l.kind === 'refused' ? [l.id, l.error.code, l.error.message] : l,
      ),
      [
        [1, 107, 'data is not JSON: malformed JSON'],
        [2, 107, 'data is not JSON: not UTF-8'],
        [3, 107, 'data is not JSON: JSON nested deeper than 4'],
        [4, 107, 'data is required'],
        5,
      ],
    );
  });
});

describe('decodeCommands: seeded fuzz of mutated frames', () => {
  const seed = Number(process.env.FUZZ_SEED ?? 20261202);
  let state = seed >>> 0;
  /** mulberry32: a small seeded generator, so a failure can be replayed. */
  const random = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const int = (n: number): number => Math.floor(random() * n);

  const seeds = [
    client.encodeCommands([
      {
        id: 1,
        connect: {
          token: 't',
          name: 'js',
          subs: { 'p:1': { recover: true, offset: 3, epoch: 'e' } },
          headers: { a: 'b' },
        },
      },
      {
        id: 2,
        subscribe: {
          channel: 'news',
          flag: 3,
          recover: true,
          offset: 7,
          epoch: 'e',
          tf: { op: 'or', nodes: [{ key: 'k', cmp: 'in', vals: ['a'] }] },
        },
      },
    ]),
    client.encodeCommands([
      { id: 3, publish: { channel: 'news', data: bytes('{"text":"hi"}') } },
      { id: 4, history: { channel: 'news', limit: 10, since: { offset: 5, epoch: 'e' }, reverse: true } },
      { id: 5, rpc: { method: 'm', data: bytes('1') } },
      { send: { data: bytes('2') } },
      {},
    ]),
    client.encodeCommands([
      { id: 6, presence: { channel: 'c' } },
      { id: 7, presence_stats: { channel: 'c' } },
      { id: 8, refresh: { token: 'r' } },
      { id: 9, sub_refresh: { channel: 'c', token: 's' } },
      { id: 10, unsubscribe: { channel: 'c' } },
    ]),
  ];

  function mutate(source: Uint8Array): Uint8Array {
    let f = Array.from(source);
    for (let n = 1 + int(4); n > 0; n--) {
      const at = int(f.length + 1);
      switch (int(6)) {
        case 0:
          f[at] = int(256);
          break;
        case 1:
          f = f.slice(0, at);
          break;
        case 2:
          f.splice(at, 0, ...Array.from({ length: 1 + int(12) }, () => int(256)));
          break;
        case 3:
          f.splice(at, 0, ...f.slice(int(f.length), int(f.length + 1)));
          break;
        case 4:
          f.splice(at, 1 + int(8));
          break;
        default:
          f[at] = [0x80, 0xff, 0x00, 0x7f, 0x0a, 0x12][int(6)]!;
      }
    }
    return Uint8Array.from(f);
  }

  const KINDS = new Set(['unknown_method', 'refused', 'bad_request']);

  test(`2,000 mutated frames (seed ${seed}): only parsed commands or our errors, bounded`, () => {
    const limits: ProtobufFrameLimits = { maxDepth: 8, maxCommandSize: 256, maxCommands: 16 };
    const seen = new Set<string>();
    for (let i = 0; i < 2_000; i++) {
      const f = mutate(seeds[i % seeds.length]!);
      let lines: ParsedLine[] = [];
      assert.doesNotThrow(
        () => (lines = decodeCommands(f, limits)),
        `frame ${Buffer.from(f).toString('hex')}`,
      );
      assert.ok(lines.length <= limits.maxCommands + 1);
      let payload = 0;
      for (const line of lines) {
        if (line.ok) {
          seen.add(line.command.method);
          const body = (line.command as { body?: { data?: unknown } }).body;
          if (body?.data instanceof Uint8Array) payload += body.data.length;
        } else {
          assert.ok(KINDS.has(line.kind), JSON.stringify(line));
          seen.add(line.kind);
        }
      }
      assert.ok(payload <= f.length, 'no more bytes come out than went in');
    }
    // The mutations reach both sides: commands still read, and every kind of refusal.
    for (const kind of ['publish', 'subscribe', 'bad_request', 'unknown_method'])
      assert.ok(seen.has(kind), kind);
  });
});

describe('EmulationRequest: the body of a Protobuf client’s emulation POST', () => {
  const emulation = (req: object) =>
    (client as ClientCodec & { encodeEmulationRequest(r: object): Uint8Array }).encodeEmulationRequest(req);

  test('decodes what centrifuge-js encodes, and encodes what decodes back the same', () => {
    const data = new Uint8Array(
      client.encodeCommands([{ id: 2, publish: { channel: 'c', data: bytes('{"n":1}') } }]),
    );
    const decoded = decodeEmulationRequest(emulation({ node: 'gw1', session: 's-1', data }));
    assert.deepEqual(decoded, { node: 'gw1', session: 's-1', data });
    assert.deepEqual(
      decodeEmulationRequest(encodeEmulationRequest({ node: 'gw1', session: 's-1', data })),
      decoded,
    );
  });

  test('missing ids, a truncated field or a wrong wire type are refused with a reason', () => {
    assert.equal(decodeEmulationRequest(emulation({ node: 'gw1' })), 'session must be a non-empty string');
    assert.equal(decodeEmulationRequest(emulation({ session: 's' })), 'node must be a non-empty string');
    assert.match(decodeEmulationRequest(new Uint8Array([0x0a, 0x7f, 0x01])) as string, /past the end/);
    assert.match(decodeEmulationRequest(new Uint8Array([0x08, 0x01])) as string, /wire type/);
  });
});
