import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { originAllowed } from '../src/transport/origin.js';

describe('originAllowed', () => {
  test('no Origin header (non-browser client) is always allowed', () => {
    assert.equal(originAllowed('', []), true);
    assert.equal(originAllowed('', ['https://example.com']), true);
  });

  test('an empty allow-list rejects every browser origin', () => {
    assert.equal(originAllowed('http://localhost:8000', []), false);
  });

  test('exact match', () => {
    const list = ['http://localhost:8000', 'https://app.example.com'];
    assert.equal(originAllowed('http://localhost:8000', list), true);
    assert.equal(originAllowed('https://app.example.com', list), true);
    assert.equal(originAllowed('http://localhost:8001', list), false);
    assert.equal(originAllowed('http://localhost', list), false);
    assert.equal(originAllowed('https://localhost:8000', list), false);
    assert.equal(originAllowed('http://app.example.com', list), false);
  });

  test('exact patterns do not match prefixes or suffixes', () => {
    const list = ['https://example.com'];
    assert.equal(originAllowed('https://example.com.evil.com', list), false);
    assert.equal(originAllowed('https://evilexample.com', list), false);
    assert.equal(originAllowed('https://a.example.com', list), false);
  });

  test('comparison is case-insensitive both ways', () => {
    assert.equal(originAllowed('HTTPS://App.Example.COM', ['https://app.example.com']), true);
    assert.equal(originAllowed('https://app.example.com', ['https://APP.example.com']), true);
    assert.equal(originAllowed('https://A.EXAMPLE.com', ['HTTPS://*.Example.Com']), true);
  });

  test('* allows any origin', () => {
    assert.equal(originAllowed('https://anything.test', ['*']), true);
    assert.equal(originAllowed('null', ['*']), true);
    assert.equal(originAllowed('http://x', ['https://other', '*']), true);
  });

  test('the literal "null" origin needs * or an explicit entry', () => {
    assert.equal(originAllowed('null', ['https://example.com']), false);
  });

  describe('subdomain wildcard', () => {
    const list = ['https://*.example.com'];

    test('matches subdomains', () => {
      assert.equal(originAllowed('https://a.example.com', list), true);
      assert.equal(originAllowed('https://a.b.example.com', list), true);
    });

    test('does not match the bare domain', () => {
      assert.equal(originAllowed('https://example.com', list), false);
    });

    test('does not match a look-alike suffix domain', () => {
      assert.equal(originAllowed('https://example.com.evil.com', list), false);
      assert.equal(originAllowed('https://a.example.com.evil.com', list), false);
      assert.equal(originAllowed('https://evilexample.com', list), false);
    });

    test('requires the pattern’s scheme', () => {
      assert.equal(originAllowed('http://a.example.com', list), false);
      assert.equal(originAllowed('wss://a.example.com', list), false);
    });

    test('http wildcard does not match https', () => {
      assert.equal(originAllowed('https://a.example.com', ['http://*.example.com']), false);
      assert.equal(originAllowed('http://a.example.com', ['http://*.example.com']), true);
    });

    test('a path trick does not match', () => {
      assert.equal(originAllowed('https://evil.com/.example.com', list), false);
      assert.equal(originAllowed('https://evil.com/a.example.com', list), false);
      assert.equal(originAllowed('https://evil.com//x.example.com', list), false);
    });

    test('a port is not part of the pattern', () => {
      assert.equal(originAllowed('https://a.example.com:8443', list), false);
    });

    test('a wildcard elsewhere than right after the scheme is not special', () => {
      assert.equal(originAllowed('https://a.example.com', ['https://a.*.com']), false);
      assert.equal(originAllowed('https://a.example.com', ['*.example.com']), false);
    });

    test('several patterns: any one may match', () => {
      const many = ['http://localhost:8000', 'https://*.example.com', 'https://*.example.org'];
      assert.equal(originAllowed('https://x.example.org', many), true);
      assert.equal(originAllowed('https://x.example.net', many), false);
    });
  });
});
