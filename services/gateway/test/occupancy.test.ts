/** The cluster-wide occupancy model: transitions from presence puts, deletes, expiry and a takeover. */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Occupancy, type Transition } from '../src/hooks/occupancy.js';

const TTL = 60_000;
const DEBOUNCE = 3_000;
const model = () => new Occupancy(TTL, DEBOUNCE, (c) => c.startsWith('app:presence-'));
const info = (user: string, client: string) => ({ user, client });
const kinds = (ts: Transition[]) => ts.map((t) => `${t.kind} ${t.channel}${'user' in t ? ` ${t.user}` : ''}`);

describe('Occupancy', () => {
  test('the first connection occupies a channel and adds its user; a second tab adds nothing', () => {
    const m = model();
    assert.deepEqual(kinds(m.put('app:presence-a', info('u1', 'c1'), 0)), [
      'channel_occupied app:presence-a',
      'member_added app:presence-a u1',
    ]);
    assert.deepEqual(kinds(m.put('app:presence-a', info('u1', 'c2'), 10)), []);
    assert.deepEqual(kinds(m.put('app:presence-a', info('u2', 'c3'), 20)), [
      'member_added app:presence-a u2',
    ]);
  });

  test('members are announced only on presence channels', () => {
    const m = model();
    assert.deepEqual(kinds(m.put('app:room', info('u1', 'c1'), 0)), ['channel_occupied app:room']);
  });

  test('the last connection leaving removes the member and vacates after the debounce, not before', () => {
    const m = model();
    m.put('app:presence-a', info('u1', 'c1'), 0);
    m.put('app:presence-a', info('u1', 'c2'), 0);
    m.delete('app:presence-a', 'c1', 100);
    assert.deepEqual(kinds(m.tick(100 + DEBOUNCE)), [], 'one tab left: still a member');
    m.delete('app:presence-a', 'c2', 200);
    assert.deepEqual(kinds(m.tick(199 + DEBOUNCE)), []);
    assert.deepEqual(kinds(m.tick(200 + DEBOUNCE)), [
      'member_removed app:presence-a u1',
      'channel_vacated app:presence-a',
    ]);
    assert.deepEqual(kinds(m.tick(300 + DEBOUNCE)), [], 'announced once');
  });

  test('a reconnect within the debounce announces nothing', () => {
    const m = model();
    m.put('app:presence-a', info('u1', 'c1'), 0);
    m.delete('app:presence-a', 'c1', 100);
    assert.deepEqual(kinds(m.put('app:presence-a', info('u1', 'c9'), 1000)), []);
    assert.deepEqual(kinds(m.tick(100 + 2 * DEBOUNCE)), []);
  });

  test("a dead gateway's entries expire after the TTL without a delete", () => {
    const m = model();
    m.put('app:presence-a', info('u1', 'c1'), 0);
    m.put('app:presence-a', info('u2', 'c2'), 0);
    // u2's gateway keeps refreshing; u1's died.
    m.put('app:presence-a', info('u2', 'c2'), TTL - 1000);
    assert.deepEqual(kinds(m.tick(TTL)), []);
    assert.deepEqual(kinds(m.tick(TTL + 1)), [], 'gone, but the debounce runs first');
    assert.deepEqual(kinds(m.tick(TTL + 1 + DEBOUNCE)), ['member_removed app:presence-a u1']);
  });

  test('a decider taking over announces the difference: removals of what vanished, nothing for what stays', () => {
    const m = model();
    m.restore(
      {
        channels: ['app:presence-a', 'app:gone'],
        members: [
          ['app:presence-a', 'u1'],
          ['app:presence-a', 'u2'],
        ],
      },
      0,
    );
    // The snapshot: u1 is still there, u3 came while no decider ran.
    assert.deepEqual(kinds(m.put('app:presence-a', info('u1', 'c1'), 10)), []);
    assert.deepEqual(kinds(m.put('app:presence-a', info('u3', 'c3'), 10)), [
      'member_added app:presence-a u3',
    ]);
    assert.deepEqual(kinds(m.tick(DEBOUNCE)), [
      'member_removed app:presence-a u2',
      'channel_vacated app:gone',
    ]);
  });

  test('a user id with a newline cannot split a member key into another channel', () => {
    const m = model();
    m.put('app:presence-a', info('x\napp:presence-b', 'c1'), 0);
    m.delete('app:presence-a', 'c1', 1);
    const out = m.tick(1 + DEBOUNCE);
    assert.deepEqual(
      out.map((t) => t.channel),
      ['app:presence-a', 'app:presence-a'],
    );
  });
});
