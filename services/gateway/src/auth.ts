import {
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  errors as joseErrors,
  jwksCache,
  jwtVerify,
  type FetchImplementation,
  type ExportedJWKSCache,
  type JWKSCacheInput,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import { ChatError, UserIdSchema, UsernameSchema, unstorableText } from '@chat/contracts';
import { COMMITTED_JWT_SECRETS, type Config } from '@chat/platform';

/** The authenticated caller, as the token's claims describe them. */
export interface Principal {
  id: string;
  username: string;
  displayName: string | null;
  avatarUrl: string | null;
  expiresAt: number;
}

const CLOCK_SKEW_S = 30;
/** A fetched key set is used without asking the IdP again for this long. */
const JWKS_FRESH_MS = 10 * 60_000;
const ASYMMETRIC_ALGS = ['RS256', 'ES256', 'EdDSA'];

export type TokenVerifier = (token: string) => Promise<Principal>;

/**
 * Verifies with HS256 and the shared secret, or with a JWKS (RS256, ES256,
 * EdDSA) when JWT_JWKS_URL is set: the algorithm list is pinned, so `none`
 * and HS/RS confusion fail. `exp` is required; `nbf`, `iss` and `aud` are
 * checked with 30 s of leeway.
 */
export function createTokenVerifier(
  config: Pick<Config, 'JWT_SECRET' | 'JWT_JWKS_URL' | 'JWT_ISSUER' | 'JWT_AUDIENCE' | 'JWT_JWKS_COOLDOWN_MS' | 'JWT_JWKS_MAX_STALE_S'>,
): TokenVerifier {
  const key: Uint8Array | JWTVerifyGetKey = config.JWT_JWKS_URL
    ? remoteKeySet(new URL(config.JWT_JWKS_URL), config.JWT_JWKS_COOLDOWN_MS, config.JWT_JWKS_MAX_STALE_S * 1000)
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

/**
 * Said at start when tokens are verified with a secret committed to the
 * repository (production refuses those; development accepts them so that
 * `docker compose up` and `npm start` work at once): anyone who has read the
 * repository can sign a token for any user of this gateway.
 */
export function committedSecretWarning(config: Pick<Config, 'NODE_ENV' | 'JWT_SECRET' | 'JWT_JWKS_URL'>): string | undefined {
  if (config.NODE_ENV !== 'development' || config.JWT_JWKS_URL || !COMMITTED_JWT_SECRETS.includes(config.JWT_SECRET)) return undefined;
  return 'JWT_SECRET is a development secret committed to the repository: anyone who has read it can sign tokens for any user. Keep this gateway to yourself, or set NODE_ENV=production and a JWT_SECRET of your own (e.g. openssl rand -base64 48)';
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

/**
 * The IdP's key set. It is cached for 10 minutes; an unknown `kid` refetches
 * it at most once per cooldown, so a flood of forged kids cannot hammer the IdP.
 * Past the 10 minutes jose refetches before every verification and fails it
 * when the IdP does, which would turn an IdP outage into everyone being
 * logged out although the keys it last served still verify their tokens: so
 * while the IdP fails, the last set it served is used for up to `maxStaleMs`
 * more. A kid that set does not know still needs the IdP (503), and once the
 * set is too old every token does.
 */
function remoteKeySet(url: URL, cooldownMs: number, maxStaleMs: number): JWTVerifyGetKey {
  // jose writes every set it fetches, and when, here.
  const cache: Partial<ExportedJWKSCache> = {};
  const remote = createRemoteJWKSet(url, {
    cooldownDuration: cooldownMs,
    cacheMaxAge: JWKS_FRESH_MS,
    timeoutDuration: 3000,
    [customFetch]: guardedJwksFetch(cooldownMs),
    [jwksCache]: cache as JWKSCacheInput,
  });
  let stale: { uat: number; keys: ReturnType<typeof createLocalJWKSet> } | undefined;
  return async (header, token) => {
    try {
      return await remote(header, token);
    } catch (err) {
      const { uat, jwks } = cache;
      if (!isJwksUnavailable(err) || uat === undefined || !jwks || Date.now() >= uat + JWKS_FRESH_MS + maxStaleMs) throw err;
      if (stale?.uat !== uat) stale = { uat, keys: createLocalJWKSet(jwks) };
      try {
        return await stale.keys(header, token);
      } catch (staleErr) {
        // Not in the old set: perhaps a key the IdP has added since, which only the IdP can tell.
        throw staleErr instanceof joseErrors.JWKSNoMatchingKey ? err : staleErr;
      }
    }
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
  return {
    id: id.data,
    username: username.data,
    displayName: profileText(claims.name, 256),
    avatarUrl: profileText(claims.picture, 2048),
    expiresAt: (claims.exp ?? 0) * 1000,
  };
}

/**
 * An optional profile claim as stored text, at most `max` UTF-16 units, or
 * null. One PostgreSQL text cannot hold (a NUL, a lone surrogate) is dropped
 * rather than refused: the claim is decoration, the user is who `sub` says,
 * and a refusal would lock them out until their IdP profile changed.
 */
function profileText(v: unknown, max: number): string | null {
  if (typeof v !== 'string' || v.length === 0) return null;
  // A cut between the two halves of a surrogate pair would leave one alone.
  const cut = v.length > max && /[\uD800-\uDBFF]/.test(v[max - 1]!) ? v.slice(0, max - 1) : v.slice(0, max);
  return cut.length > 0 && unstorableText(cut) === undefined ? cut : null;
}

/** The token of a request: `Authorization: Bearer <jwt>`. */
export function bearerToken(header: string | undefined): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return m?.[1];
}
