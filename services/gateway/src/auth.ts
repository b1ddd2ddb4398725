import { createRemoteJWKSet, customFetch, errors as joseErrors, jwtVerify, type FetchImplementation, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { ChatError, UserIdSchema, UsernameSchema } from '@chat/contracts';
import type { Config } from '@chat/platform';

/** The authenticated caller, as the token's claims describe them. */
export interface Principal {
  id: string;
  username: string;
  displayName: string | null;
  avatarUrl: string | null;
  expiresAt: number;
}

const CLOCK_SKEW_S = 30;
const ASYMMETRIC_ALGS = ['RS256', 'ES256', 'EdDSA'];

export type TokenVerifier = (token: string) => Promise<Principal>;

/**
 * Verifies with HS256 and the shared secret, or with a JWKS (RS256, ES256,
 * EdDSA) when JWT_JWKS_URL is set: the algorithm list is pinned, so `none`
 * and HS/RS confusion fail. `exp` is required; `nbf`, `iss` and `aud` are
 * checked with 30 s of leeway.
 */
export function createTokenVerifier(
  config: Pick<Config, 'JWT_SECRET' | 'JWT_JWKS_URL' | 'JWT_ISSUER' | 'JWT_AUDIENCE' | 'JWT_JWKS_COOLDOWN_MS'>,
): TokenVerifier {
  // The key set is cached for 10 minutes; an unknown `kid` refetches it at most
  // once per cooldown, so a flood of forged kids cannot hammer the IdP.
  const key: Uint8Array | JWTVerifyGetKey = config.JWT_JWKS_URL
    ? createRemoteJWKSet(new URL(config.JWT_JWKS_URL), {
        cooldownDuration: config.JWT_JWKS_COOLDOWN_MS,
        cacheMaxAge: 10 * 60_000,
        timeoutDuration: 3000,
        [customFetch]: guardedJwksFetch(config.JWT_JWKS_COOLDOWN_MS),
      })
    : new TextEncoder().encode(config.JWT_SECRET);
  const algorithms = config.JWT_JWKS_URL ? ASYMMETRIC_ALGS : ['HS256'];
  const options = {
    algorithms,
    requiredClaims: ['exp', 'sub'],
    clockTolerance: CLOCK_SKEW_S,
    ...(config.JWT_ISSUER ? { issuer: config.JWT_ISSUER } : {}),
    ...(config.JWT_AUDIENCE ? { audience: config.JWT_AUDIENCE } : {}),
  };
  const verify: TokenVerifier = async (token) => {
    let payload: JWTPayload;
    try {
      ({ payload } =
        typeof key === 'function' ? await jwtVerify(token, key, options) : await jwtVerify(token, key, options));
    } catch (err) {
      // The key set could not be had: the caller is not at fault, and no key was tried.
      if (isJwksUnavailable(err)) throw new ChatError('SERVICE_UNAVAILABLE', 'the token key set (JWT_JWKS_URL) could not be fetched', { dependency: 'jwks' });
      throw new ChatError('UNAUTHORIZED', describeJoseError(err));
    }
    return principalFromClaims(payload);
  };
  // A shared secret has no key to rotate out from under a token, so a verified
  // token stays verified until it expires: steady callers skip the HMAC (an
  // async WebCrypto job). Key sets rotate; those tokens are verified each time.
  return config.JWT_JWKS_URL ? verify : cachedVerifier(verify);
}

const VERIFIED_CACHE_SIZE = 10_000;
const VERIFIED_TTL_MS = 60_000;

function cachedVerifier(verify: TokenVerifier): TokenVerifier {
  const verified = new Map<string, { principal: Principal; until: number }>();
  return async (token) => {
    const now = Date.now();
    const hit = verified.get(token);
    if (hit && now < hit.until) return hit.principal;
    verified.delete(token);
    const principal = await verify(token);
    // Never past the token's own expiry (the leeway included), whatever the TTL.
    verified.set(token, { principal, until: Math.min(now + VERIFIED_TTL_MS, principal.expiresAt + CLOCK_SKEW_S * 1000) });
    if (verified.size > VERIFIED_CACHE_SIZE) verified.delete(verified.keys().next().value!);
    return principal;
  };
}

/** The key set could not be had: the IdP is down, slow, or answering something that is not a key set. */
class JwksUnavailable extends Error {
  override name = 'JwksUnavailable';
}

/**
 * jose's fetch, made strict about failures: a non-200 or non-JSON answer is
 * the IdP failing (503 to the caller, who did nothing wrong), not a bad token.
 * jose's own cooldown starts only after a successful fetch, so after a failed
 * one this holds further fetches back for the cooldown too: forged kids sent
 * while the IdP struggles must not turn into one fetch each.
 */
function guardedJwksFetch(cooldownMs: number): FetchImplementation {
  let failedAt = Number.NEGATIVE_INFINITY;
  return async (url, init) => {
    if (Date.now() - failedAt < cooldownMs) throw new JwksUnavailable('the key set failed moments ago; not asked again until the cooldown passes');
    try {
      const res = await fetch(url, init);
      if (res.status !== 200) throw new JwksUnavailable(`the key set answered ${res.status}`);
      const text = await res.text();
      JSON.parse(text);
      return new Response(text, { status: 200, headers: { 'content-type': 'application/json' } });
    } catch (err) {
      failedAt = Date.now();
      if (err instanceof Error && err.name === 'TimeoutError') throw err; // jose maps it to JWKSTimeout
      throw err instanceof JwksUnavailable ? err : new JwksUnavailable(`the key set could not be fetched: ${(err as Error).message}`);
    }
  };
}

function isJwksUnavailable(err: unknown): boolean {
  return err instanceof JwksUnavailable || err instanceof joseErrors.JWKSTimeout || err instanceof joseErrors.JWKSInvalid;
}

function describeJoseError(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'token expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `token claim rejected: ${err.claim}`;
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'token algorithm not allowed';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'token signature invalid';
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'token signed by an unknown key';
  return 'invalid token';
}

export function principalFromClaims(claims: JWTPayload): Principal {
  const id = UserIdSchema.safeParse(claims.sub);
  const username = UsernameSchema.safeParse(claims.username ?? claims.preferred_username);
  if (!id.success) throw new ChatError('UNAUTHORIZED', 'token has no valid sub claim');
  if (!username.success) throw new ChatError('UNAUTHORIZED', 'token has no valid username claim');
  const str = (v: unknown, max: number) => (typeof v === 'string' && v.length > 0 ? v.slice(0, max) : null);
  return {
    id: id.data,
    username: username.data,
    displayName: str(claims.name, 256),
    avatarUrl: str(claims.picture, 2048),
    expiresAt: (claims.exp ?? 0) * 1000,
  };
}

/** The token of a request: `Authorization: Bearer <jwt>`. */
export function bearerToken(header: string | undefined): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return m?.[1];
}
