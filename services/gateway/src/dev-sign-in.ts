import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { SignJWT } from 'jose';
import { z } from 'zod';
import { ChatError } from '@chat/contracts';
import { DEV_JWT_SECRET, SEED_USERNAMES, displayNameFor, userIdFor, type Config } from '@chat/platform';
import { errorResponse, jsonBody, parseOrThrow, type GatewayEnv } from './http';

export const DEV_SIGN_IN_PATH = '/api/chat/dev';
const TOKEN_LIFETIME_S = 24 * 60 * 60;

/**
 * Development sign-in exists only where tokens are already free for the
 * taking: the secret is the development default printed in the source, so
 * anyone can sign any token with it. Production refuses that secret at start
 * (loadConfig), and a JWKS means tokens come from an identity provider, so
 * neither can ever have these routes, whatever else is misconfigured.
 */
export function devSignInEnabled(config: Pick<Config, 'JWT_SECRET' | 'JWT_JWKS_URL' | 'NODE_ENV'>): boolean {
  return config.JWT_SECRET === DEV_JWT_SECRET && config.NODE_ENV !== 'production' && !config.JWT_JWKS_URL;
}

export const DevTokenBody = z.strictObject({ username: z.string().min(1).max(64) });
export const DevUserSchema = z.object({ id: z.string(), username: z.string(), displayName: z.string() });
export const DevTokenSchema = z.object({ token: z.string(), expiresAt: z.string() });

/**
 * GET /api/chat/dev/users and POST /api/chat/dev/token: the web chat's
 * "pick a seeded user" screen. Mounted only when devSignInEnabled, before the
 * API's authentication (the caller has no token yet); otherwise the paths are
 * unknown API routes like any other.
 */
export function devSignInRoutes(config: Pick<Config, 'JWT_SECRET' | 'JWT_ISSUER' | 'JWT_AUDIENCE'>, maxBodyBytes: number) {
  const key = new TextEncoder().encode(config.JWT_SECRET);
  const app = new Hono<GatewayEnv>();
  app.use(`${DEV_SIGN_IN_PATH}/*`, async (c, next) => {
    await next();
    c.header('Cache-Control', 'no-store');
  });
  app.use(
    `${DEV_SIGN_IN_PATH}/*`,
    bodyLimit({ maxSize: maxBodyBytes, onError: (c) => errorResponse(c, 'PAYLOAD_TOO_LARGE', `request body exceeds ${maxBodyBytes} bytes`) }),
  );
  app.get(`${DEV_SIGN_IN_PATH}/users`, (c) =>
    c.json({ data: SEED_USERNAMES.map((username) => ({ id: userIdFor(username), username, displayName: displayNameFor(username) })) }),
  );
  app.post(`${DEV_SIGN_IN_PATH}/token`, async (c) => {
    const { username } = parseOrThrow(DevTokenBody, await jsonBody(c));
    const seeded = SEED_USERNAMES.find((u) => u === username.toLowerCase());
    if (!seeded) throw new ChatError('USER_NOT_FOUND', `no seeded user named ${username}`);
    const exp = Math.floor(Date.now() / 1000) + TOKEN_LIFETIME_S;
    // The same claims `npm run token` writes for a seeded user.
    const jwt = new SignJWT({ username: seeded, name: displayNameFor(seeded) })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(userIdFor(seeded))
      .setIssuedAt()
      .setExpirationTime(exp);
    if (config.JWT_ISSUER) jwt.setIssuer(config.JWT_ISSUER);
    if (config.JWT_AUDIENCE) jwt.setAudience(config.JWT_AUDIENCE);
    return c.json({ data: { token: await jwt.sign(key), expiresAt: new Date(exp * 1000).toISOString() } });
  });
  return app;
}
