/**
 * The client port: a uWS app carrying every client route, plain or, with a
 * certificate configured (`tls_cert_file`), TLS (https://, wss://). The
 * certificate files are watched; when they change, a new app with the new
 * certificate listens beside the old one (SO_REUSEPORT) before the old
 * listener closes, so connections open on the old one carry on and new ones
 * get the new certificate. Topic fan-out goes to every app.
 */

import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { TlsSettings } from '../config.js';
import { watchChanges } from '../file-watch.js';
import type { Topics } from '../hub.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { listenShared, type TemplatedApp, type us_listen_socket, uws } from '../uws.js';

/** How often the certificate files are checked besides the watch of their directories. */
const WATCH_INTERVAL_MS = 2000;
/** A certificate and its key are rarely written at the same instant: the reload waits for both. */
const BOTH_FILES_MS = 1000;

/** Fails when host:port is taken (uWS itself would share it silently under SO_REUSEPORT). */
async function ensureFree(host: string, port: number): Promise<void> {
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', (err) =>
      reject(new Error(`cannot listen on ${host}:${port} (in use?)`, { cause: err })),
    );
    probe.listen(port, host, () => probe.close(() => resolve()));
  });
}

export class ClientListener {
  private readonly apps: TemplatedApp[] = [];
  private socket: us_listen_socket | undefined;
  private mount: ((app: TemplatedApp) => void) | undefined;
  private unwatch: (() => void)[] = [];
  private reloading = false;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly tls: TlsSettings | undefined,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {}

  get scheme(): { http: string; ws: string } {
    return this.tls ? { http: 'https', ws: 'wss' } : { http: 'http', ws: 'ws' };
  }

  /** Publishes reach the subscribers of every app (one per certificate the gateway has served). */
  readonly topics: Topics = {
    publish: (topic, frame) => {
      for (const app of this.apps) app.publish(topic, frame, typeof frame !== 'string', false);
    },
    numSubscribers: (topic) => this.apps.reduce((n, app) => n + app.numSubscribers(topic), 0),
  };

  /** Builds the first app with `mount` (the client routes) and listens; with TLS, watches the files. */
  async listen(mount: (app: TemplatedApp) => void): Promise<void> {
    this.mount = mount;
    await ensureFree(this.host, this.port);
    this.socket = await listenShared(this.build(), this.host, this.port);
    if (!this.tls) return;
    this.unwatch = [this.tls.certFile, this.tls.keyFile, this.tls.caFile]
      .filter((f) => f !== '')
      .map((file) =>
        watchChanges(
          file,
          () => this.changed(),
          (err) =>
            this.log.warn({ err, file }, 'cannot watch the directory of a TLS file: checking it every 2 s'),
          WATCH_INTERVAL_MS,
        ),
      );
  }

  private build(): TemplatedApp {
    const tls = this.tls;
    const app = tls
      ? uws.SSLApp({
          cert_file_name: tls.certFile,
          key_file_name: tls.keyFile,
          ...(tls.passphrase ? { passphrase: tls.passphrase } : {}),
          ...(tls.caFile ? { ca_file_name: tls.caFile } : {}),
        })
      : uws.App();
    if (tls) this.noteCertificate(tls.certFile);
    this.mount!(app);
    this.apps.push(app);
    return app;
  }

  /** The certificate's end of validity, as a metric (an alert can watch it). */
  private noteCertificate(file: string): void {
    const cert = new X509Certificate(readFileSync(file));
    this.metrics.tlsCertificateExpiry.set(Date.parse(cert.validTo) / 1000);
  }

  private changed(): void {
    if (this.reloading || !this.socket) return;
    this.reloading = true;
    setTimeout(() => void this.reload(), BOTH_FILES_MS).unref();
  }

  private async reload(): Promise<void> {
    try {
      const old = this.socket!;
      let app: TemplatedApp;
      try {
        app = this.build();
      } catch (err) {
        // uWS refuses a certificate and key that do not load or do not match: keep serving the old.
        this.metrics.tlsReloads.inc({ outcome: 'failed' });
        this.log.error(
          { err, cert: this.tls!.certFile },
          'TLS certificate reload failed: keeping the current one',
        );
        return;
      }
      try {
        this.socket = await listenShared(app, this.host, this.port);
      } catch (err) {
        this.apps.pop();
        throw err;
      }
      uws.us_listen_socket_close(old);
      this.metrics.tlsReloads.inc({ outcome: 'reloaded' });
      this.log.info({ cert: this.tls!.certFile }, 'TLS certificate reloaded');
    } catch (err) {
      this.metrics.tlsReloads.inc({ outcome: 'failed' });
      this.log.error({ err }, 'TLS certificate reload failed: keeping the current one');
    } finally {
      this.reloading = false;
    }
  }

  /** Stops accepting connections (those open stay) and watching the files. */
  close(): void {
    for (const stop of this.unwatch) stop();
    this.unwatch = [];
    if (this.socket) uws.us_listen_socket_close(this.socket);
    this.socket = undefined;
  }
}
