/**
 * A Pusher Channels conformance suite (protocol 7 and the HTTP API), run only
 * through real clients: pusher-js (its Node build), laravel-echo over
 * pusher-js, the `pusher` server SDK for triggering, queries and signing, and
 * a raw `ws` socket for what no library sends. Not a test file itself:
 * `pusherConformance(() => target)` registers the tests, and a runner starts
 * the server under test (pusher-soketi.ts for the reference peer, Soketi).
 *
 * Assertions follow Pusher's documentation. Where a target deviates, it names
 * the check in `target.quirks` with its reason: that test still runs every
 * assertion but is reported as TODO for that target only, so the same suite
 * stays strict for every other server. Where the documentation leaves the
 * answer open (a malformed frame, an unknown event), the test is lenient and
 * records what the server answered as diagnostics.
 *
 * No sleeps: every wait is for an observable event with a timeout, and "nothing
 * arrives" is checked by sending a later marker on the same path and asserting
 * that the marker arrived without the forbidden event before it.
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { describe, test, type TestContext } from 'node:test';
import Echo from 'laravel-echo';
import PusherServer from 'pusher';
import type * as PusherJsModule from 'pusher-js';
import type { Channel, Options as PusherJsOptions, PresenceChannel } from 'pusher-js';
import { type Gateway, RawClient, waitUntil } from './harness.js';

/**
 * pusher-js's Node build is CommonJS whose `module.exports` is the class, while
 * its types declare an ES default export: required here so that both agree.
 */
type PusherJs = InstanceType<typeof PusherJsModule.default.default>;
export const PusherJsClass = createRequire(import.meta.url)(
  'pusher-js',
) as typeof PusherJsModule.default.default;

/** The checks a target may deviate on; each is one test below. */
export type PusherQuirk =
  | 'connect-frame'
  | 'unknown-app-key'
  | 'client-events-public-refused'
  | 'client-events-presence-user-id'
  | 'channels-info-user-count'
  | 'channels-info-user-count-needs-presence-prefix'
  | 'channel-info'
  | 'api-error-status'
  | 'signin'
  | 'send-to-user'
  | 'terminate-user-connections'
  | 'hostile-malformed'
  | 'hostile-unknown-event'
  | 'hostile-oversized';

export interface PusherTarget {
  /** Names the target in test output and TODO reasons ("Soketi"). */
  name: string;
  /** Where clients connect: ws://wsHost:wsPort/app/<key>. */
  wsHost: string;
  wsPort: number;
  /** Where the HTTP API is: http://httpHost:httpPort/apps/<appId>/... */
  httpHost: string;
  httpPort: number;
  appId: string;
  key: string;
  secret: string;
  /**
   * The app must allow client events (client-* on private and presence
   * channels) and user sign-in (pusher:signin); connections that do not sign in
   * must not be closed for it within a test's few seconds.
   *
   * Known deviations from Pusher's documentation: check → reason.
   */
  quirks?: ReadonlyMap<PusherQuirk, string>;
}

/** How long any single expected event may take. */
const TIMEOUT_MS = 5000;

/** One frame a client received, as pusher-js decoded it (data parsed where it is JSON). */
export interface Frame {
  event: string;
  channel?: string;
  data?: any;
  user_id?: string;
}

/** Calls `check` on every change until it returns a value; fails after the timeout. */
function until<T>(
  subscribe: (wake: () => void) => () => void,
  check: () => T | undefined,
  timeoutMs: number,
  describe: () => string,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const found = check();
    if (found !== undefined) return resolve(found);
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${describe()}`));
    }, timeoutMs);
    const unsubscribe = subscribe(() => {
      const value = check();
      if (value === undefined) return;
      clearTimeout(timer);
      unsubscribe();
      resolve(value);
    });
  });
}

/** `promise`, or a rejection after the timeout (its timer cleared either way). */
async function within<T>(promise: Promise<T>, what: string, timeoutMs = TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The first value `register` hands its callback, within the timeout. */
function firstCall<T = unknown>(
  what: string,
  register: (resolve: (value: T) => void) => unknown,
): Promise<T> {
  const call = within(
    new Promise<T>((resolve) => {
      register(resolve);
    }),
    what,
  );
  // A test that failed before awaiting it must not see its timeout later as an unhandled rejection.
  call.catch(() => undefined);
  return call;
}

/** Disconnects a pusher-js client unless the server or the test did already. */
function disconnect(pusher: PusherJs): void {
  if (pusher.connection.state !== 'disconnected' && pusher.connection.state !== 'failed') pusher.disconnect();
}

/** A pusher-js client and every frame it received, in order. */
export class Client {
  readonly frames: Frame[] = [];
  readonly states: string[] = [];
  /** The faye-websocket client under the connection (pusher-js internals). */
  private socket: { _closeTimer?: NodeJS.Timeout } | undefined;
  private readonly watchers = new Set<() => void>();

  constructor(
    readonly pusher: PusherJs,
    readonly label: string,
  ) {
    pusher.connection.bind('message', (frame: Frame) => {
      this.frames.push(frame);
      this.wake();
    });
    pusher.connection.bind('state_change', ({ current }: { current: string }) => {
      this.states.push(current);
      if (current === 'connected') this.socket = (pusher.connection as any).connection?.transport?.socket;
      this.wake();
    });
  }

  get socketId(): string {
    return this.pusher.connection.socket_id;
  }

  /** Resolves once the connection is in the state connected. */
  async connected(timeoutMs = TIMEOUT_MS): Promise<void> {
    await this.until(
      () => (this.pusher.connection.state === 'connected' ? true : undefined),
      'connected',
      timeoutMs,
    );
  }

  /** Resolves when `fn` first returns a value after any frame or state change. */
  until<T>(fn: () => T | undefined, what: string, timeoutMs = TIMEOUT_MS): Promise<T> {
    return until(
      (wake) => {
        this.watchers.add(wake);
        return () => this.watchers.delete(wake);
      },
      fn,
      timeoutMs,
      () => `${what} on ${this.label}; received ${JSON.stringify(this.frames).slice(0, 1500)}`,
    );
  }

  /** The first frame matching `match` (already received or still to come), with its index. */
  async frame(match: (f: Frame) => boolean, what: string, timeoutMs = TIMEOUT_MS): Promise<[Frame, number]> {
    return this.until(
      () => {
        const i = this.frames.findIndex(match);
        return i < 0 ? undefined : ([this.frames[i]!, i] as [Frame, number]);
      },
      what,
      timeoutMs,
    );
  }

  /** The first `event` on `channel`. */
  async next(channel: string, event: string, timeoutMs = TIMEOUT_MS): Promise<Frame> {
    const [f] = await this.frame(
      (f) => f.channel === channel && f.event === event,
      `${event} on ${channel}`,
      timeoutMs,
    );
    return f;
  }

  /** Waits for the marker, then asserts that no frame matching `forbidden` came before it. */
  async noneBefore(
    forbidden: (f: Frame) => boolean,
    marker: (f: Frame) => boolean,
    what: string,
  ): Promise<void> {
    const [, at] = await this.frame(marker, `the marker after ${what}`);
    const seen = this.frames.slice(0, at).filter(forbidden);
    assert.deepEqual(seen, [], `${this.label} received ${what}`);
  }

  /** Subscribes and waits for pusher_internal:subscription_succeeded; fails on a subscription error. */
  async subscribe<C extends Channel = Channel>(name: string): Promise<C> {
    const from = this.frames.length;
    const channel = this.pusher.subscribe(name) as C;
    let refused: unknown;
    channel.bind('pusher:subscription_error', (error: unknown) => {
      refused = error;
      this.wake();
    });
    const outcome = await this.until(() => {
      if (refused !== undefined) return { refused };
      const since = this.frames.slice(from);
      if (since.some((f) => f.channel === name && f.event === 'pusher_internal:subscription_succeeded'))
        return {};
      const error = since.find((f) => f.event === 'pusher:error');
      return error ? { refused: error } : undefined;
    }, `subscription to ${name}`);
    if ('refused' in outcome)
      throw new Error(`${this.label} could not subscribe to ${name}: ${JSON.stringify(outcome.refused)}`);
    return channel;
  }

  disconnect(): void {
    disconnect(this.pusher);
    // When the server closed the socket with a 4000-4099 code, pusher-js closed it once more from
    // its close handler, and faye-websocket then waits 30 s for a second close frame: not for us.
    this.socket?._closeTimer?.unref();
  }

  private wake(): void {
    for (const wake of [...this.watchers]) wake();
  }
}

/** Who a test client is: its presence member, the user it signs in as, the secret its channel auth is signed with. */
export interface As {
  presence?: { user_id: string; user_info?: Record<string, unknown> };
  signinAs?: string;
  authSecret?: string;
}

/** The `pusher` server SDK for `t`'s HTTP API, signing with `secret` (the app's by default). */
/** The pusher SDK signing as `app` against a gateway's internal port (Pusher's HTTP API). */
export function gatewaySdk(
  gateway: Pick<Gateway, 'host' | 'internalPort'>,
  app: { id: string; key: string; secret: string },
): PusherServer {
  return new PusherServer({
    appId: app.id,
    key: app.key,
    secret: app.secret,
    host: gateway.host,
    port: String(gateway.internalPort),
    useTLS: false,
  });
}

export function pusherSdk(
  t: PusherTarget,
  secret?: string,
  encryptionMasterKeyBase64?: string,
): PusherServer {
  return new PusherServer({
    appId: t.appId,
    key: t.key,
    secret: secret ?? t.secret,
    host: t.httpHost,
    port: String(t.httpPort),
    useTLS: false,
    ...(encryptionMasterKeyBase64 === undefined ? {} : { encryptionMasterKeyBase64 }),
  });
}

/** pusher-js options for `t`: ws only, no TLS, channel auth signed locally by the SDK. */
function channelOptionsOf(t: PusherTarget, { presence, authSecret }: As, masterKey?: string) {
  const signer = pusherSdk(t, authSecret, masterKey);
  return {
    cluster: 'mt1',
    wsHost: t.wsHost,
    wsPort: t.wsPort,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, callback) =>
        callback(
          null,
          signer.authorizeChannel(
            socketId,
            channelName,
            channelName.startsWith('presence-') ? presence : undefined,
          ),
        ),
    },
  } satisfies PusherJsOptions;
}

/** channelOptionsOf, and user sign-in (pusher:signin) as `signinAs` signed locally by the SDK. */
function clientOptionsOf(t: PusherTarget, as: As, masterKey?: string): PusherJsOptions {
  const sdk = pusherSdk(t, undefined, masterKey);
  const id = as.signinAs ?? 'nobody';
  return {
    ...channelOptionsOf(t, as, masterKey),
    userAuthentication: {
      customHandler: ({ socketId }, callback) =>
        callback(null, sdk.authenticateUser(socketId, { id, name: id })),
    },
  };
}

/** A pusher-js client of `t` as `as` (not waited for: see Client.connected). */
export function pusherClient(t: PusherTarget, label: string, as: As = {}, masterKey?: string): Client {
  return new Client(new PusherJsClass(t.key, clientOptionsOf(t, as, masterKey)), label);
}

/** The suite. `target` is called once the runner's `before` hook has started the server. */
export function pusherConformance(target: () => PusherTarget): void {
  /** One name space per run, so that channels of earlier runs or other tests never match. */
  const run = randomBytes(4).toString('hex');
  let counter = 0;
  const unique = (prefix: string) => `${prefix}conf-${run}-${++counter}`;
  /** End-to-end encryption needs no server support: the key stays with the SDK and the clients. */
  const masterKey = randomBytes(32).toString('base64');

  const server = (secret?: string) => pusherSdk(target(), secret, masterKey);

  /** Marks `t` as TODO when the target names `quirk`; every assertion still runs. */
  const quirk = (t: TestContext, name: PusherQuirk) => {
    const reason = target().quirks?.get(name);
    if (reason !== undefined) t.todo(`${target().name}: ${reason}`);
  };

  const wsUrl = (key = target().key) =>
    `ws://${target().wsHost}:${target().wsPort}/app/${key}?protocol=7&client=js&version=8.6.0&flash=false`;

  /** pusher-js options for `target`: ws only, no TLS, channel auth signed locally by the SDK. */
  const channelOptions = (as: As = {}) => channelOptionsOf(target(), as, masterKey);

  /** The clients of one test, all disconnected after it. */
  function clients(t: TestContext) {
    const opened: { disconnect(): void }[] = [];
    t.after(() => {
      for (const c of opened) c.disconnect();
    });
    return {
      async connect(label: string, as: As = {}): Promise<Client> {
        const client = pusherClient(target(), label, as, masterKey);
        opened.push(client);
        await client.connected();
        return client;
      },
      raw(key?: string): RawClient {
        const raw = new RawClient(wsUrl(key));
        opened.push({ disconnect: () => raw.ws.terminate() });
        return raw;
      },
      echo(presence?: As['presence']): Echo<'pusher'> {
        const echo = new Echo({
          broadcaster: 'pusher',
          key: target().key,
          // Echo's types see pusher-js through its ES default, the module: the class is what it calls.
          Pusher: PusherJsClass as unknown as typeof PusherJsModule.default,
          // Echo brings its own userAuthentication (its Laravel endpoint): these tests do not sign in through it.
          ...channelOptions({ presence }),
        });
        opened.push({ disconnect: () => disconnect(echo.connector.pusher) });
        return echo;
      },
    };
  }

  /** Triggers a marker event on `channel` through the HTTP API; returns a matcher for it. */
  async function marker(channel: string): Promise<(f: Frame) => boolean> {
    const id = randomBytes(4).toString('hex');
    await server().trigger(channel, 'marker', { id });
    return (f) => f.channel === channel && f.event === 'marker' && f.data?.id === id;
  }

  /** The JSON body of a signed GET through the SDK. */
  async function get(path: string, params: Record<string, string> = {}): Promise<any> {
    const res = await server().get({ path, params });
    assert.equal(res.status, 200, `GET ${path}`);
    return res.json();
  }

  /** The HTTP status and body of a signed API call through the SDK (which rejects with a RequestError on non-2xx). */
  async function answer(call: Promise<{ status: number; text(): Promise<string> }>): Promise<string> {
    try {
      const res = await call;
      return `${res.status} ${await res.text()}`;
    } catch (err) {
      const { status, body } = err as { status?: number; body?: string };
      if (typeof status !== 'number') throw err;
      return `${status} ${body ?? ''}`;
    }
  }

  /** Asserts the HTTP status of an answer from `answer`. */
  function assertStatus(t: TestContext, got: string, status: number, what: string): void {
    t.diagnostic(`${what}: ${got}`);
    assert.equal(Number(got.split(' ', 1)[0]), status, `${what}: ${got}`);
  }

  describe('pusher conformance: connection', () => {
    test('connect: pusher:connection_established gives a socket_id and the state is connected', async (t) => {
      const c = await clients(t).connect('client');
      assert.match(c.socketId, /^\d+\.\d+$/);
      assert.equal(c.pusher.connection.state, 'connected');
    });

    test('connect frame: data is a JSON string with socket_id and a numeric activity_timeout', async (t) => {
      quirk(t, 'connect-frame');
      const raw = clients(t).raw();
      const frame = await raw.expect((m) => m.event === 'pusher:connection_established');
      assert.equal(typeof frame.data, 'string', 'data is JSON-encoded in a string');
      const data = JSON.parse(frame.data);
      assert.match(data.socket_id, /^\d+\.\d+$/);
      assert.equal(typeof data.activity_timeout, 'number');
      t.diagnostic(`connection_established: ${frame.data}`);
    });

    test('an unknown app key gets pusher:error 4001 and the socket is closed with 4001', async (t) => {
      quirk(t, 'unknown-app-key');
      const raw = clients(t).raw(`no-such-key-${run}`);
      const error = await raw.expect((m) => m.event === 'pusher:error');
      assert.equal(error.data.code, 4001);
      const closed = await raw.closed();
      assert.equal(closed.code, 4001);
      t.diagnostic(`answer: ${JSON.stringify(error)}, close ${closed.code}`);
    });

    test('pusher:ping is answered with pusher:pong', async (t) => {
      const raw = clients(t).raw();
      await raw.expect((m) => m.event === 'pusher:connection_established');
      raw.send({ event: 'pusher:ping', data: {} });
      await raw.expect((m) => m.event === 'pusher:pong');
    });
  });

  describe('pusher conformance: public channels', () => {
    test('subscribe, then an API trigger delivers the event with its data object', async (t) => {
      const c = await clients(t).connect('client');
      const name = unique('');
      const channel = await c.subscribe(name);
      const data = { text: 'hello', n: 42, nested: { list: [1, 'two', null], ok: true } };
      const bound = firstCall('bind greeting', (resolve) => channel.bind('greeting', resolve));
      await server().trigger(name, 'greeting', data);
      assert.deepEqual(await bound, data);
      assert.deepEqual((await c.next(name, 'greeting')).data, data);
    });

    test('triggerBatch delivers every event of the batch, each on its channel', async (t) => {
      const c = await clients(t).connect('client');
      const [a, b] = [unique(''), unique('')];
      await c.subscribe(a);
      await c.subscribe(b);
      const res = await server().triggerBatch([
        { channel: a, name: 'one', data: { i: 1 } },
        { channel: b, name: 'two', data: { i: 2 } },
        { channel: a, name: 'three', data: { i: 3 } },
      ]);
      assert.equal(res.status, 200);
      assert.deepEqual((await c.next(a, 'one')).data, { i: 1 });
      assert.deepEqual((await c.next(b, 'two')).data, { i: 2 });
      assert.deepEqual((await c.next(a, 'three')).data, { i: 3 });
    });

    test('trigger with socket_id excludes that connection but not another', async (t) => {
      const open = clients(t);
      const [excluded, other] = [await open.connect('excluded'), await open.connect('other')];
      const name = unique('');
      await excluded.subscribe(name);
      await other.subscribe(name);
      await server().trigger(name, 'not-for-you', { x: 1 }, { socket_id: excluded.socketId });
      assert.deepEqual((await other.next(name, 'not-for-you')).data, { x: 1 });
      const mark = await marker(name);
      await excluded.noneBefore(
        (f) => f.event === 'not-for-you',
        mark,
        'an event triggered with its own socket_id',
      );
      await other.frame(mark, 'marker');
    });
    test('after pusher:unsubscribe no more events of that channel arrive', async (t) => {
      const c = await clients(t).connect('client');
      const [left, kept] = [unique(''), unique('')];
      await c.subscribe(left);
      await c.subscribe(kept);
      c.pusher.unsubscribe(left);
      // The unsubscribe went out before this subscribe, so the server has handled it once this succeeds.
      await c.subscribe(unique(''));
      await server().trigger(left, 'gone', {});
      await c.noneBefore((f) => f.event === 'gone', await marker(kept), 'an event of a channel it left');
    });
  });

  describe('pusher conformance: private channels', () => {
    test('an authorized subscription succeeds and receives events', async (t) => {
      const c = await clients(t).connect('client');
      const name = unique('private-');
      await c.subscribe(name);
      await server().trigger(name, 'secret', { s: 'x' });
      assert.deepEqual((await c.next(name, 'secret')).data, { s: 'x' });
    });

    test('a forged signature is refused with a subscription error and the connection stays usable', async (t) => {
      const open = clients(t);
      const c = await open.connect('forger', { authSecret: 'not-the-secret' });
      const name = unique('private-');
      c.pusher.subscribe(name);
      const [refusal] = await c.frame(
        (f) =>
          f.event === 'pusher:error' ||
          (f.channel === name &&
            (f.event === 'pusher:subscription_error' || f.event.endsWith('subscription_succeeded'))),
        'a subscription error',
      );
      assert.notEqual(
        refusal.event,
        'pusher_internal:subscription_succeeded',
        'a forged signature was accepted',
      );
      t.diagnostic(`answer: ${JSON.stringify(refusal)}`);
      assert.equal(c.pusher.connection.state, 'connected');
      // Usable: a public subscription on the same connection works, and nothing of the private channel arrives.
      const pub = unique('');
      await c.subscribe(pub);
      await server().trigger(name, 'leak', { s: 1 });
      await c.noneBefore(
        (f) => f.event === 'leak',
        await marker(pub),
        'an event of a channel it was refused',
      );
    });
  });

  describe('pusher conformance: presence channels', () => {
    test('members list, member_added, and member_removed when a member disconnects', async (t) => {
      const open = clients(t);
      const name = unique('presence-');
      const alice = await open.connect('alice', {
        presence: { user_id: 'alice', user_info: { name: 'Alice' } },
      });
      const aliceChannel = await alice.subscribe<PresenceChannel>(name);
      assert.equal(aliceChannel.members.count, 1);
      assert.equal(aliceChannel.members.me.id, 'alice');

      const bob = await open.connect('bob', { presence: { user_id: 'bob', user_info: { name: 'Bob' } } });
      const bobChannel = await bob.subscribe<PresenceChannel>(name);
      const [added] = await alice.frame((f) => f.event === 'pusher_internal:member_added', 'member_added');
      assert.equal(added.channel, name);
      assert.deepEqual(added.data, { user_id: 'bob', user_info: { name: 'Bob' } });
      assert.equal(bobChannel.members.count, 2);
      const ids: string[] = [];
      bobChannel.members.each((m: { id: string }) => ids.push(m.id));
      assert.deepEqual(ids.sort(), ['alice', 'bob']);
      assert.deepEqual(bobChannel.members.get('alice')?.info, { name: 'Alice' });
      assert.equal(aliceChannel.members.count, 2);

      const closedAt = Date.now();
      bob.disconnect();
      const [removed] = await alice.frame(
        (f) => f.event === 'pusher_internal:member_removed',
        'member_removed',
      );
      t.diagnostic(`member_removed ${Date.now() - closedAt} ms after the member disconnected`);
      assert.equal(removed.channel, name);
      assert.equal(removed.data.user_id, 'bob');
      assert.equal(aliceChannel.members.count, 1);
    });

    test('two connections of one user are one member; closing one tab keeps the member', async (t) => {
      const open = clients(t);
      const name = unique('presence-');
      const watcher = await open.connect('watcher', { presence: { user_id: 'watcher' } });
      await watcher.subscribe(name);
      const tab1 = await open.connect('carol tab 1', { presence: { user_id: 'carol' } });
      await tab1.subscribe(name);
      await watcher.frame((f) => f.event === 'pusher_internal:member_added', 'member_added carol');
      const tab2 = await open.connect('carol tab 2', { presence: { user_id: 'carol' } });
      const tab2Channel = await tab2.subscribe<PresenceChannel>(name);
      assert.equal(tab2Channel.members.count, 2, 'watcher and carol');
      const isCarolAdded = (f: Frame) =>
        f.event === 'pusher_internal:member_added' && f.data?.user_id === 'carol';
      // Only the first tab's member_added reaches the watcher.
      await watcher.noneBefore(
        (f) => isCarolAdded(f) && watcher.frames.filter(isCarolAdded).indexOf(f) > 0,
        await marker(name),
        'a second member_added for the same user',
      );
      const users = await get(`/channels/${name}/users`);
      assert.deepEqual(users.users.map((u: { id: string }) => u.id).sort(), ['carol', 'watcher']);

      tab2.disconnect();
      // The server learns of the close after the client: wait until it counts one subscription fewer.
      let info: any;
      await waitUntil(
        async () => {
          info = await get(`/channels/${name}`, { info: 'subscription_count' });
          return info.subscription_count === 2;
        },
        TIMEOUT_MS,
        () => `subscription_count 2 after closing tab 2: ${JSON.stringify(info)}`,
      );
      assert.equal(info.occupied, true);
      await watcher.noneBefore(
        (f) => f.event === 'pusher_internal:member_removed',
        await marker(name),
        'member_removed while another tab of the user is subscribed',
      );
      tab1.disconnect();
      const [removed] = await watcher.frame(
        (f) => f.event === 'pusher_internal:member_removed',
        'member_removed',
      );
      assert.equal(removed.data.user_id, 'carol');
    });
  });

  describe('pusher conformance: client events', () => {
    test('client-* on a private channel reaches the other subscriber, not the sender', async (t) => {
      const open = clients(t);
      const name = unique('private-');
      const [sender, receiver] = [await open.connect('sender'), await open.connect('receiver')];
      const channel = await sender.subscribe(name);
      await receiver.subscribe(name);
      assert.equal(channel.trigger('client-typing', { who: 'sender' }), true);
      assert.deepEqual((await receiver.next(name, 'client-typing')).data, { who: 'sender' });
      await sender.noneBefore((f) => f.event === 'client-typing', await marker(name), 'its own client event');
    });

    test('client-* on a presence channel carries the sender user_id', async (t) => {
      quirk(t, 'client-events-presence-user-id');
      const open = clients(t);
      const name = unique('presence-');
      const sender = await open.connect('sender', { presence: { user_id: 'sender-user' } });
      const receiver = await open.connect('receiver', { presence: { user_id: 'receiver-user' } });
      const channel = await sender.subscribe(name);
      await receiver.subscribe(name);
      channel.trigger('client-moved', { x: 3 });
      const frame = await receiver.next(name, 'client-moved');
      assert.deepEqual(frame.data, { x: 3 });
      assert.equal(frame.user_id, 'sender-user');
    });

    test('client-* on a public channel is refused with pusher:error and not delivered', async (t) => {
      quirk(t, 'client-events-public-refused');
      const open = clients(t);
      const name = unique('');
      const [sender, receiver] = [await open.connect('sender'), await open.connect('receiver')];
      const channel = await sender.subscribe(name);
      await receiver.subscribe(name);
      channel.trigger('client-shout', { loud: true });
      // A connection's frames are handled in order: once the pong to a later ping is back, so is the
      // answer to the client event (the marker below goes by another connection and could overtake it).
      const pongs = () => sender.frames.filter((f) => f.event === 'pusher:pong').length;
      const before = pongs();
      sender.pusher.send_event('pusher:ping', {});
      await sender.until(() => (pongs() > before ? true : undefined), 'pusher:pong after the client event');
      const mark = await marker(name);
      await receiver.noneBefore(
        (f) => f.event === 'client-shout',
        mark,
        'a client event on a public channel',
      );
      await sender.frame(mark, 'the marker');
      const error = sender.frames.find((f) => f.event === 'pusher:error');
      t.diagnostic(`answer: ${JSON.stringify(error)}`);
      assert.ok(error, 'the sender got no pusher:error before the marker');
    });
  });

  describe('pusher conformance: encrypted and cache channels', () => {
    test('private-encrypted: the SDK encrypts, the server relays, pusher-js decrypts', async (t) => {
      const c = await clients(t).connect('client');
      const name = unique('private-encrypted-');
      const channel = await c.subscribe(name);
      const data = { card: '4111', amount: 12.5 };
      const decrypted = firstCall('bind payment', (resolve) => channel.bind('payment', resolve));
      await server().trigger(name, 'payment', data);
      assert.deepEqual(await decrypted, data);
      // What crossed the server is ciphertext: nonce and ciphertext, not the data.
      const frame = await c.next(name, 'payment');
      assert.equal(typeof frame.data.nonce, 'string');
      assert.equal(typeof frame.data.ciphertext, 'string');
      assert.equal(JSON.stringify(frame.data).includes('4111'), false);
    });

    test('cache-*: a subscriber gets the last event first', async (t) => {
      const name = unique('cache-');
      await server().trigger(name, 'price', { v: 1 });
      await server().trigger(name, 'price', { v: 2 });
      const c = await clients(t).connect('client');
      await c.subscribe(name);
      const [cached, at] = await c.frame(
        (f) => f.channel === name && f.event === 'price',
        'the cached event',
      );
      assert.deepEqual(cached.data, { v: 2 });
      assert.equal(
        c.frames.slice(0, at).some((f) => f.event === 'pusher:cache_miss'),
        false,
      );
    });

    test('cache-*: an empty cache channel answers pusher:cache_miss', async (t) => {
      const c = await clients(t).connect('client');
      const name = unique('cache-');
      await c.subscribe(name);
      await c.next(name, 'pusher:cache_miss');
    });
  });

  describe('pusher conformance: HTTP API queries', () => {
    /** Subscribes a public channel (2 connections) and a presence channel (2 users, 3 connections). */
    async function occupy(t: TestContext) {
      const open = clients(t);
      const pub = unique('');
      const presence = unique('presence-');
      const a = await open.connect('a', { presence: { user_id: 'u1' } });
      const b = await open.connect('b', { presence: { user_id: 'u2' } });
      const b2 = await open.connect('b tab 2', { presence: { user_id: 'u2' } });
      await a.subscribe(pub);
      await b.subscribe(pub);
      for (const c of [a, b, b2]) await c.subscribe(presence);
      return { pub, presence };
    }

    test('GET /channels lists occupied channels, filter_by_prefix narrows them', async (t) => {
      const { pub, presence } = await occupy(t);
      const all = await get('/channels');
      assert.ok(pub in all.channels, 'the public channel is listed');
      assert.ok(presence in all.channels, 'the presence channel is listed');
      const mine = await get('/channels', { filter_by_prefix: `conf-${run}-` });
      assert.deepEqual(Object.keys(mine.channels), [pub]);
      const never = await get('/channels', { filter_by_prefix: `conf-${run}-never-` });
      assert.deepEqual(never.channels, {});
      t.diagnostic(`GET /channels?filter_by_prefix: ${JSON.stringify(mine)}`);
    });

    test('GET /channels?filter_by_prefix=presence-&info=user_count gives each user_count', async (t) => {
      quirk(t, 'channels-info-user-count');
      const { presence } = await occupy(t);
      const body = await get('/channels', { filter_by_prefix: 'presence-', info: 'user_count' });
      t.diagnostic(`answer: ${JSON.stringify(body.channels[presence])}`);
      assert.equal(body.channels[presence]?.user_count, 2);
      for (const name of Object.keys(body.channels)) assert.ok(name.startsWith('presence-'), name);
    });

    test('GET /channels?info=user_count without the presence- prefix is a 400', async (t) => {
      quirk(t, 'channels-info-user-count-needs-presence-prefix');
      await occupy(t);
      const got = await answer(server().get({ path: '/channels', params: { info: 'user_count' } }));
      assertStatus(t, got, 400, 'GET /channels?info=user_count');
    });

    test('GET /channels/:name gives occupied, subscription_count and (presence) user_count', async (t) => {
      quirk(t, 'channel-info');
      const { pub, presence } = await occupy(t);
      const p = await get(`/channels/${pub}`, { info: 'subscription_count' });
      assert.equal(p.occupied, true);
      assert.equal(p.subscription_count, 2);
      const q = await get(`/channels/${presence}`, { info: 'user_count,subscription_count' });
      assert.equal(q.occupied, true);
      assert.equal(q.user_count, 2);
      assert.equal(q.subscription_count, 3);
      const empty = await get(`/channels/${unique('')}`);
      assert.equal(empty.occupied, false);
      t.diagnostic(
        `public: ${JSON.stringify(p)}, presence: ${JSON.stringify(q)}, empty: ${JSON.stringify(empty)}`,
      );
    });

    test('GET /channels/:name/users lists the presence users once each', async (t) => {
      const { presence } = await occupy(t);
      const body = await get(`/channels/${presence}/users`);
      assert.deepEqual(body.users.map((u: { id: string }) => u.id).sort(), ['u1', 'u2']);
    });

    test('GET /channels/:name/users of a non-presence channel is a 400', async (t) => {
      quirk(t, 'api-error-status');
      const { pub } = await occupy(t);
      const got = await answer(server().get({ path: `/channels/${pub}/users` }));
      assertStatus(t, got, 400, 'GET /channels/<public>/users');
    });

    test('calls signed with a wrong secret are refused with 401', async (t) => {
      quirk(t, 'api-error-status');
      const wrong = server('wrong-secret');
      assertStatus(t, await answer(wrong.get({ path: '/channels' })), 401, 'GET /channels, wrong secret');
      assertStatus(t, await answer(wrong.trigger(unique(''), 'e', {})), 401, 'trigger, wrong secret');
    });
  });

  describe('pusher conformance: users', () => {
    test('signin: pusher:signin gets pusher:signin_success', async (t) => {
      quirk(t, 'signin');
      const c = await clients(t).connect('dora', { signinAs: 'dora' });
      c.pusher.signin();
      const [success] = await c.frame(
        (f) => f.event === 'pusher:signin_success' || f.event === 'pusher:error',
        'pusher:signin_success',
      );
      assert.equal(success.event, 'pusher:signin_success', JSON.stringify(success));
      await c.pusher.user.signinDonePromise;
      assert.equal(c.pusher.user.user_data?.id, 'dora');
    });

    test('sendToUser reaches the signed-in user', async (t) => {
      quirk(t, 'send-to-user');
      const c = await clients(t).connect('erin', { signinAs: 'erin' });
      c.pusher.signin();
      await c.pusher.user.signinDonePromise;
      await c.next('#server-to-user-erin', 'pusher_internal:subscription_succeeded');
      const received = firstCall('bind note', (resolve) => c.pusher.user.bind('note', resolve));
      await server().sendToUser('erin', 'note', { hi: 1 });
      assert.deepEqual(await received, { hi: 1 });
    });

    test('terminateUserConnections closes that user’s connections, not others', async (t) => {
      quirk(t, 'terminate-user-connections');
      const open = clients(t);
      const victim = await open.connect('frank', { signinAs: 'frank' });
      const bystander = await open.connect('gina', { signinAs: 'gina' });
      for (const c of [victim, bystander]) {
        c.pusher.signin();
        await c.pusher.user.signinDonePromise;
      }
      const name = unique('');
      await bystander.subscribe(name);
      const from = victim.states.length;
      const res = await server().terminateUserConnections('frank');
      assert.equal(res.status, 200);
      const state = await victim.until(
        () => victim.states.slice(from).find((s) => s !== 'connected'),
        'the terminated connection leaving connected',
      );
      const error = victim.frames.find((f) => f.event === 'pusher:error');
      t.diagnostic(`terminated: state ${state}, ${JSON.stringify(error)}`);
      await bystander.frame(await marker(name), 'an event on the bystander');
      assert.equal(bystander.pusher.connection.state, 'connected');
    });
  });

  describe('pusher conformance: laravel-echo', () => {
    test("echo.channel(...).listen('.MyEvent') and a namespaced listen", async (t) => {
      const echo = clients(t).echo();
      const name = unique('');
      const got = firstCall('listen .MyEvent', (resolve) => echo.channel(name).listen('.MyEvent', resolve));
      const namespaced = firstCall('listen OrderShipped', (resolve) =>
        echo.channel(name).listen('OrderShipped', resolve),
      );
      await firstCall('subscribed', (resolve) => echo.channel(name).subscribed(resolve));
      await server().trigger(name, 'MyEvent', { id: 7 });
      // Echo's default namespace App.Events, written as the PHP class name Laravel broadcasts.
      await server().trigger(name, 'App\\Events\\OrderShipped', { order: 9 });
      assert.deepEqual(await got, { id: 7 });
      assert.deepEqual(await namespaced, { order: 9 });
    });

    test('echo.private(...) subscribes private-<name> and receives its events', async (t) => {
      const echo = clients(t).echo();
      const name = `orders.${run}.${++counter}`;
      const got = firstCall('listen .Paid', (resolve) => echo.private(name).listen('.Paid', resolve));
      await firstCall('subscribed', (resolve) => echo.private(name).subscribed(resolve));
      await server().trigger(`private-${name}`, 'Paid', { total: 3 });
      assert.deepEqual(await got, { total: 3 });
    });

    test('echo.join(...).here / joining / leaving', async (t) => {
      const open = clients(t);
      const name = `room.${run}.${++counter}`;
      const first = open.echo({ user_id: '1', user_info: { name: 'One' } });
      const here = firstCall<any[]>('here', (resolve) => first.join(name).here(resolve));
      assert.deepEqual(await here, [{ name: 'One' }]);
      const joining = firstCall('joining', (resolve) => first.join(name).joining(resolve));
      const leaving = firstCall('leaving', (resolve) => first.join(name).leaving(resolve));
      const second = open.echo({ user_id: '2', user_info: { name: 'Two' } });
      const secondHere = firstCall<any[]>('here', (resolve) => second.join(name).here(resolve));
      assert.deepEqual(await joining, { name: 'Two' });
      assert.deepEqual((await secondHere).map((m) => m.name).sort(), ['One', 'Two']);
      second.disconnect();
      assert.deepEqual(await leaving, { name: 'Two' });
    });

    test('whisper reaches listenForWhisper on another client', async (t) => {
      const open = clients(t);
      const name = `chat.${run}.${++counter}`;
      const [sender, receiver] = [open.echo(), open.echo()];
      await firstCall('subscribed', (resolve) => sender.private(name).subscribed(resolve));
      const heard = firstCall('listenForWhisper typing', (resolve) =>
        receiver.private(name).listenForWhisper('typing', resolve),
      );
      await firstCall('subscribed', (resolve) => receiver.private(name).subscribed(resolve));
      sender.private(name).whisper('typing', { name: 'Sender' });
      assert.deepEqual(await heard, { name: 'Sender' });
    });
  });

  describe('pusher conformance: hostile input', () => {
    /** A pusher-js client on a public channel that must keep receiving while a raw socket misbehaves. */
    async function bystander(t: TestContext) {
      const c = await clients(t).connect('bystander');
      const name = unique('');
      await c.subscribe(name);
      return { c, name };
    }

    /** The raw socket is either closed, or still answers pusher:ping; returns what it saw. */
    async function stillSane(raw: RawClient): Promise<string> {
      if (raw.closeCode !== undefined) return `closed ${raw.closeCode} ${raw.closeReason}`;
      raw.send({ event: 'pusher:ping', data: {} });
      await waitUntil(
        () => raw.closeCode !== undefined || raw.received.some((m) => m.event === 'pusher:pong'),
        TIMEOUT_MS,
        () => `pusher:pong or a close; received ${JSON.stringify(raw.received)}`,
      );
      return raw.closeCode !== undefined
        ? `closed ${raw.closeCode} ${raw.closeReason}`
        : 'open, answers ping';
    }

    /** Opens a raw socket, lets `misbehave` send on it, records the answer; a bystander must be unaffected. */
    async function hostile(t: TestContext, what: string, misbehave: (raw: RawClient) => void) {
      const { c, name } = await bystander(t);
      const raw = clients(t).raw();
      await raw.expect((m) => m.event === 'pusher:connection_established');
      misbehave(raw);
      const after = await stillSane(raw);
      t.diagnostic(`after ${what}: ${after}; frames ${JSON.stringify(raw.received.slice(1))}`);
      await c.frame(await marker(name), 'an event on the bystander');
    }

    test('malformed JSON and a binary frame: the server answers or closes; others are unaffected', async (t) => {
      quirk(t, 'hostile-malformed');
      await hostile(t, 'malformed JSON and a binary frame', (raw) => {
        raw.send('{"event": "pusher:subscribe", "data": {');
        raw.send('not json at all');
        raw.ws.send(Buffer.from([0xff, 0x00, 0x7b]));
      });
    });

    test('an unknown pusher: event: the server answers or ignores it; others are unaffected', async (t) => {
      quirk(t, 'hostile-unknown-event');
      await hostile(t, 'unknown events', (raw) => {
        raw.send({ event: 'pusher:frobnicate', data: {} });
        raw.send({ event: 'no-prefix-at-all', data: 'x' });
      });
    });

    test('an oversized frame (1 MiB client event) is refused, not relayed; others are unaffected', async (t) => {
      quirk(t, 'hostile-oversized');
      const { c, name } = await bystander(t);
      const raw = clients(t).raw();
      const established = await raw.expect((m) => m.event === 'pusher:connection_established');
      const socketId = JSON.parse(established.data).socket_id as string;
      // Subscribed to a private channel the bystander also joins, so a relayed event would reach it.
      const privateName = unique('private-');
      await c.subscribe(privateName);
      raw.send({
        event: 'pusher:subscribe',
        data: { channel: privateName, ...server().authorizeChannel(socketId, privateName) },
      });
      await raw.expect(
        (m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === privateName,
      );
      raw.send({ event: 'client-big', channel: privateName, data: { blob: 'x'.repeat(1024 * 1024) } });
      await waitUntil(
        () => raw.closeCode !== undefined || raw.received.some((m) => m.event === 'pusher:error'),
        TIMEOUT_MS,
        () => `pusher:error or a close after the oversized frame`,
      );
      const answer = raw.received.find((m) => m.event === 'pusher:error');
      t.diagnostic(
        `oversized: ${answer ? JSON.stringify(answer) : 'no pusher:error'}; ${
          raw.closeCode !== undefined ? `closed ${raw.closeCode} ${raw.closeReason}` : 'still open'
        }`,
      );
      await c.noneBefore(
        (f) => f.event === 'client-big',
        await marker(privateName),
        'an oversized client event',
      );
      await c.frame(await marker(name), 'an event on the bystander');
    });
  });
}
