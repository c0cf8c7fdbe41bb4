/**
 * NATS users with least privilege, written from the NATS map (subject.ts):
 * what each role may publish and subscribe to, as nats-server's permission
 * lists take them. One table for the CLI that writes nats-server's
 * `authorization` block, the tests and README.
 *
 * - `gateway`: live traffic and history appends of every namespace, the
 *   control and survey subjects, requests to every service, the server API
 *   (whole and per namespace) as the one answering it, its history streams
 *   and KV buckets through the JetStream API, and nothing else of JetStream.
 * - `service:<ns>`: the requests for its own namespace (`svc.<ns>.>`, where
 *   it may also talk to its own replicas but may not forge the gateways'
 *   subscribe, publish and rpc requests), the server API limited to its
 *   namespace's channels (`svcapi.<ns>.*`), its entries in the services
 *   bucket and a KV bucket of its own.
 * - `api`: the whole server API on the bus, as a caller.
 *
 * Every role receives its request replies on an inbox of its own user
 * (`inboxPrefix`), so that no user reads another's replies. Monitoring needs
 * no NATS user: gateways export metrics over HTTP, and nats-server's
 * monitoring port (which prometheus-nats-exporter reads) is HTTP too.
 */

import { encodeToken, Subjects } from './subject.js';
import { SERVICE_OPERATIONS } from './service.js';

export type NatsRole = 'gateway' | 'api' | `service:${string}`;

/** Subjects (NATS wildcards allowed) a user may use, and exceptions among them. */
export interface SubjectRules {
  allow: string[];
  deny: string[];
}

export interface NatsPermissions {
  publish: SubjectRules;
  subscribe: SubjectRules;
  /** May answer the requests it receives (publish once to each one's reply subject). */
  allowResponses: boolean;
}

/** Where a user's request replies arrive (nats.js `inboxPrefix`): an inbox of its own. */
export function inboxPrefix(user: string): string {
  return `_INBOX.${encodeToken(user)}`;
}

/** The namespace of a `service:<ns>` role, undefined for the other roles; throws on a role that is none. */
export function roleNamespace(role: string): string | undefined {
  if (role === 'gateway' || role === 'api') return undefined;
  if (role.startsWith('service:')) return role.slice('service:'.length);
  throw new Error(`unknown NATS role ${JSON.stringify(role)} (gateway, api, service:<namespace>)`);
}

const API = '$JS.API';

/** A stream's own JetStream API calls (`STREAM.INFO.<stream>`, ...). */
const streamCalls = (stream: string, calls: string[]) =>
  calls.map((call) => `${API}.STREAM.${call}.${stream}`);

/** Reading a stream through consumers of its own: create (ephemeral or named), info, fetch, delete. */
const consumers = (stream: string) => [
  `${API}.CONSUMER.CREATE.${stream}`,
  `${API}.CONSUMER.CREATE.${stream}.>`,
  `${API}.CONSUMER.INFO.${stream}.*`,
  `${API}.CONSUMER.MSG.NEXT.${stream}.*`,
  `${API}.CONSUMER.DELETE.${stream}.*`,
];

/** Opening (or making) a KV bucket and reading it: its entries, and its keys through a consumer. */
const kvRead = (bucket: string) => [
  ...streamCalls(`KV_${bucket}`, ['INFO', 'CREATE', 'MSG.GET']),
  `${API}.DIRECT.GET.KV_${bucket}`,
  `${API}.DIRECT.GET.KV_${bucket}.>`,
  ...consumers(`KV_${bucket}`),
];

/** What a role may do; `namespaces` are every namespace of the deployment (their history streams). */
export function natsPermissions(
  prefix: string,
  namespaces: readonly string[],
  role: NatsRole,
  user: string,
): NatsPermissions {
  const s = new Subjects(prefix);
  const inbox = `${inboxPrefix(user)}.>`;
  const ns = roleNamespace(role);
  if (ns !== undefined) {
    const own = `${prefix}.svc.${encodeToken(ns)}`;
    const registry = s.bucket('services');
    const bucket = s.serviceBucket(ns);
    return {
      publish: {
        allow: [
          `${own}.>`,
          `${prefix}.svcapi.${encodeToken(ns)}.*`,
          `${API}.INFO`,
          ...streamCalls(`KV_${registry}`, ['INFO', 'CREATE']),
          `$KV.${registry}.${encodeToken(ns)}.*`,
          ...kvRead(bucket),
          `$KV.${bucket}.>`,
        ],
        // The gateways' requests: a service answers them, it does not make them up.
        deny: SERVICE_OPERATIONS.map((op) => s.service(ns, op)),
      },
      subscribe: { allow: [`${own}.>`, inbox], deny: [] },
      allowResponses: true,
    };
  }
  if (role === 'api') {
    return {
      publish: { allow: [`${prefix}.api.*`], deny: [] },
      subscribe: { allow: [inbox], deny: [] },
      allowResponses: false,
    };
  }
  const buckets = (
    ['presence', 'gateways', 'services', 'leases', 'hooks', 'cache', 'apps', 'idempotency'] as const
  ).map((kind) => s.bucket(kind));
  return {
    publish: {
      allow: [
        `${prefix}.live.>`,
        `${prefix}.hist.>`,
        s.control,
        s.survey,
        ...SERVICE_OPERATIONS.map((op) => `${prefix}.svc.*.${op}`),
        `${prefix}.emu.*`,
        `${API}.INFO`,
        ...namespaces.flatMap((name) => {
          const stream = s.historyStream(name);
          return [
            ...streamCalls(stream, ['INFO', 'CREATE', 'UPDATE', 'MSG.GET', 'PURGE']),
            ...consumers(stream),
          ];
        }),
        // Its buckets, scaled up with the cluster; it writes presence, itself, the occupancy
        // decider's lease and what it announced, cache channels' last events, Pusher apps, the claimed
        // idempotency keys, and only reads services.
        ...buckets.flatMap((bucket) => [...kvRead(bucket), `${API}.STREAM.UPDATE.KV_${bucket}`]),
        `$KV.${s.bucket('presence')}.>`,
        `$KV.${s.bucket('gateways')}.>`,
        `$KV.${s.bucket('leases')}.>`,
        `$KV.${s.bucket('hooks')}.>`,
        `$KV.${s.bucket('cache')}.>`,
        `$KV.${s.bucket('apps')}.>`,
        `$KV.${s.bucket('idempotency')}.>`,
        // Webhook jobs: queued by any gateway, taken (acknowledged) by one.
        s.hooks('>'),
        ...streamCalls(s.hooksStream, ['INFO', 'CREATE']),
        ...consumers(s.hooksStream),
        `$JS.ACK.${s.hooksStream}.>`,
      ],
      deny: [],
    },
    subscribe: {
      allow: [
        `${prefix}.live.>`,
        s.control,
        s.survey,
        `${prefix}.api.*`,
        `${prefix}.svcapi.*.*`,
        `${prefix}.emu.*`,
        s.leaderElected,
        inbox,
      ],
      deny: [],
    },
    allowResponses: true,
  };
}
