import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
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
  return async (token) => {
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
}

function isJwksUnavailable(err: unknown): boolean {
  if (err instanceof joseErrors.JWKSTimeout || err instanceof joseErrors.JWKSInvalid) return true;
  // A network failure reaches us as fetch's own TypeError, not a JOSEError.
  return !(err instanceof joseErrors.JOSEError) && err instanceof Error && err.name !== 'SyntaxError';
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
