/**
 * Verifies JWT connection and subscription tokens: HS256 with shared secrets
 * (any of them, while one rotates), RS256/ES256 with a PEM public key or keys
 * from a JWKS URL. HS256 on node:crypto (hs256.ts), the others via jose; our
 * own claims in protocol.
 */

import { createPublicKey, type KeyObject } from 'node:crypto';
import {
  type ClaimLimits,
  type ClaimsCheck,
  type ConnectionClaims,
  connectionClaims,
  nestedDeeperThan,
  type SubscriptionClaims,
  subscriptionClaims,
} from '@switchboard/protocol';
import {
  createRemoteJWKSet,
  errors,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
  type RemoteJWKSetOptions,
  SignJWT,
} from 'jose';
import type { Config } from './config.js';
import { headerAlg, verifyHs256 } from './hs256.js';
import { KeyRing } from './keys.js';
import type { MaybePromise } from './maybe-promise.js';

export type TokenCheck<T> = { ok: true; value: T } | { ok: false; expired: boolean; reason: string };

type KeyResolver = (alg: string, kid: string | undefined) => Promise<KeyObject | JWTVerifyGetKey | undefined>;

export class TokenVerifier {
  private readonly algorithms: string[] = [];
  private readonly resolveKey: KeyResolver;
  private readonly options: { audience?: string; issuer?: string };
  private readonly limits: ClaimLimits;
  /** The HS256 secrets in use, the signing one first; a key file replaces them (keys.ts). */
  readonly hmac: KeyRing;

  /** `jwksOptions` tune the remote key set (cache age, refetch cooldown); jose's defaults otherwise. */
  constructor(settings: Config['token'], jwksOptions: RemoteJWKSetOptions = {}) {
    this.limits = { maxDepth: settings.maxDepth, maxSubs: settings.maxSubs };
    this.hmac = new KeyRing(settings.hmacSecrets);
    let publicKey: KeyObject | undefined;
    let publicAlg: string | undefined;
    if (settings.publicKey) {
      const key = createPublicKey(settings.publicKey);
      const curve = key.asymmetricKeyDetails?.namedCurve;
      publicAlg =
        key.asymmetricKeyType === 'rsa'
          ? 'RS256'
          : key.asymmetricKeyType === 'ec' && curve === 'prime256v1'
            ? 'ES256'
            : undefined;
      if (!publicAlg)
        throw new Error(
          `token public key must be RSA or EC P-256, got ${key.asymmetricKeyType}${curve ? ` ${curve}` : ''}`,
        );
      publicKey = key;
      this.algorithms.push(publicAlg);
    }
    const jwks = settings.jwksUrl ? createRemoteJWKSet(new URL(settings.jwksUrl), jwksOptions) : undefined;
    if (jwks) this.algorithms.push('RS256', 'ES256');
    // A token naming a key id comes from the JWKS when there is one, so that a
    // static key and a JWKS can serve side by side (e.g. while migrating).
    this.resolveKey = async (alg, kid) => {
      if (kid && jwks) return jwks;
      if (alg === publicAlg && publicKey) return publicKey;
      return jwks;
    };
    this.options = {};
    if (settings.audience) this.options.audience = settings.audience;
    if (settings.issuer) this.options.issuer = settings.issuer;
  }

  /** Whether any key is configured; without one every token is refused. */
  get enabled(): boolean {
    return this.hmac.size > 0 || this.algorithms.length > 0;
  }

  /** Synchronous for HS256 (node:crypto), a promise for the algorithms jose verifies. */
  connection(token: string): MaybePromise<TokenCheck<ConnectionClaims>> {
    return this.verify(token, connectionClaims);
  }

  subscription(token: string): MaybePromise<TokenCheck<SubscriptionClaims>> {
    return this.verify(token, subscriptionClaims);
  }

  private verify<T>(
    token: string,
    claims: (payload: JWTPayload, now: number, limits: ClaimLimits) => ClaimsCheck<T>,
  ): MaybePromise<TokenCheck<T>> {
    if (!this.enabled) return { ok: false, expired: false, reason: 'no token key configured' };
    // Claims reach history, presence and services: the same nesting bound as client data.
    const { maxDepth } = this.limits;
    const bounded = (payload: JWTPayload, now: number): TokenCheck<T> =>
      nestedDeeperThan(payload, maxDepth)
        ? { ok: false, expired: false, reason: `claims nested deeper than ${maxDepth}` }
        : claims(payload, now, this.limits);
    // HS256 never reaches jose: without a secret its algorithm is not among jose's.
    if (this.hmac.size > 0 && headerAlg(token) === 'HS256') {
      const now = Math.floor(Date.now() / 1000);
      const checked = verifyHs256(token, this.hmac.secrets, this.options, now);
      if (!checked.ok) return checked;
      this.hmac.used(checked.secret);
      return bounded(checked.payload, now);
    }
    return this.verifyWithJose(token, bounded);
  }

  private async verifyWithJose<T>(
    token: string,
    bounded: (payload: JWTPayload, now: number) => TokenCheck<T>,
  ): Promise<TokenCheck<T>> {
    try {
      const { payload } = await jwtVerify(
        token,
        async (header, tok) => {
          const key = await this.resolveKey(header.alg, header.kid);
          if (!key) throw new errors.JOSENotSupported(`no key for alg ${header.alg}`);
          return typeof key === 'function' ? key(header, tok) : key;
        },
        { ...this.options, algorithms: this.algorithms },
      );
      return bounded(payload, Math.floor(Date.now() / 1000));
    } catch (err) {
      if (err instanceof errors.JWTExpired) return { ok: false, expired: true, reason: 'token expired' };
      return { ok: false, expired: false, reason: (err as Error).message };
    }
  }
}

/**
 * Signs an HS256 token with `claims`, issued now and expiring `ttl` seconds
 * from now (0: never). For development tools and the demo, which mint tokens
 * with the gateway's own signing secret (the first); production tokens come
 * from your backend.
 */
export function signHs256(claims: JWTPayload, secret: string, ttl: number): Promise<string> {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt();
  if (ttl > 0) jwt.setExpirationTime(Math.floor(Date.now() / 1000) + ttl);
  return jwt.sign(new TextEncoder().encode(secret));
}
