import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseEmulationRequest, Subjects } from '../src/index.js';

describe('emulation requests', () => {
  test('the centrifuge client body parses', () => {
    const body = JSON.stringify({
      session: 's1',
      node: 'gw-1',
      data: '{"subscribe":{"channel":"c"},"id":2}',
    });
    assert.deepEqual(parseEmulationRequest(body), {
      session: 's1',
      node: 'gw-1',
      data: '{"subscribe":{"channel":"c"},"id":2}',
    });
  });

  test('bad bodies are refused with a reason', () => {
    const cases: [string, RegExp][] = [
      ['{', /malformed/],
      ['[]', /object/],
      ['null', /object/],
      ['{"node":"n","data":""}', /session/],
      ['{"session":"","node":"n","data":""}', /session/],
      ['{"session":"s","data":""}', /node/],
      [JSON.stringify({ session: 's', node: 'n'.repeat(300), data: '' }), /node/],
      ['{"session":"s","node":"n","data":{}}', /data/],
    ];
    for (const [body, reason] of cases) {
      const parsed = parseEmulationRequest(body);
      assert.equal(typeof parsed, 'string', body);
      assert.match(parsed as string, reason, body);
    }
  });

  test('a hostile node name stays inside its own subject', () => {
    const subject = new Subjects('sb').emulation('gw.*.>');
    assert.match(subject, /^sb\.emu\.[A-Za-z0-9_-]+$/);
  });
});
