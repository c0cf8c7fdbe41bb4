import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ConfigError, envName, KEYS, loadConfig, NAMESPACE_DEFAULTS } from '../src/config.js';

const dir = mkdtempSync(join(tmpdir(), 'switchboard-config-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let fileCount = 0;
function configFile(content: unknown): string {
  const path = join(dir, `config-${++fileCount}.json`);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

function configError(env: NodeJS.ProcessEnv, message: RegExp): ConfigError {
  let caught: unknown;
  try {
    loadConfig(env);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ConfigError, `expected ConfigError, got ${String(caught)}`);
  assert.match(caught.message, message);
  return caught;
}

const ns = (namespaces: unknown) => ({ SWITCHBOARD_NAMESPACES: JSON.stringify(namespaces) });

describe('defaults', () => {
  const c = loadConfig({});

  test('ports, host and broker', () => {
    assert.equal(c.clientPort, 8000);
    assert.equal(c.internalPort, 9000);
    assert.equal(c.grpcPort, 10000);
    assert.equal(c.host, '0.0.0.0');
    assert.equal(c.broker, 'memory');
  });

  test('timing and limits', () => {
    assert.equal(c.pingInterval, 25);
    assert.equal(c.pongTimeout, 8);
    assert.equal(c.connectTimeout, 10);
    assert.equal(c.maxMessageSize, 65536);
    assert.equal(c.maxChannelsPerConnection, 128);
    assert.equal(c.maxConnectionsPerUser, 100);
    assert.equal(c.personalNamespace, undefined);
    assert.equal(c.singleConnection, false);
    assert.equal(c.maxConnections, 100000);
    assert.equal(c.commandsPerSecond, 100);
    assert.equal(c.maxBackpressure, 1048576);
    assert.equal(c.channelMaxLength, 255);
    assert.equal(c.historyMaxPublications, 1000);
    assert.equal(c.shutdownTimeout, 10);
  });

  test('auth and misc', () => {
    assert.equal(c.logLevel, 'info');
    assert.equal(c.allowAnonymous, false);
    assert.deepEqual(c.apiKeys, []);
    assert.equal(c.apiKeyFile, '');
    assert.deepEqual(c.token, {
      hmacSecrets: [],
      hmacSecretFile: '',
      publicKey: '',
      jwksUrl: '',
      audience: '',
      issuer: '',
      maxDepth: 64,
      maxSubs: 128,
    });
    assert.deepEqual(c.allowedOrigins, ['http://localhost:8000', 'http://127.0.0.1:8000']);
  });

  test('node id defaults to something non-empty', () => {
    assert.ok(c.nodeId.length > 0);
  });

  test('namespaces "" and chat, and those of the example services', () => {
    assert.deepEqual([...c.namespaces.keys()].sort(), ['', 'chat', 'jobs', 'room', 'store']);
    for (const owned of ['room', 'store', 'jobs'])
      assert.equal(c.namespaces.get(owned)!.service, true, owned);
    assert.deepEqual(c.embeddedServices, ['chat', 'store', 'jobs']);
    assert.deepEqual(c.namespaces.get(''), {
      ...NAMESPACE_DEFAULTS,
      name: '',
      allow_subscribe_for_client: true,
    });
    const chat = c.namespaces.get('chat')!;
    assert.equal(chat.history_size, 100);
    assert.equal(chat.history_ttl, 300);
    assert.equal(chat.recovery, true);
    assert.equal(chat.presence, true);
    assert.equal(chat.join_leave, true);
    assert.equal(chat.allow_subscribe_for_client, true);
    assert.equal(chat.allow_publish_for_subscriber, true);
    assert.equal(chat.allow_presence_for_subscriber, true);
    assert.equal(chat.allow_history_for_subscriber, true);
    assert.equal(chat.allow_subscribe_for_anonymous, false);
    assert.equal(chat.allow_publish_for_client, false);
    assert.equal(chat.skip_sender, false);
  });

  test('loading twice gives independent namespace objects', () => {
    const a = loadConfig({});
    a.namespaces.get('chat')!.history_size = 1;
    assert.equal(loadConfig({}).namespaces.get('chat')!.history_size, 100);
  });

  test('env names follow the key table', () => {
    assert.equal(envName('client_port'), 'SWITCHBOARD_CLIENT_PORT');
    assert.equal(KEYS.client_port.default, 8000);
  });
});

describe('environment overrides', () => {
  test('ints, strings, bools and lists', () => {
    const c = loadConfig({
      SWITCHBOARD_CLIENT_PORT: '8100',
      SWITCHBOARD_INTERNAL_PORT: ' 9100 ',
      SWITCHBOARD_GRPC_PORT: '0',
      SWITCHBOARD_HOST: '127.0.0.1',
      SWITCHBOARD_NODE_ID: 'node-a',
      SWITCHBOARD_PING_INTERVAL: '5',
      SWITCHBOARD_MAX_MESSAGE_SIZE: '1024',
      SWITCHBOARD_ALLOW_ANONYMOUS: 'true',
      SWITCHBOARD_API_KEY: 'k',
      SWITCHBOARD_TOKEN_HMAC_SECRET_KEY: 's',
      SWITCHBOARD_TOKEN_AUDIENCE: 'aud',
      SWITCHBOARD_TOKEN_ISSUER: 'iss',
      SWITCHBOARD_TOKEN_JWKS_URL: 'https://idp/jwks',
      SWITCHBOARD_ALLOWED_ORIGINS: ' https://a.example.com, https://*.b.com ,,',
      SWITCHBOARD_LOG_LEVEL: 'debug',
    });
    assert.equal(c.clientPort, 8100);
    assert.equal(c.internalPort, 9100);
    assert.equal(c.grpcPort, 0);
    assert.equal(c.host, '127.0.0.1');
    assert.equal(c.nodeId, 'node-a');
    assert.equal(c.pingInterval, 5);
    assert.equal(c.maxMessageSize, 1024);
    assert.equal(c.allowAnonymous, true);
    assert.deepEqual(c.apiKeys, ['k']);
    assert.deepEqual(c.token, {
      hmacSecrets: ['s'],
      hmacSecretFile: '',
      publicKey: '',
      jwksUrl: 'https://idp/jwks',
      audience: 'aud',
      issuer: 'iss',
      maxDepth: 64,
      maxSubs: 128,
    });
    assert.deepEqual(c.allowedOrigins, ['https://a.example.com', 'https://*.b.com']);
    assert.equal(c.logLevel, 'debug');
  });

  test('bool spellings', () => {
    for (const s of ['1', 'true', 'TRUE', 'yes', 'on', ' On ']) {
      assert.equal(loadConfig({ SWITCHBOARD_ALLOW_ANONYMOUS: s }).allowAnonymous, true, s);
    }
    for (const s of ['0', 'false', 'no', 'off', '', 'False']) {
      assert.equal(loadConfig({ SWITCHBOARD_ALLOW_ANONYMOUS: s }).allowAnonymous, false, s);
    }
  });

  test('an empty allowed origins list', () => {
    assert.deepEqual(loadConfig({ SWITCHBOARD_ALLOWED_ORIGINS: '' }).allowedOrigins, []);
  });

  test('unrelated env vars are ignored', () => {
    assert.equal(loadConfig({ PATH: '/bin', SWITCHBOARD_UNKNOWN: 'x' }).clientPort, 8000);
  });

  test('an inline PEM public key is kept as is', () => {
    const pem = '-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----';
    assert.equal(loadConfig({ SWITCHBOARD_TOKEN_PUBLIC_KEY: pem }).token.publicKey, pem);
  });

  test('a public key path is read from disk', () => {
    const pem = '-----BEGIN PUBLIC KEY-----\nxyz\n-----END PUBLIC KEY-----\n';
    const path = join(dir, 'key.pem');
    writeFileSync(path, pem);
    assert.equal(loadConfig({ SWITCHBOARD_TOKEN_PUBLIC_KEY: path }).token.publicKey, pem);
  });
});

describe('bad values give a ConfigError naming the env var', () => {
  for (const bad of ['abc', '-1', '1.5', '', ' ', '0x10', '1e3', '80 80', 'NaN', '9007199254740993']) {
    test(`int ${JSON.stringify(bad)}`, () => {
      configError({ SWITCHBOARD_CLIENT_PORT: bad }, /SWITCHBOARD_CLIENT_PORT must be a non-negative integer/);
    });
  }

  test('the personal channel namespace must be configured', () => {
    configError(
      { SWITCHBOARD_USER_SUBSCRIBE_TO_PERSONAL: 'true', SWITCHBOARD_USER_PERSONAL_CHANNEL_NAMESPACE: 'me' },
      /SWITCHBOARD_USER_PERSONAL_CHANNEL_NAMESPACE: no namespace "me"/,
    );
    const on = loadConfig({ SWITCHBOARD_USER_SUBSCRIBE_TO_PERSONAL: 'true' });
    assert.equal(on.personalNamespace, '');
    const chat = loadConfig({
      SWITCHBOARD_USER_SUBSCRIBE_TO_PERSONAL: 'true',
      SWITCHBOARD_USER_PERSONAL_CHANNEL_NAMESPACE: 'chat',
      SWITCHBOARD_USER_PERSONAL_SINGLE_CONNECTION: 'true',
    });
    assert.equal(chat.personalNamespace, 'chat');
    assert.equal(chat.singleConnection, true);
    // Off, the namespace is not looked at.
    assert.equal(
      loadConfig({ SWITCHBOARD_USER_PERSONAL_CHANNEL_NAMESPACE: 'me' }).personalNamespace,
      undefined,
    );
  });

  test('the nesting bound from 4 to 1000, trusted proxies as addresses or CIDR ranges', () => {
    for (const bad of ['3', '1001']) configError({ SWITCHBOARD_JSON_MAX_DEPTH: bad }, /from 4 to 1000/);
    assert.equal(loadConfig({ SWITCHBOARD_JSON_MAX_DEPTH: '1000' }).jsonMaxDepth, 1000);
    configError(
      { SWITCHBOARD_TRUSTED_PROXIES: '10.0.0.0/8,haproxy' },
      /SWITCHBOARD_TRUSTED_PROXIES: "haproxy"/,
    );
    assert.deepEqual(loadConfig({ SWITCHBOARD_TRUSTED_PROXIES: '10.0.0.0/8, ::1' }).trustedProxies, [
      '10.0.0.0/8',
      '::1',
    ]);
  });

  test('another int key is named too', () => {
    configError({ SWITCHBOARD_MAX_MESSAGE_SIZE: 'big' }, /SWITCHBOARD_MAX_MESSAGE_SIZE/);
  });

  for (const bad of ['maybe', '2', 'truthy', 'y']) {
    test(`bool ${JSON.stringify(bad)}`, () => {
      configError({ SWITCHBOARD_ALLOW_ANONYMOUS: bad }, /SWITCHBOARD_ALLOW_ANONYMOUS must be true or false/);
    });
  }

  for (const bad of ['1.5', '-0.1', 'half', '', '1e-2', '0x1']) {
    test(`ratio ${JSON.stringify(bad)}`, () => {
      configError(
        { SWITCHBOARD_LOG_CONNECTION_SAMPLE: bad },
        /SWITCHBOARD_LOG_CONNECTION_SAMPLE must be a number from 0 to 1/,
      );
    });
  }

  test('ratios from 0 to 1 are read as numbers', () => {
    for (const [raw, value] of [
      ['0', 0],
      ['1', 1],
      ['0.01', 0.01],
      ['.5', 0.5],
    ] as const)
      assert.equal(loadConfig({ SWITCHBOARD_LOG_CONNECTION_SAMPLE: raw }).logConnectionSample, value);
  });

  test('broker other than memory', () => {
    configError({ SWITCHBOARD_BROKER: 'redis' }, /SWITCHBOARD_BROKER must be memory or nats/);
  });

  test('ping interval and commands per second must be at least 1', () => {
    configError({ SWITCHBOARD_PING_INTERVAL: '0' }, /SWITCHBOARD_PING_INTERVAL must be at least 1/);
    configError({ SWITCHBOARD_COMMANDS_PER_SECOND: '0' }, /SWITCHBOARD_COMMANDS_PER_SECOND/);
  });
});

describe('SWITCHBOARD_NAMESPACES', () => {
  test('replaces the default namespaces and fills in defaults', () => {
    const c = loadConfig(
      ns([{ name: 'news', history_size: 10, history_ttl: 60, recovery: true }, { name: '' }]),
    );
    assert.deepEqual([...c.namespaces.keys()].sort(), ['', 'news']);
    assert.deepEqual(c.namespaces.get('news'), {
      ...NAMESPACE_DEFAULTS,
      name: 'news',
      history_size: 10,
      history_ttl: 60,
      recovery: true,
    });
    assert.deepEqual(c.namespaces.get(''), { ...NAMESPACE_DEFAULTS, name: '' });
  });

  test('an empty array means no namespaces', () => {
    assert.equal(loadConfig(ns([])).namespaces.size, 0);
  });

  test('presence with join_leave', () => {
    const c = loadConfig(ns([{ name: 'p', presence: true, join_leave: true }]));
    assert.equal(c.namespaces.get('p')!.join_leave, true);
  });

  test('not JSON', () => {
    configError({ SWITCHBOARD_NAMESPACES: '[{name:' }, /SWITCHBOARD_NAMESPACES must be JSON/);
  });

  test('not an array', () => {
    configError(ns({ name: 'x' }), /SWITCHBOARD_NAMESPACES must be a JSON array/);
    configError({ SWITCHBOARD_NAMESPACES: '"chat"' }, /must be a JSON array/);
  });

  test('entries need a string name', () => {
    configError(ns([{}]), /string "name"/);
    configError(ns([{ name: 1 }]), /string "name"/);
    configError(ns(['chat']), /string "name"/);
    configError(ns([null]), /string "name"/);
  });

  test('invalid namespace names', () => {
    for (const name of ['a:b', 'a b', 'a#b', 'ü', 'a*']) {
      configError(ns([{ name }]), /namespace name .* is invalid/);
    }
  });

  test('unknown option', () => {
    configError(ns([{ name: 'x', history_lifetime: 5 }]), /namespace "x": unknown option history_lifetime/);
  });

  test('prototype names are unknown options', () => {
    configError({ SWITCHBOARD_NAMESPACES: '[{"name":"x","toString":1}]' }, /unknown option toString/);
    configError({ SWITCHBOARD_NAMESPACES: '[{"name":"x","__proto__":{}}]' }, /unknown option __proto__/);
  });

  test('wrong option types', () => {
    configError(ns([{ name: 'x', presence: 'true' }]), /namespace "x": presence must be a boolean/);
    configError(ns([{ name: 'x', history_size: '10' }]), /namespace "x": history_size must be a number/);
    configError(ns([{ name: 'x', skip_sender: 1 }]), /skip_sender must be a boolean/);
    configError(ns([{ name: 'x', history_ttl: null }]), /history_ttl must be a number/);
  });

  test('numeric options must be non-negative integers', () => {
    configError(ns([{ name: 'x', history_size: -5, history_ttl: 60 }]), /namespace "x": history_size/);
    configError(ns([{ name: 'x', history_size: 10, history_ttl: -1 }]), /namespace "x": history_ttl/);
    configError(ns([{ name: 'x', history_size: 1.5, history_ttl: 60 }]), /namespace "x": history_size/);
    configError(
      ns([{ name: 'x', history_size: -1, history_ttl: 60, recovery: true }]),
      /namespace "x": history_size/,
    );
  });

  test('recovery without history', () => {
    configError(ns([{ name: 'x', recovery: true }]), /namespace "x": recovery needs history_size > 0/);
  });

  test('history without a TTL', () => {
    configError(ns([{ name: 'x', history_size: 10 }]), /namespace "x": history needs history_ttl > 0/);
  });

  test('allowed_delta_types: "fossil" only, and only with history; delta_publish only with it', () => {
    const history = { history_size: 10, history_ttl: 60 };
    const c = loadConfig(ns([{ name: 'x', ...history, allowed_delta_types: ['fossil'] }]));
    assert.deepEqual(c.namespaces.get('x')?.allowed_delta_types, ['fossil']);
    for (const bad of [['xdelta'], 'fossil', [1]])
      configError(
        ns([{ name: 'x', ...history, allowed_delta_types: bad }]),
        /namespace "x": allowed_delta_types must be an array of "fossil"/,
      );
    configError(
      ns([{ name: 'x', allowed_delta_types: ['fossil'] }]),
      /namespace "x": allowed_delta_types needs history_size > 0/,
    );
    configError(
      ns([{ name: 'x', ...history, delta_publish: true }]),
      /namespace "x": delta_publish needs allowed_delta_types/,
    );
  });

  test('join_leave without presence', () => {
    configError(ns([{ name: 'x', join_leave: true }]), /namespace "x": join_leave needs presence/);
  });

  test('webhook_url without presence, or not an http(s) URL', () => {
    configError(
      ns([{ name: 'x', webhook_url: 'http://h/hooks' }]),
      /namespace "x": webhook_url needs presence/,
    );
    configError(ns([{ name: 'x', presence: true, webhook_url: 'ftp://h/' }]), /webhook_url must be an http/);
    configError(ns([{ name: 'x', presence: true, webhook_url: 7 }]), /webhook_url must be a string/);
  });
});

describe('config file (SWITCHBOARD_CONFIG)', () => {
  test('values from the file apply', () => {
    const path = configFile({
      client_port: 8200,
      internal_port: '9200',
      allow_anonymous: true,
      allowed_origins: ['https://x.test', 'https://y.test'],
      namespaces: [{ name: 'only', presence: true }],
      api_key: 'from-file',
    });
    const c = loadConfig({ SWITCHBOARD_CONFIG: path });
    assert.equal(c.clientPort, 8200);
    assert.equal(c.internalPort, 9200);
    assert.equal(c.allowAnonymous, true);
    assert.deepEqual(c.allowedOrigins, ['https://x.test', 'https://y.test']);
    assert.deepEqual([...c.namespaces.keys()], ['only']);
    assert.deepEqual(c.apiKeys, ['from-file']);
    assert.equal(c.grpcPort, 10000);
  });

  test('env wins over the file', () => {
    const path = configFile({ client_port: 8200, api_key: 'from-file', namespaces: [{ name: 'file' }] });
    const c = loadConfig({
      SWITCHBOARD_CONFIG: path,
      SWITCHBOARD_CLIENT_PORT: '8300',
      SWITCHBOARD_NAMESPACES: '[{"name":"env"}]',
    });
    assert.equal(c.clientPort, 8300);
    assert.deepEqual(c.apiKeys, ['from-file']);
    assert.deepEqual([...c.namespaces.keys()], ['env']);
  });

  test('an empty env var still wins over the file', () => {
    const path = configFile({ api_key: 'from-file' });
    assert.deepEqual(loadConfig({ SWITCHBOARD_CONFIG: path, SWITCHBOARD_API_KEY: '' }).apiKeys, []);
  });

  test('unknown key in the file is rejected', () => {
    const path = configFile({ client_port: 1, clientPort: 2 });
    configError({ SWITCHBOARD_CONFIG: path }, /unknown key clientPort/);
  });

  test('prototype names are unknown keys in the file', () => {
    for (const key of ['toString', 'constructor', '__proto__']) {
      const path = configFile(`{"${key}": {}}`);
      configError({ SWITCHBOARD_CONFIG: path }, new RegExp(`unknown key ${key}`));
    }
  });

  test('prefixed keys are not accepted in the file', () => {
    const path = configFile({ SWITCHBOARD_CLIENT_PORT: 1 });
    configError({ SWITCHBOARD_CONFIG: path }, /unknown key SWITCHBOARD_CLIENT_PORT/);
  });

  test('bad value types in the file name the key', () => {
    configError({ SWITCHBOARD_CONFIG: configFile({ client_port: 1.5 }) }, /SWITCHBOARD_CLIENT_PORT/);
    configError({ SWITCHBOARD_CONFIG: configFile({ client_port: true }) }, /SWITCHBOARD_CLIENT_PORT/);
    configError(
      { SWITCHBOARD_CONFIG: configFile({ allow_anonymous: 'sure' }) },
      /SWITCHBOARD_ALLOW_ANONYMOUS/,
    );
    configError({ SWITCHBOARD_CONFIG: configFile({ namespaces: { name: 'x' } }) }, /JSON array/);
  });

  test('missing file', () => {
    configError(
      { SWITCHBOARD_CONFIG: join(dir, 'does-not-exist.json') },
      /SWITCHBOARD_CONFIG .*does-not-exist/,
    );
  });

  test('malformed JSON file', () => {
    configError({ SWITCHBOARD_CONFIG: configFile('{"client_port": ') }, /SWITCHBOARD_CONFIG/);
  });

  test('a file that is not a JSON object', () => {
    for (const content of ['null', '5', '"text"', '[1,2]', 'true']) {
      configError({ SWITCHBOARD_CONFIG: configFile(content) }, /SWITCHBOARD_CONFIG .*JSON object/);
    }
  });

  test('an empty SWITCHBOARD_CONFIG means no file', () => {
    assert.equal(loadConfig({ SWITCHBOARD_CONFIG: '' }).clientPort, 8000);
  });
});

describe('keys that rotate: lists or a file', () => {
  test('API keys and HMAC secrets are comma-separated lists, in order', () => {
    const c = loadConfig({
      SWITCHBOARD_API_KEY: ' new-key, old-key ,,',
      SWITCHBOARD_TOKEN_HMAC_SECRET_KEY: 'new-secret,old-secret',
    });
    assert.deepEqual(c.apiKeys, ['new-key', 'old-key']);
    assert.deepEqual(c.token.hmacSecrets, ['new-secret', 'old-secret']);
  });

  test('a JSON config file may give them as arrays, commas and all', () => {
    const c = loadConfig({
      SWITCHBOARD_CONFIG: configFile({ api_key: ['a,b', 'c'], token_hmac_secret_key: ['s,1'] }),
    });
    assert.deepEqual(c.apiKeys, ['a,b', 'c']);
    assert.deepEqual(c.token.hmacSecrets, ['s,1']);
  });

  test('a key file instead of the list, never both', () => {
    const c = loadConfig({
      SWITCHBOARD_API_KEY_FILE: '/run/secrets/api-key',
      SWITCHBOARD_TOKEN_HMAC_SECRET_KEY_FILE: '/run/secrets/hmac',
    });
    assert.equal(c.apiKeyFile, '/run/secrets/api-key');
    assert.deepEqual(c.apiKeys, []);
    assert.equal(c.token.hmacSecretFile, '/run/secrets/hmac');
    configError(
      { SWITCHBOARD_API_KEY: 'k', SWITCHBOARD_API_KEY_FILE: '/k' },
      /set SWITCHBOARD_API_KEY or SWITCHBOARD_API_KEY_FILE, not both/,
    );
    configError(
      { SWITCHBOARD_TOKEN_HMAC_SECRET_KEY: 's', SWITCHBOARD_TOKEN_HMAC_SECRET_KEY_FILE: '/s' },
      /set SWITCHBOARD_TOKEN_HMAC_SECRET_KEY or SWITCHBOARD_TOKEN_HMAC_SECRET_KEY_FILE, not both/,
    );
    // An empty list is no list: a deployment may leave the variable set to ''.
    assert.equal(loadConfig({ SWITCHBOARD_API_KEY: '', SWITCHBOARD_API_KEY_FILE: '/k' }).apiKeyFile, '/k');
  });
});
