/**
 * Keys that rotate without downtime, on real gateway processes: several API
 * keys (HTTP and gRPC) and HMAC token secrets at once, key files re-read
 * without a restart, what the gateway signs signed with the first secret, and
 * rotations under traffic (clients connecting, API calls in a loop) in which
 * nothing is refused.
 */

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import type { Centrifuge, DisconnectedContext } from 'centrifuge';
import { jwtVerify } from 'jose';
import type { KeyKind } from '../src/keys.js';
import { apiClient } from './grpc-client.js';
import { api, client, type Gateway, metric, startGateway, token, waitUntil } from './harness.js';
import { SecretMount, writeAtomically } from './key-files.js';

const TOKEN_CLI = fileURLToPath(new URL('../src/cli/token.js', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'switchboard-rotation-'));
const gateways: Gateway[] = [];
after(async () => {
  for (const gateway of gateways) await gateway.stop();
  rmSync(scratch, { recursive: true, force: true });
});

async function gatewayWith(env: Record<string, string>): Promise<Gateway> {
  const gateway = await startGateway(env);
  gateways.push(gateway);
  return gateway;
}

const status = async (gateway: Gateway, key: string) => (await api(gateway, 'info', {}, key)).status;

/** What a connect attempt came to: connected, or the disconnect code. */
function outcome(c: Centrifuge, timeoutMs = 5000): Promise<'connected' | number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no connect outcome')), timeoutMs);
    c.once('connected', () => {
      clearTimeout(timer);
      resolve('connected');
    });
    c.once('disconnected', (ctx: DisconnectedContext) => {
      clearTimeout(timer);
      resolve(ctx.code);
    });
  });
}

let users = 0;
/** Connects once with a token signed with `secret`, then disconnects. */
async function connectOnce(gateway: Gateway, secret: string): Promise<'connected' | number> {
  const c = client(gateway, { token: await token({ sub: `user-${++users}` }, { secret }) });
  const result = outcome(c);
  c.connect();
  try {
    return await result;
  } finally {
    c.disconnect();
  }
}

/**
 * `workers` loops calling `attempt(key)` with whichever key is current, until
 * stopped; counts attempts and failures per key, and those still running per key.
 */
class Traffic {
  current: string;
  readonly done = new Map<string, number>();
  readonly running = new Map<string, number>();
  readonly failures: string[] = [];
  private stopped = false;
  private readonly loops: Promise<void>[];

  constructor(
    first: string,
    workers: number,
    private readonly attempt: (key: string) => Promise<true | string>,
  ) {
    this.current = first;
    this.loops = Array.from({ length: workers }, () => this.loop());
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      const key = this.current;
      this.running.set(key, (this.running.get(key) ?? 0) + 1);
      const result = await this.attempt(key);
      this.running.set(key, this.running.get(key)! - 1);
      this.done.set(key, (this.done.get(key) ?? 0) + 1);
      if (result !== true) this.failures.push(`${key}: ${result}`);
    }
  }

  /** Waits until `count` more attempts with the current key have finished and none with another is running. */
  async settle(count: number): Promise<void> {
    const key = this.current;
    const target = (this.done.get(key) ?? 0) + count;
    await waitUntil(
      () => {
        if (this.failures.length > 0) throw new Error(`refused: ${this.failures.join('; ')}`);
        return (
          (this.done.get(key) ?? 0) >= target && [...this.running].every(([k, n]) => k === key || n === 0)
        );
      },
      15_000,
      () => `${count} attempts with the current key (done: ${JSON.stringify([...this.done])})`,
    );
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }
}

const [OLD, NEW] = ['old-key', 'new-key'];

/**
 * README's rotation procedure ("Security: rotating keys") while 8 callers run
 * `attempt` with the key of the moment throughout: the new key written first
 * beside the old one; the callers moved to it once the gateway has both; the
 * old one removed once no one uses it any more. Fails at the first refusal.
 */
async function rotateUnderTraffic(
  gateway: Gateway,
  kind: KeyKind,
  write: (keys: string) => void,
  attempt: (key: string) => Promise<true | string>,
): Promise<void> {
  const inUse = () => metric(gateway, 'switchboard_keys', [`kind="${kind}"`]);
  const olderUses = () => metric(gateway, 'switchboard_older_key_uses_total', [`kind="${kind}"`]);
  const traffic = new Traffic(OLD, 8, attempt);
  try {
    await traffic.settle(50);
    write(`${NEW}\n${OLD}\n`);
    await waitUntil(
      async () => (await inUse()) === 2,
      5000,
      () => 'two keys',
    );
    await traffic.settle(10);
    traffic.current = NEW;
    await traffic.settle(50);
    const used = await olderUses();
    assert.ok(used > 0, 'the old key was used beside the new one');
    await traffic.settle(20);
    assert.equal(await olderUses(), used, 'the old key is no longer used');
    write(`${NEW}\n`);
    await waitUntil(
      async () => (await inUse()) === 1,
      5000,
      () => 'one key',
    );
    await traffic.settle(50);
  } finally {
    await traffic.stop();
  }
  assert.deepEqual(traffic.failures, []);
  assert.ok(traffic.done.get(OLD)! >= 60 && traffic.done.get(NEW)! >= 120, JSON.stringify([...traffic.done]));
}

describe('server API keys', () => {
  test('two keys in SWITCHBOARD_API_KEY are both accepted over HTTP and gRPC, a third refused, refusals counted by reason', async () => {
    const gateway = await gatewayWith({ SWITCHBOARD_API_KEY: 'first-api-key,second-api-key' });
    assert.equal(await status(gateway, 'first-api-key'), 200);
    assert.equal(await status(gateway, 'second-api-key'), 200);
    assert.equal(await status(gateway, 'third-api-key'), 401);
    assert.equal(await status(gateway, ''), 401);
    const byAuthorization = await fetch(`${gateway.internalUrl}/api/info`, {
      method: 'POST',
      headers: { authorization: 'apikey second-api-key' },
      body: '{}',
    });
    assert.equal(byAuthorization.status, 200);

    const grpcApi = apiClient(gateway.grpcPort);
    try {
      for (const key of ['first-api-key', 'second-api-key'])
        assert.equal((await grpcApi.call('Info', {}, { 'x-api-key': key })).error, null);
      await assert.rejects(
        grpcApi.call('Info', {}, { authorization: 'apikey third-api-key' }),
        (err: grpc.ServiceError) => /invalid API key/.test(err.details),
      );
    } finally {
      grpcApi.close();
    }

    const refused = (labels: string[]) => metric(gateway, 'switchboard_api_refused_total', labels);
    assert.equal(await refused(['protocol="http"', 'reason="wrong_key"']), 1);
    assert.equal(await refused(['protocol="http"', 'reason="missing_key"']), 1);
    assert.equal(await refused(['protocol="grpc"', 'reason="wrong_key"']), 1);
    assert.equal(await refused(['reason="no_key_configured"']), 0);
    assert.equal(await metric(gateway, 'switchboard_keys', ['kind="api_key"']), 2);
  });

  test('without any key every call is refused as no_key_configured', async () => {
    const gateway = await gatewayWith({ SWITCHBOARD_API_KEY: '' });
    assert.equal(await status(gateway, 'any-key'), 401);
    assert.equal(await metric(gateway, 'switchboard_api_refused_total', ['reason="no_key_configured"']), 1);
    assert.match(gateway.output(), /no server API key configured/);
  });

  test('a key file: a key added is accepted and the old one removed refused without a restart; emptied, the last keys stay', async () => {
    const file = join(scratch, 'api-keys');
    writeFileSync(file, '# server API keys\nold-api-key\n');
    const gateway = await gatewayWith({ SWITCHBOARD_API_KEY: '', SWITCHBOARD_API_KEY_FILE: file });
    assert.equal(await status(gateway, 'old-api-key'), 200);
    assert.equal(await status(gateway, 'new-api-key'), 401);

    writeFileSync(file, 'new-api-key\nold-api-key\n');
    await waitUntil(
      async () => (await status(gateway, 'new-api-key')) === 200,
      5000,
      () => 'the new key',
    );
    assert.equal(await status(gateway, 'old-api-key'), 200);

    writeFileSync(file, 'new-api-key\n');
    await waitUntil(
      async () => (await status(gateway, 'old-api-key')) === 401,
      5000,
      () => 'the old key refused',
    );

    writeFileSync(file, '');
    await waitUntil(
      () => /holds no key, keeping the 1 key\(s\) in use/.test(gateway.output()),
      5000,
      () => 'the error',
    );
    assert.equal(await status(gateway, 'new-api-key'), 200);
    assert.equal(
      await metric(gateway, 'switchboard_key_reloads_total', ['kind="api_key"', 'outcome="error"']),
      1,
    );
    assert.equal(gateway.process.exitCode, null, 'no restart');
    for (const key of ['old-api-key', 'new-api-key']) assert.ok(!gateway.output().includes(key), key);
  });

  test('rotation under traffic: API calls in a loop while the key rotates, none refused', async () => {
    const file = join(scratch, 'api-keys-rotating');
    writeFileSync(file, `${OLD}\n`);
    const gateway = await gatewayWith({ SWITCHBOARD_API_KEY: '', SWITCHBOARD_API_KEY_FILE: file });
    await rotateUnderTraffic(
      gateway,
      'api_key',
      (keys) => writeAtomically(file, keys),
      async (key) => (await status(gateway, key)) === 200 || 'refused',
    );
    assert.equal(await metric(gateway, 'switchboard_api_refused_total'), 0);
    assert.equal(await status(gateway, OLD), 401);
  });
});

describe('HMAC token secrets', () => {
  test('tokens signed with either secret connect, others are refused; the demo and the token CLI sign with the first', async () => {
    const gateway = await gatewayWith({
      SWITCHBOARD_TOKEN_HMAC_SECRET_KEY: 'first-secret,second-secret',
      SWITCHBOARD_DEMO: 'true',
    });
    assert.equal(await connectOnce(gateway, 'first-secret'), 'connected');
    assert.equal(await connectOnce(gateway, 'second-secret'), 'connected');
    assert.equal(await connectOnce(gateway, 'third-secret'), 3500);
    assert.equal(await metric(gateway, 'switchboard_keys', ['kind="token_hmac"']), 2);

    const signedWith = async (jwt: string, secret: string) =>
      jwtVerify(jwt, new TextEncoder().encode(secret)).then(
        () => true,
        () => false,
      );
    const demo = async (body: object) => {
      const res = await fetch(`http://127.0.0.1:${gateway.clientPort}/demo/token`, {
        method: 'POST',
        body: JSON.stringify(body),
      });
      assert.equal(res.status, 200);
      return ((await res.json()) as { token: string }).token;
    };
    const minted = await demo({ name: 'Ada' });
    assert.ok(await signedWith(minted, 'first-secret'));
    assert.ok(!(await signedWith(minted, 'second-secret')));
    // A demo token from before a rotation (signed with the second secret), just expired, is renewed with the first.
    const older = await token(
      { sub: 'demo-1', info: { name: 'Ada' }, meta: { demo: true } },
      { secret: 'second-secret', expiresIn: -60 },
    );
    assert.ok(await signedWith(await demo({ refresh: older }), 'first-secret'));

    const cli = (env: Record<string, string>) =>
      execFileSync(process.execPath, [TOKEN_CLI, '--user', '42'], {
        env: { PATH: process.env.PATH ?? '', ...env },
        encoding: 'utf8',
      }).trim();
    assert.ok(
      await signedWith(
        cli({ SWITCHBOARD_TOKEN_HMAC_SECRET_KEY: 'first-secret,second-secret' }),
        'first-secret',
      ),
    );
    // A secret with a comma in it comes from the file, one a line.
    const file = join(scratch, 'hmac-secrets');
    writeFileSync(file, 'a secret, with a comma\nsecond-secret\n');
    assert.ok(
      await signedWith(cli({ SWITCHBOARD_TOKEN_HMAC_SECRET_KEY_FILE: file }), 'a secret, with a comma'),
    );
    const fromFile = await gatewayWith({
      SWITCHBOARD_TOKEN_HMAC_SECRET_KEY: '',
      SWITCHBOARD_TOKEN_HMAC_SECRET_KEY_FILE: file,
    });
    assert.equal(await connectOnce(fromFile, 'a secret, with a comma'), 'connected');
    assert.equal(await connectOnce(fromFile, 'second-secret'), 'connected');
    assert.equal(await connectOnce(fromFile, 'a secret'), 3500);
  });

  test('rotation under traffic: clients connect continuously while the secret file rotates; none refused', async (t) => {
    const mount = new SecretMount(join(scratch, 'secret-mount'), { 'token-hmac-secret-key': `${OLD}\n` });
    const gateway = await gatewayWith({
      SWITCHBOARD_TOKEN_HMAC_SECRET_KEY: '',
      SWITCHBOARD_TOKEN_HMAC_SECRET_KEY_FILE: mount.path('token-hmac-secret-key'),
    });
    // Connected before the rotation: it stays connected through it.
    const longLived = client(gateway, { token: await token({ sub: 'long-lived' }, { secret: OLD }) });
    t.after(() => longLived.disconnect());
    const connected = outcome(longLived);
    longLived.connect();
    assert.equal(await connected, 'connected');
    let disconnects = 0;
    longLived.on('disconnected', () => disconnects++);

    await rotateUnderTraffic(
      gateway,
      'token_hmac',
      (secrets) => mount.update({ 'token-hmac-secret-key': secrets }),
      async (secret) => {
        const result = await connectOnce(gateway, secret);
        return result === 'connected' || `refused with ${result}`;
      },
    );
    assert.equal(await metric(gateway, 'switchboard_connects_total', ['outcome="rejected"']), 0);
    assert.equal(longLived.state, 'connected');
    assert.equal(disconnects, 0);
    assert.equal(await connectOnce(gateway, OLD), 3500);
  });
});
