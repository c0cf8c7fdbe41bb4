import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  inboxPrefix,
  natsPermissions,
  type NatsRole,
  roleNamespace,
  type SubjectRules,
  Subjects,
} from '../src/index.js';

/**
 * Whether NATS lets a subject (or a subscription's subject, wildcards
 * included) through `rules`: allowed by a pattern that covers it, denied by
 * none that overlaps it.
 */
function covers(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const t = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return t.length > i;
    if (i >= t.length) return false;
    if (p[i] === '*' ? t[i] === '>' : p[i] !== t[i]) return false;
  }
  return p.length === t.length;
}
const may = (rules: SubjectRules, subject: string) =>
  rules.allow.some((p) => covers(p, subject)) && !rules.deny.some((p) => covers(p, subject));

const s = new Subjects('sb');
const NAMESPACES = ['', 'chat', 'room', 'store', 'jobs'];
const of = (role: NatsRole, user = role.replace(':', '-')) => natsPermissions('sb', NAMESPACES, role, user);

/** Subjects of every family of the map, for checking that a role reaches none of them but its own. */
const FAMILIES = {
  liveChat: s.live('chat', 'chat:lobby'),
  liveStore: s.live('store', 'store:Thing/1'),
  histChat: s.history('chat', 'chat:lobby'),
  control: s.control,
  survey: s.survey,
  serviceChat: s.service('chat', 'rpc'),
  serviceStore: s.service('store', 'rpc'),
  jobsReplica: `${s.serviceQueue('jobs')}.replica.abc`,
  api: s.api('publish'),
  serviceApiChat: s.serviceApi('chat', 'publish'),
  serviceApiStore: s.serviceApi('store', 'publish'),
  emulation: s.emulation('gw1'),
  presence: `$KV.${s.bucket('presence')}.key`,
  gateways: `$KV.${s.bucket('gateways')}.gw1`,
  servicesChat: `$KV.${s.bucket('services')}.chat.instance`,
  servicesStore: `$KV.${s.bucket('services')}.store.instance`,
  storeBucket: `$KV.${s.serviceBucket('store')}.Thing.1.price`,
  deleteHistory: `$JS.API.STREAM.DELETE.${s.historyStream('chat')}`,
  deleteStoreBucket: '$JS.API.STREAM.DELETE.KV_sb_store',
  streamList: '$JS.API.STREAM.LIST',
  historyInfo: `$JS.API.STREAM.INFO.${s.historyStream('chat')}`,
  presenceRead: '$JS.API.DIRECT.GET.KV_sb_presence.$KV.sb_presence.key',
  leader: `$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.${s.historyStream('chat')}`,
  jsAll: '$JS.API.>',
  sys: '$SYS.REQ.SERVER.PING',
  everything: '>',
  anyInbox: '_INBOX.>',
  gatewayInbox: `${inboxPrefix('gateway')}.x`,
} as const;
type Family = keyof typeof FAMILIES;

/** Asserts that `rules` let through exactly the families in `allowed`. */
function exactly(rules: SubjectRules, allowed: Family[], what: string) {
  for (const [family, subject] of Object.entries(FAMILIES))
    assert.equal(may(rules, subject), allowed.includes(family as Family), `${what} ${family} (${subject})`);
}

describe('NATS permissions per role', () => {
  test('the gateway: traffic of every namespace, control, survey, services, the API it answers, its streams and buckets', () => {
    const p = of('gateway');
    exactly(
      p.publish,
      [
        'liveChat',
        'liveStore',
        'histChat',
        'control',
        'survey',
        'serviceChat',
        'serviceStore',
        'emulation',
        'presence',
        'gateways',
        'historyInfo',
        'presenceRead',
      ],
      'gateway publishes',
    );
    exactly(
      p.subscribe,
      [
        'liveChat',
        'liveStore',
        'control',
        'survey',
        'api',
        'serviceApiChat',
        'serviceApiStore',
        'emulation',
        'leader',
        'gatewayInbox',
      ],
      'gateway subscribes',
    );
    assert.equal(p.allowResponses, true);
    // Every history stream of the deployment, and only those: appends, reads, purges, replicas.
    for (const ns of NAMESPACES) {
      const stream = s.historyStream(ns);
      for (const call of ['INFO', 'CREATE', 'UPDATE', 'MSG.GET', 'PURGE'])
        assert.ok(may(p.publish, `$JS.API.STREAM.${call}.${stream}`), `${call} ${stream}`);
      for (const call of [`CREATE.${stream}`, `CREATE.${stream}.c1.sb.hist.x.y`, `MSG.NEXT.${stream}.c1`])
        assert.ok(may(p.publish, `$JS.API.CONSUMER.${call}`), call);
      assert.ok(!may(p.publish, `$JS.API.STREAM.DELETE.${stream}`), `no delete of ${stream}`);
    }
    assert.ok(!may(p.publish, '$JS.API.STREAM.INFO.SB_HIST_other'), 'a stream of no namespace');
    // It reads the services bucket, it does not write it; it scales its buckets, it never deletes one.
    assert.ok(may(p.publish, '$JS.API.DIRECT.GET.KV_sb_services.$KV.sb_services.store.i'));
    assert.ok(may(p.publish, '$JS.API.STREAM.UPDATE.KV_sb_presence'));
    assert.ok(!may(p.publish, '$JS.API.STREAM.DELETE.KV_sb_presence'));
    assert.ok(!may(p.publish, '$JS.API.STREAM.PURGE.KV_sb_presence'));
  });

  test('a service: its own requests and replicas, the API for its own channels, its registry entries and its bucket', () => {
    const p = of('service:store');
    exactly(p.publish, ['serviceApiStore', 'servicesStore', 'storeBucket'], 'store publishes');
    exactly(p.subscribe, ['serviceStore'], 'store subscribes');
    assert.ok(may(p.subscribe, `${inboxPrefix('service-store')}.x`), 'its own inbox');
    assert.ok(!may(p.subscribe, '_INBOX.service-store2.x'), 'not a longer name');
    assert.equal(p.allowResponses, true);
    // Its replicas talk on its subjects; the gateways' requests it only answers.
    assert.ok(may(p.publish, `${s.serviceQueue('store')}.replica.abc`));
    for (const op of ['subscribe', 'publish', 'rpc'] as const)
      assert.ok(!may(p.publish, s.service('store', op)), op);
    // Its bucket: opened, made, read, listed; never deleted or purged.
    for (const call of [
      '$JS.API.STREAM.INFO.KV_sb_store',
      '$JS.API.STREAM.CREATE.KV_sb_store',
      '$JS.API.DIRECT.GET.KV_sb_store.$KV.sb_store.Thing.1',
      '$JS.API.CONSUMER.CREATE.KV_sb_store',
      '$JS.API.STREAM.INFO.KV_sb_services',
    ])
      assert.ok(may(p.publish, call), call);
    for (const call of [
      '$JS.API.STREAM.PURGE.KV_sb_store',
      '$JS.API.STREAM.UPDATE.KV_sb_services',
      '$JS.API.CONSUMER.CREATE.KV_sb_services',
      '$JS.API.DIRECT.GET.KV_sb_services.$KV.sb_services.chat.i',
    ])
      assert.ok(!may(p.publish, call), call);

    const jobs = of('service:jobs');
    assert.ok(may(jobs.publish, FAMILIES.jobsReplica));
    assert.ok(may(jobs.subscribe, FAMILIES.jobsReplica));
    assert.ok(!may(jobs.publish, FAMILIES.serviceApiStore));
  });

  test('the API caller: the whole server API and its own replies, nothing else', () => {
    const p = of('api');
    exactly(p.publish, ['api'], 'api publishes');
    exactly(p.subscribe, [], 'api subscribes');
    assert.ok(may(p.subscribe, `${inboxPrefix('api')}.x`));
    assert.equal(p.allowResponses, false);
  });

  test('names are encoded as the map encodes them; the prefix is the deployment’s', () => {
    const odd = natsPermissions('rt', ['my.ns'], 'service:my.ns', 'svc');
    assert.ok(may(odd.publish, new Subjects('rt').serviceApi('my.ns', 'publish')));
    assert.ok(may(odd.subscribe, new Subjects('rt').service('my.ns', 'rpc')));
    assert.ok(!may(odd.subscribe, s.service('my.ns', 'rpc')), 'not under another prefix');
    const gateway = natsPermissions('rt', ['my.ns'], 'gateway', 'gw');
    assert.ok(may(gateway.publish, `$JS.API.STREAM.INFO.${new Subjects('rt').historyStream('my.ns')}`));
    assert.equal(inboxPrefix('a.b'), '_INBOX.a_2Eb');
  });

  test('every pattern is a valid NATS subject: whole-token wildcards, `>` last', () => {
    for (const role of ['gateway', 'api', 'service:store', 'service:'] as NatsRole[]) {
      const p = of(role, 'user');
      for (const pattern of [...p.publish.allow, ...p.publish.deny, ...p.subscribe.allow]) {
        const tokens = pattern.split('.');
        assert.ok(
          tokens.every(
            (t, i) => t !== '' && (!/[*>]/.test(t) || t === '*' || (t === '>' && i === tokens.length - 1)),
          ),
          `${role}: ${pattern}`,
        );
      }
    }
  });

  test('unknown roles and services that would share a gateway bucket are refused', () => {
    assert.throws(() => roleNamespace('admin'), /unknown NATS role/);
    assert.equal(roleNamespace('service:'), '');
    assert.throws(() => of('service:presence'), /share a KV bucket/);
  });
});
