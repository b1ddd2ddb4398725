import { createRoute } from '@hono/zod-openapi';
import { bodyLimit } from 'hono/body-limit';
import { SignJWT } from 'jose';
import { z } from 'zod';
import { ChatError } from '@chat/contracts';
import { DEV_JWT_SECRET, SEED_USERNAMES, displayNameFor, userIdFor, type Config } from '@chat/platform';
import { errorResponse, jsonBody, routeApp } from './http';
import { BODY_ERRORS, jsonContent, ok, PUBLIC, publicErrors } from './openapi';

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

const DEV_ONLY =
  'Exists only in development: while JWT_SECRET is the development default, NODE_ENV is not production and JWT_JWKS_URL is unset ' +
  '(a token signed with that public secret is no secret anyway). Anywhere else the path is an unknown route (404 NOT_FOUND), and this document leaves it out.';

const users = createRoute({
  method: 'get',
  path: '/dev/users',
  tags: ['Development'],
  summary: 'The seeded users one can sign in as (development only)',
  description: DEV_ONLY,
  ...PUBLIC,
  responses: { 200: ok('the users `npm run seed` creates', z.array(DevUserSchema)) },
});

const token = createRoute({
  method: 'post',
  path: '/dev/token',
  tags: ['Development'],
  summary: 'A 24 h token for a seeded user (development only)',
  description: `${DEV_ONLY} The username matches case-insensitively.`,
  ...PUBLIC,
  middleware: [jsonBody(DevTokenBody)] as const,
  request: { body: jsonContent(DevTokenBody) },
  responses: {
    200: ok('an HS256 token signed with JWT_SECRET, as `npm run token` makes', DevTokenSchema),
    ...publicErrors(...BODY_ERRORS, 'USER_NOT_FOUND', 'INTERNAL'),
  },
});

/**
 * GET /api/chat/dev/users and POST /api/chat/dev/token (mounted at
 * /api/chat): the web chat's "pick a seeded user" screen. Mounted only when
 * devSignInEnabled, before the API's authentication (the caller has no token
 * yet), and so documented exactly when served; otherwise the paths are
 * unknown API routes like any other.
 */
export function devSignInRoutes(config: Pick<Config, 'JWT_SECRET' | 'JWT_ISSUER' | 'JWT_AUDIENCE'>, maxBodyBytes: number) {
  const key = new TextEncoder().encode(config.JWT_SECRET);
  const app = routeApp();
  app.use('/dev/*', async (c, next) => {
    await next();
    c.header('Cache-Control', 'no-store');
  });
  app.use('/dev/*', bodyLimit({ maxSize: maxBodyBytes, onError: (c) => errorResponse(c, 'PAYLOAD_TOO_LARGE', `request body exceeds ${maxBodyBytes} bytes`) }));
  app.openapi(users, (c) =>
    c.json({ data: SEED_USERNAMES.map((username) => ({ id: userIdFor(username), username, displayName: displayNameFor(username) })) }, 200),
  );
  app.openapi(token, async (c) => {
    const { username } = c.req.valid('json');
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
    return c.json({ data: { token: await jwt.sign(key), expiresAt: new Date(exp * 1000).toISOString() } }, 200);
  });
  return app;
}
