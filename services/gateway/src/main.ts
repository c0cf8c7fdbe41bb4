#!/usr/bin/env node
/**
 * Starts one gateway: client port (WebSocket), internal port (health,
 * metrics, HTTP API), gRPC API. SIGTERM/SIGINT drain (see drain.ts) and exit.
 */

import { namespaceOf, Subjects } from '@switchboard/protocol';
import { type Bus, LocalBus, NatsBus } from '@switchboard/sdk';
import { serveApiOnBus } from './api/bus.js';
import { startGrpcServer } from './api/grpc.js';
import { TokenVerifier } from './auth.js';
import type { Broker } from './broker/broker.js';
import { MemoryBroker } from './broker/memory.js';
import { NatsBroker } from './broker/nats.js';
import { type Config, ConfigError, internalDepth, loadConfig } from './config.js';
import { installCrashPolicy } from './crash.js';
import { mountDemoTokens } from './demo.js';
import { disconnectClients, exitAfter, watchBrokerOutage } from './drain.js';
import { type EmbeddedService, startEmbeddedServices } from './embedded.js';
import { MemoryHistory } from './history.js';
import { Hub } from './hub.js';
import { Decider } from './hooks/decider.js';
import type { Transition } from './hooks/occupancy.js';
import { type HookQueue, JetStreamHookQueue, MemoryHookQueue, Webhooks } from './hooks/webhooks.js';
import { createInternalApp } from './internal.js';
import { KeyRing, trackKeys } from './keys.js';
import { createLogger, type Logger } from './log.js';
import { Metrics } from './metrics.js';
import { type Connection, Node } from './node.js';
import { Backend, LocalHandler } from './proxy.js';
import { mountPusherApi } from './pusher/api.js';
import { AppCatalog, type AppStore, KvAppStore, MemoryAppStore } from './pusher/app-store.js';
import { Apps, pusherName } from './pusher/apps.js';
import { pusherEdge } from './pusher/edge.js';
import { mountPusher } from './pusher/websocket.js';
import { MemoryRegistry } from './registry/memory.js';
import { NatsRegistry } from './registry/nats.js';
import type { Registry } from './registry/registry.js';
import { centrifugoEdge, startSessionTicker } from './session.js';
import { protobufEdge } from './protobuf-session.js';
import { mountStatic } from './static.js';
import { Admission } from './transport/admission.js';
import { ClientAddress } from './transport/client-address.js';
import { Emulation, mountEmulation } from './transport/emulation.js';
import { mountStreams } from './transport/stream.js';
import { mountUni } from './transport/uni.js';
import { startUniGrpc } from './transport/uni-grpc.js';
import { ClientListener } from './transport/listener.js';
import { mountWebSocket } from './transport/websocket.js';
import { describeUwsBuild, libc, listenExclusive, uws, uwsBuild } from './uws.js';

/** Seconds of inactivity after which a channel's offsets and epoch are forgotten in memory. */
const HISTORY_META_TTL = 86400;

/** The in-process backend of embedded mode: an `echo` RPC, and `send` messages echoed back as message pushes. */
function embeddedHandler(node: () => Node): LocalHandler {
  return new LocalHandler()
    .onRpc('echo', (_ctx, data) => data)
    .onMessage((ctx, data) => node().hub.client(ctx.client)?.message(data));
}

/** Embedded: everything in memory and in-process. Cluster: NATS, one connection shared by all three. */
function infrastructure(
  config: Config,
  log: Logger,
  metrics: Metrics,
): { broker: Broker; registry: Registry; bus: Bus; hookQueue: HookQueue; appStore: AppStore } {
  if (config.broker === 'memory') {
    metrics.brokerConnected.set(1);
    return {
      broker: new MemoryBroker(new MemoryHistory(HISTORY_META_TTL)),
      registry: new MemoryRegistry(),
      bus: new LocalBus(),
      hookQueue: new MemoryHookQueue(),
      appStore: new MemoryAppStore(),
    };
  }
  const broker = new NatsBroker(
    config.nats,
    config.namespaces,
    config.nodeId,
    { maxDepth: internalDepth(config), patternMaxLength: 2 * config.channelMaxLength },
    log,
    metrics,
    config.publishTimeout,
  );
  const registry = new NatsRegistry(
    () => broker.connection,
    broker.subjects,
    config.nodeId,
    config.presenceTtl,
    log,
    metrics,
    {
      maxDepth: internalDepth(config),
      replicas: config.nats.replicas,
      hooks:
        config.pusher.apps.length > 0 ||
        config.pusher.store ||
        [...config.namespaces.values()].some((ns) => ns.webhook_url !== '' || ns.service_hooks),
    },
  );
  // The connection exists once the broker has started; the bus is first used after that.
  let bus: NatsBus | undefined;
  const natsBus = () => (bus ??= new NatsBus(broker.connection));
  const parts = {
    nc: () => broker.connection,
    subjects: broker.subjects,
    replicas: config.nats.replicas,
    maxDepth: internalDepth(config),
    log,
    metrics,
  };
  const hookQueue = new JetStreamHookQueue(parts);
  const appStore = new KvAppStore(parts);
  return {
    broker,
    registry,
    hookQueue,
    appStore,
    bus: {
      request: (subject, data, timeoutMs) => natsBus().request(subject, data, timeoutMs),
      serve: (subject, queue, handler) => natsBus().serve(subject, queue, handler),
      flush: () => natsBus().flush(),
    },
  };
}

export async function startGateway(config: Config) {
  const log = createLogger(config.logLevel, config.nodeId);
  log.info(
    { nodejs: process.version, libc: libc(), uws: uwsBuild },
    `uWebSockets.js: ${describeUwsBuild()} on Node ${process.version}`,
  );
  const metrics = new Metrics();
  const listener = new ClientListener(config.host, config.clientPort, config.tls, log, metrics);
  const apps = new Apps(config.pusher.apps);
  // The Pusher edge: with apps in the config, or apps that may come from the app store.
  const pusherOn = apps.size > 0 || config.pusher.store;
  const edges = pusherOn ? [centrifugoEdge, protobufEdge, pusherEdge] : [centrifugoEdge, protobufEdge];
  const hub = new Hub<Connection>(listener.topics, metrics, edges, config.pushCoalesceWindow);
  const tokens = new TokenVerifier(config.token);
  const apiKeys = new KeyRing(config.apiKeys);
  const stopKeyFiles = [
    trackKeys('api_key', apiKeys, config.apiKeyFile, log, metrics),
    trackKeys('token_hmac', tokens.hmac, config.token.hmacSecretFile, log, metrics),
  ];
  if (!tokens.enabled && !config.allowAnonymous) {
    log.warn('no token key configured and anonymous access off: every connection will be refused');
  }
  if (apiKeys.size === 0) log.warn('no server API key configured: the server API refuses every call');
  const { broker, registry, bus, hookQueue, appStore } = infrastructure(config, log, metrics);
  const subjects = new Subjects(config.nats.prefix);
  const node: Node = new Node({
    config,
    log,
    metrics,
    hub,
    broker,
    registry,
    handler: new Backend(
      bus,
      subjects,
      config.namespaces,
      embeddedHandler(() => node),
      config.serviceTimeout,
      metrics,
      internalDepth(config),
    ),
    tokens,
    apiKeys,
  });
  // Health and readiness answer first: /readyz says 503 until every listener is up and the broker connected.
  const internal = await listenExclusive(
    createInternalApp(node, (app) => {
      if (pusherOn) mountPusherApi(app, node, apps);
    }),
    config.host,
    config.internalPort,
  );
  await node.start();
  const stopBusApi = serveApiOnBus(bus, subjects, node);
  if (config.pusher.store) {
    node.pusherApps = new AppCatalog(apps, appStore, config, log, metrics);
    await node.pusherApps.start();
  }
  // Centrifugo namespaces with occupancy hooks; Pusher apps' namespaces have their own rules.
  const hooked = new Set(
    [...config.namespaces.values()]
      .filter((ns) => ns.webhook_url !== '' || ns.service_hooks)
      .map((ns) => ns.name),
  );
  const ofApp = (channel: string) => config.pusher.namespaces.has(namespaceOf(channel));
  // Webhooks: when an app or a namespace has any, or an app may get some (a cluster otherwise needs no work queue).
  const webhooks =
    config.pusher.store || hooked.size > 0 || config.pusher.apps.some((a) => a.webhooks.length > 0)
      ? new Webhooks(
          apps,
          hookQueue,
          {
            url: (namespace) => config.namespaces.get(namespace)?.webhook_url ?? '',
            toService: (namespace) => config.namespaces.get(namespace)?.service_hooks === true,
            deliver: (namespace, event) => node.handler.occupancy(namespace, event),
            signingKey: () => apiKeys.signing,
          },
          log,
          metrics,
        )
      : undefined;
  await webhooks?.start();
  const decider =
    pusherOn || hooked.size > 0
      ? new Decider({
          registry,
          broker,
          log,
          follows: (namespace) => config.pusher.namespaces.has(namespace) || hooked.has(namespace),
          // A Centrifugo namespace's members are its users; an app's only on presence- channels.
          isPresence: (channel) => !ofApp(channel) || pusherName(channel).startsWith('presence-'),
          announcesMembers: ofApp,
          debounceMs: config.occupancyDebounce,
          ...(webhooks ? { onTransition: (t: Transition) => webhooks.transition(t) } : {}),
        })
      : undefined;
  decider?.start();
  const emulation = new Emulation(node, bus, subjects);
  const stopEmulation = emulation.serve();
  const services =
    config.broker === 'memory'
      ? await startEmbeddedServices(config.embeddedServices as EmbeddedService[], bus, config.nats.prefix)
      : undefined;
  const address = new ClientAddress(config.trustedProxies);
  const admission = new Admission(node, address);
  await listener.listen((app) => {
    mountWebSocket(app, node, admission);
    if (pusherOn) mountPusher(app, node, admission, apps, webhooks);
    mountStreams(app, node, admission, emulation);
    mountEmulation(app, node, emulation, address);
    mountUni(app, node, admission);
    mountStatic(app);
    mountDemoTokens(app, config, tokens.hmac, log, metrics, address);
    app.any('/*', (res) => {
      res.writeStatus('404 Not Found').end('not found\n');
    });
  });
  const grpc = config.grpcPort > 0 ? await startGrpcServer(node, config.host, config.grpcPort) : undefined;
  const uniGrpc = config.uniTransports.includes('grpc')
    ? await startUniGrpc(node, admission, config.host, config.uniGrpcPort)
    : undefined;
  const ticker = startSessionTicker(node);
  const stopOutageWatch = watchBrokerOutage(node, config.brokerOutageDisconnect);
  node.started = true;
  log.info(
    {
      websocket: `${listener.scheme.ws}://localhost:${config.clientPort}/connection/websocket`,
      sse: `${listener.scheme.http}://localhost:${config.clientPort}/connection/sse`,
      http_stream: `${listener.scheme.http}://localhost:${config.clientPort}/connection/http_stream`,
      page: `${listener.scheme.http}://localhost:${config.clientPort}/`,
      internal: `http://localhost:${config.internalPort}`,
      grpc: grpc ? `localhost:${config.grpcPort}` : 'off',
      uni_grpc: uniGrpc ? `localhost:${config.uniGrpcPort}` : 'off',
      pusher: pusherOn ? `${listener.scheme.ws}://localhost:${config.clientPort}/app/<key>` : 'off',
    },
    'switchboard gateway ready',
  );
  return {
    node,
    stop: async () => {
      await disconnectClients(node, listener, config.shutdownTimeout * 1000);
      clearInterval(ticker);
      stopOutageWatch();
      for (const stop of stopKeyFiles) stop();
      await services?.stop();
      await decider?.stop();
      await hookQueue.close();
      await node.pusherApps?.close();
      stopBusApi();
      stopEmulation();
      await grpc?.close();
      await uniGrpc?.close();
      await node.registry.close();
      // Drains NATS: pending publishes are flushed, subscriptions ended, then it closes.
      await node.broker.close();
      uws.us_listen_socket_close(internal);
    },
  };
}

async function main() {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`switchboard: configuration error: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const gateway = await startGateway(config);
  let stopping = false;
  const { log } = gateway.node;
  const stop = (why: string, code = 0) => {
    if (stopping) return;
    stopping = true;
    log.info({ why, timeout: config.shutdownTimeout }, 'shutting down');
    exitAfter(
      () =>
        gateway.stop().then(
          () => log.info('shutdown complete'),
          (err) => {
            log.error({ err }, 'shutdown failed');
            throw err;
          },
        ),
      config.shutdownTimeout * 1000,
      () => log.error('shutdown outlasted SWITCHBOARD_SHUTDOWN_TIMEOUT: exiting now'),
      code,
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  installCrashPolicy(log, gateway.node.metrics, (code) => stop('uncaught exception', code));
}

main().catch((err) => {
  process.stderr.write(`switchboard: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
