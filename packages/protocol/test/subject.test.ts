import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decodeToken, encodeToken, Subjects } from '../src/index.js';

describe('subject tokens', () => {
  test('plain names stay readable; everything else is escaped', () => {
    assert.equal(encodeToken('chat'), 'chat');
    assert.equal(encodeToken('chat:room-1'), 'chat_3Aroom-1');
    assert.equal(encodeToken('a.b'), 'a_2Eb');
    assert.equal(encodeToken(''), '_');
    assert.equal(encodeToken('_'), '_5F');
  });

  test('hostile names never yield separators, wildcards or whitespace', () => {
    for (const name of [
      'a.*',
      'a.>',
      '>',
      '*',
      'x y',
      'tab\there',
      'new\nline',
      'ünï',
      '$JS.API.>',
      '_5F',
      '..',
    ]) {
      const token = encodeToken(name);
      assert.match(token, /^[A-Za-z0-9_-]+$/, name);
      assert.equal(decodeToken(token), name);
    }
  });

  test('the encoding is injective', () => {
    const names = ['a_5Fb', 'a_b', 'a b', 'a.b', 'a:b', 'a#b', '', '_', '__', 'A', 'a'];
    const tokens = new Set(names.map(encodeToken));
    assert.equal(tokens.size, names.length);
  });

  test('tokens it could not have produced are refused', () => {
    assert.throws(() => decodeToken('a.b'));
    assert.throws(() => decodeToken('_zz'));
    assert.throws(() => decodeToken('a_2'));
  });
});

describe('the NATS map', () => {
  const s = new Subjects('sb');

  test('channel subjects keep namespace and channel in their own tokens', () => {
    assert.equal(s.live('chat', 'chat:room'), 'sb.live.chat.chat_3Aroom');
    assert.equal(s.live('', '#42'), 'sb.live._._2342');
    assert.equal(s.history('chat', 'chat:a.*'), 'sb.hist.chat.chat_3Aa_2E_2A');
    assert.equal(s.historyWildcard('chat'), 'sb.hist.chat.*');
    assert.equal(s.historyStream('chat'), 'SB_HIST_chat');
    assert.equal(s.service('store', 'rpc'), 'sb.svc.store.rpc');
    assert.equal(s.bucket('presence'), 'sb_presence');
    assert.equal(s.serviceApi('room', 'publish'), 'sb.svcapi.room.publish');
    assert.equal(s.serviceBucket('store'), 'sb_store');
    assert.throws(() => s.serviceBucket('presence'), /share a KV bucket/);
  });

  test('leader advisories: one whole-token wildcard for the stream name (a token such as SB_HIST_* is literal)', () => {
    assert.equal(s.leaderElected, '$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.*');
  });

  test('a prefix that could break subjects is refused', () => {
    assert.throws(() => new Subjects('a.b'));
    assert.throws(() => new Subjects('*'));
    assert.throws(() => new Subjects(''));
  });
});
