/**
 * Demo tokens: `POST /demo/token` on the client port, so that the demo page
 * works without a backend of your own. Only with `SWITCHBOARD_DEMO` on and an
 * HMAC secret configured; it then gives anyone a connection token, which is
 * why it is off by default and warns at start-up.
 *
 *   {"name": "Ada"}         → {"token", "user", "name", "ttl"} for a new random user
 *   {"refresh": "<token>"}  → a fresh token for the same user and name (for
 *                             centrifuge-js getToken when the old one expires)
 */

import { randomUUID } from 'node:crypto';
import { parseJsonBytes } from '@switchboard/protocol';
import { signHs256 } from './auth.js';
import type { Config } from './config.js';
import { verifyHs256 } from './hs256.js';
import type { KeyRing } from './keys.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { readBody } from './reply.js';
import { IpLimit } from './transport/admission.js';
import type { ClientAddress } from './transport/client-address.js';
import { originAllowed } from './transport/origin.js';
import type { HttpResponse, TemplatedApp } from './uws.js';

/** Seconds a demo token lives; the page refreshes it before then. */
export const DEMO_TOKEN_TTL = 600;
/** Largest request body accepted: a name or a token. */
const MAX_BODY = 4096;
const MAX_NAME = 32;
/** A page load asks once or twice; ten at once from one address is a script. */
const DEMO_BURST = 10;

type Answer = { status: string; body: Record<string, unknown> };

const fail = (status: string, message: string): Answer => ({ status, body: { error: message } });

/** 1 to 32 characters after trimming, no control characters. */
function validName(name: unknown): string | undefined {
  if (typeof name !== 'string') return undefined;
  const trimmed = name.trim();
  // eslint-disable-next-line no-control-regex
  if (trimmed.length < 1 || trimmed.length > MAX_NAME || /[\u0000-\u001f\u007f]/.test(trimmed))
    return undefined;
  return trimmed;
}

class DemoTokens {
  /** The gateway's HS256 secrets: tokens are signed with the first, refreshed when signed with any. */
  constructor(
    private readonly config: Config,
    private readonly hmac: KeyRing,
  ) {}

  async answer(request: unknown): Promise<Answer> {
    if (typeof request !== 'object' || request === null)
      return fail('400 Bad Request', 'expected a JSON object');
    const { name, refresh } = request as { name?: unknown; refresh?: unknown };
    if (refresh !== undefined) return this.refresh(refresh);
    const valid = validName(name);
    if (!valid) return fail('400 Bad Request', `name must be 1 to ${MAX_NAME} characters`);
    return this.mint(`demo-${randomUUID().slice(0, 8)}`, valid);
  }

  /** Demo tokens (meta.demo) that expired less than a TTL ago are renewed for the same user. */
  private async refresh(token: unknown): Promise<Answer> {
    if (typeof token !== 'string') return fail('400 Bad Request', 'refresh must be a token');
    // Checked as of a TTL ago: a token that expired since then still counts.
    const checked = verifyHs256(token, this.hmac.secrets, {}, Math.floor(Date.now() / 1000) - DEMO_TOKEN_TTL);
    if (!checked.ok) return fail('403 Forbidden', 'invalid or long expired token');
    const { payload } = checked;
    const demo = (payload.meta as { demo?: unknown } | undefined)?.demo === true;
    const name = validName((payload.info as { name?: unknown } | undefined)?.name);
    if (!demo || typeof payload.sub !== 'string' || !name) return fail('403 Forbidden', 'not a demo token');
    return this.mint(payload.sub, name);
  }

  private async mint(user: string, name: string): Promise<Answer> {
    const claims: Record<string, unknown> = { sub: user, info: { name }, meta: { demo: true } };
    // Tokens must pass the gateway's own audience and issuer checks.
    if (this.config.token.audience) claims.aud = this.config.token.audience;
    if (this.config.token.issuer) claims.iss = this.config.token.issuer;
    const token = await signHs256(claims, this.hmac.signing, DEMO_TOKEN_TTL);
    return { status: '200 OK', body: { token, user, name, ttl: DEMO_TOKEN_TTL } };
  }
}

function respond(res: HttpResponse, { status, body }: Answer): void {
  res.cork(() => {
    res
      .writeStatus(status)
      .writeHeader('content-type', 'application/json')
      .writeHeader('cache-control', 'no-store')
      .end(JSON.stringify(body));
  });
}

/** Mounts `POST /demo/token` when the demo is on and tokens can be signed; otherwise the path stays a 404. */
export function mountDemoTokens(
  app: TemplatedApp,
  config: Config,
  hmac: KeyRing,
  log: Logger,
  metrics: Metrics,
  address: ClientAddress,
): void {
  if (!config.demo) return;
  if (hmac.size === 0) {
    log.warn(
      'SWITCHBOARD_DEMO is on but SWITCHBOARD_TOKEN_HMAC_SECRET_KEY is empty: POST /demo/token stays off',
    );
    return;
  }
  log.warn(
    'SWITCHBOARD_DEMO is on: POST /demo/token gives a connection token to anyone who asks; never in production',
  );
  const tokens = new DemoTokens(config, hmac);
  const perIp = new IpLimit(address, metrics, 'demo_token', config.demoTokensPerIpPerSecond, DEMO_BURST);
  app.post('/demo/token', (res, req) => {
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    // A page on another site must not mint tokens through a visitor's browser.
    if (!originAllowed(req.getHeader('origin'), config.allowedOrigins))
      return respond(res, fail('403 Forbidden', 'origin not allowed'));
    if (!perIp.allows(res, req)) return respond(res, fail('429 Too Many Requests', 'too many requests'));
    readBody(res, MAX_BODY, (body) => {
      if (aborted) return;
      if (!body) return respond(res, fail('413 Payload Too Large', 'request body too large'));
      const request = parseJsonBytes(body, config.jsonMaxDepth);
      if (!request.ok) return respond(res, fail('400 Bad Request', request.reason));
      tokens.answer(request.value).then(
        (answer) => {
          if (!aborted) respond(res, answer);
        },
        (err) => {
          log.error({ err }, 'demo token failed');
          if (!aborted) respond(res, fail('500 Internal Server Error', 'internal error'));
        },
      );
    });
  });
}
