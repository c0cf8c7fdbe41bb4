import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type ChannelCheck, type ChannelName, parseChannel, userAllowed } from '../src/index.js';

const rules = { maxLength: 255 };

function accept(channel: string, r = rules): ChannelName {
  const res: ChannelCheck = parseChannel(channel, r);
  assert.equal(res.ok, true, `expected ${JSON.stringify(channel)} to be accepted: ${JSON.stringify(res)}`);
  return (res as { ok: true; value: ChannelName }).value;
}

function reject(channel: string, reason?: RegExp, r = rules): string {
  const res = parseChannel(channel, r);
  assert.equal(res.ok, false, `expected ${JSON.stringify(channel)} to be rejected`);
  const why = (res as { ok: false; reason: string }).reason;
  if (reason) assert.match(why, reason);
  return why;
}

describe('parseChannel: namespaces', () => {
  test('ns:name puts the channel in namespace ns', () => {
    assert.deepEqual(accept('chat:index'), { channel: 'chat:index', namespace: 'chat' });
  });

  test('no colon means the default namespace', () => {
    assert.deepEqual(accept('news'), { channel: 'news', namespace: '' });
  });

  test('only the first colon separates the namespace', () => {
    assert.equal(accept('chat:room:1').namespace, 'chat');
  });

  test('a leading colon means the default namespace', () => {
    assert.equal(accept(':x').namespace, '');
  });

  test('a colon after # is part of the user list, not a namespace', () => {
    const v = accept('room#user:1');
    assert.equal(v.namespace, '');
    assert.deepEqual(v.users, ['user:1']);
  });

  test('a colon before # still names the namespace', () => {
    const v = accept('personal:room#42');
    assert.equal(v.namespace, 'personal');
    assert.deepEqual(v.users, ['42']);
  });
});

describe('parseChannel: user-limited channels', () => {
  test('#42 is user 42’s personal channel', () => {
    assert.deepEqual(accept('#42'), { channel: '#42', namespace: '', users: ['42'] });
  });

  test('room#1,2 is limited to users 1 and 2', () => {
    assert.deepEqual(accept('room#1,2'), { channel: 'room#1,2', namespace: '', users: ['1', '2'] });
  });

  test('a channel without # has no user limit', () => {
    assert.equal(accept('room').users, undefined);
  });

  test('empty user ids are rejected', () => {
    for (const ch of ['#', 'room#', 'room#1,', 'room#,1', 'room#1,,2', 'ns:room#']) {
      reject(ch, /empty user id/);
    }
  });
});

describe('userAllowed', () => {
  test('any user, including anonymous, may use an unlimited channel', () => {
    const name = accept('chat:index');
    assert.equal(userAllowed(name, '42'), true);
    assert.equal(userAllowed(name, ''), true);
  });

  test('only listed users may use a user-limited channel', () => {
    const name = accept('room#1,2');
    assert.equal(userAllowed(name, '1'), true);
    assert.equal(userAllowed(name, '2'), true);
    assert.equal(userAllowed(name, '3'), false);
    assert.equal(userAllowed(name, '12'), false);
    assert.equal(userAllowed(name, '1,2'), false);
  });

  test('the anonymous user is never allowed in a user-limited channel', () => {
    assert.equal(userAllowed(accept('#42'), ''), false);
    assert.equal(userAllowed({ channel: 'x#', namespace: '', users: [''] }, ''), false);
  });

  test('personal channel', () => {
    const name = accept('#42');
    assert.equal(userAllowed(name, '42'), true);
    assert.equal(userAllowed(name, '4'), false);
  });
});

describe('parseChannel: length', () => {
  test('empty name is rejected', () => {
    reject('', /empty/);
  });

  test('exactly maxLength is accepted, one more is rejected', () => {
    accept('a'.repeat(255));
    reject('a'.repeat(256), /longer than 255/);
  });

  test('custom maxLength', () => {
    const r = { maxLength: 5 };
    accept('abcde', r);
    reject('abcdef', /longer than 5/, r);
  });
});

describe('parseChannel: character set', () => {
  test('every allowed punctuation character is accepted (`;` as Pusher channel names have it)', () => {
    accept('A-Za_z09:x#1,2');
    accept('a.b/c@d=e!f~g+h;i');
  });

  const hostile: [string, string][] = [
    ['space', 'chat room'],
    ['leading space', ' chat'],
    ['tab', 'chat\tx'],
    ['newline', 'chat\nx'],
    ['carriage return', 'chat\rx'],
    ['NUL', 'chat\u0000x'],
    ['star wildcard', 'chat.*'],
    ['full wildcard', 'chat.>'],
    ['dollar (JetStream API-like)', '$JS.API.STREAM.LIST'],
    ['dollar inside', 'a$b'],
    ['non-ASCII letter', 'chät'],
    ['emoji', 'chat🙂'],
    ['zero-width space', 'chat\u200bx'],
    ['percent', 'a%20b'],
    ['quote', 'a"b'],
    ['backslash', 'a\\b'],
    ['question mark', 'a?b'],
    ['ampersand', 'a&b'],
    ['brackets', 'a[0]'],
    ['braces', '{a}'],
    ['pipe', 'a|b'],
  ];
  for (const [what, ch] of hostile) {
    test(`rejects ${what}`, () => {
      reject(ch, /characters outside/);
    });
  }

  test('the length check counts UTF-16 units but non-ASCII is rejected anyway', () => {
    reject('é'.repeat(10), /characters outside/);
  });
});
