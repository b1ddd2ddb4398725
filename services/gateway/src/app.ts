import { createAdaptorServer } from '@hono/node-server';
import { createRoute } from '@hono/zod-openapi';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { cors } from 'hono/cors';
import { requestId } from 'hono/request-id';
import { routePath } from 'hono/route';
import { secureHeaders } from 'hono/secure-headers';
import { readFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { subjects, WsTicketSchema } from '@chat/contracts';
import { BusClient, connectNats, createRedis, describeActiveSpan, redisReady, SEED_USERNAMES, Teardown, type Config, type Logger } from '@chat/platform';
import { bearerToken, committedSecretWarning, createTokenVerifier } from './auth';
import { Bus } from './bus';
import { SendPath } from './send-path';
import { createGatewayMetrics } from './gateway-metrics';
import { checkQueryText, errorResponse, quotaHeaders, routeApp, toPublicError, type GatewayEnv } from './http';
import { errors, ok, openApiDocument } from './openapi';
import { checkReadiness } from './readiness';
import { accountRoutes } from './routes/account';
import { eventRoutes } from './routes/events';
import { blockRoutes } from './routes/blocks';
import { conversationRoutes } from './routes/conversations';
import { messageRoutes } from './routes/messages';
import { searchRoutes } from './routes/search';
import { UserSync } from './user-sync';
import { referenceRoutes, REFERENCE_PATH } from './reference';
import { ConnectionCaps } from './security/connection-caps';
import { Gate } from './security/gate';
import { RateLimits, rateLimited } from './security/rate-limits';
import { WsTickets } from './security/tickets';
import { RealtimeHub } from './ws/hub';
import { createUpgradeHandler } from './ws/upgrade';
import { isWebPath, webHandler, webHeaders } from './web';
import { DEV_SIGN_IN_PATH, devSignInEnabled, devSignInRoutes } from './dev-sign-in';

export const BODY_LIMIT_BYTES = 64 * 1024;

const wsTicketRoute = createRoute({
  method: 'post',
  path: '/ws-ticket',
  tags: ['WebSocket'],
  summary: 'A single-use ticket for the WebSocket upgrade',
  description:
    'Valid 30 s (never past the token), works once on any gateway instance: connect with `/api/chat/ws?ticket=<ticket>`, so a browser need not put its long-lived token in a URL. ' +
    'Limited per client IP (60 a minute by default).',
  responses: { 200: ok('the ticket', WsTicketSchema, { limited: true }), ...errors() },
});
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Composition root of the gateway: config → NATS → verifier and routes → HTTP server. */
export async function startGateway(config: Config, log: Logger) {
  const teardown = new Teardown(log);
  try {
    const metrics = createGatewayMetrics();
    const nc = await connectNats(config, 'gateway', log);
    teardown.add('nats drain', () => nc.drain());
    const s = subjects(config.NATS_PREFIX);
    const client = new BusClient(nc, config.REQUEST_TIMEOUT_MS, (subject, seconds) =>
      metrics.natsRequest.observe({ subject: subject.split('.').slice(1).join('.') }, seconds),
    );
    const bus = new Bus(client, s);
    const sends = new SendPath(client, s, config.SEND_MAX_IN_FLIGHT, config.REQUEST_TIMEOUT_MS, metrics);
    const verify = createTokenVerifier(config);
    const secretWarning = committedSecretWarning(config);
    if (secretWarning) log.warn(secretWarning);
    const users = new UserSync(client, s);
    // Rate limits, bans and tickets: the gateway's own key space in Redis.
    const redis = createRedis(config.REDIS_URL, `${config.REDIS_PREFIX}gateway:`, log, 'gateway', { failFast: true });
    teardown.add('redis', async () => void (await redis.quit().catch(() => redis.disconnect())));
    // Its commands fail while it connects: wait briefly. Down, it is said once (createRedis, RateLimits).
    await redisReady(redis);
    const limits = new RateLimits(redis, config, log);
    const tickets = new WsTickets(redis, config.WS_TICKET_TTL_MS);
    const gate = new Gate(config, limits, verify, tickets, log);
    // Entries live as long as presence's, refreshed on the same heartbeat (below).
    const caps = new ConnectionCaps(redis, config, config.PRESENCE_TTL_MS, log);
    // Runs after the sockets are closed and before Redis quits: a restart leaves no entries counting against anyone.
    teardown.add('websocket caps', () => caps.releaseAll());
    const tls = config.TLS_CERT_FILE && config.TLS_KEY_FILE ? { cert: readFileSync(config.TLS_CERT_FILE), key: readFileSync(config.TLS_KEY_FILE) } : undefined;

    const app = new Hono<GatewayEnv>();
    app.use(
      requestId({
        headerName: 'X-Request-Id',
        generator: () => crypto.randomUUID(),
        limitLength: 128,
      }),
    );
    app.use(async (c, next) => {
      // hono's requestId accepts any printable id; keep only ids safe to log and echo.
      if (!REQUEST_ID.test(c.get('requestId'))) c.set('requestId', crypto.randomUUID());
      const end = metrics.httpDuration.startTimer({ method: c.req.method });
      await next();
      c.header('X-Request-Id', c.get('requestId'));
      const route = c.res.status === 404 && routePath(c) === '/*' ? 'unmatched' : routePath(c);
      end({ route, status: String(c.res.status) });
      // The http instrumentation's server span knows the URL, not the route: name it by the template.
      describeActiveSpan(`${c.req.method} ${route}`, { 'http.route': route, 'chat.service': 'gateway', 'chat.request_id': c.get('requestId') });
    });
    // CORS only for listed origins, matched exactly. Any other origin gets no
    // CORS header at all (hono's cors() would still send Allow-Credentials),
    // and its preflight an empty 204, so the browser refuses the call.
    const corsForListed = cors({ origin: (origin) => origin, credentials: true, maxAge: 600 });
    app.use('/api/chat/*', async (c, next) => {
      const origin = c.req.header('origin');
      if (origin !== undefined && config.CORS_ORIGINS.includes(origin)) return corsForListed(c, next);
      if (c.req.method === 'OPTIONS' && c.req.header('access-control-request-method')) return c.body(null, 204);
      await next();
    });
    const hsts = tls ? 'max-age=31536000; includeSubDomains' : false;
    const apiHeaders = secureHeaders({
      contentSecurityPolicy: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] },
      xFrameOptions: 'DENY',
      referrerPolicy: 'no-referrer',
      // HSTS only where it is true: a plain-HTTP gateway behind a TLS proxy leaves it to the proxy.
      strictTransportSecurity: hsts,
      crossOriginResourcePolicy: 'same-site',
    });
    const pageHeaders = webHeaders(hsts);
    // The reference pages set their own and the web chat gets one a browser page can work under; everything else gets the API's.
    app.use((c, next) => {
      const path = c.req.path;
      if (path === REFERENCE_PATH || path.startsWith(`${REFERENCE_PATH}/`)) return next();
      return isWebPath(path) ? pageHeaders(c, next) : apiHeaders(c, next);
    });
    app.use('*', async (c, next) => {
      await next();
      if (c.res.headers.get('content-type') === 'application/json') c.header('Content-Type', 'application/json; charset=utf-8');
    });

    app.get('/healthz', (c) => c.json({ status: 'ok' }));
    app.get('/readyz', async (c) => {
      const r = await checkReadiness(nc, config.NATS_PREFIX);
      return c.json(r, r.ready ? 200 : 503);
    });
    app.get('/metrics', async (c) => c.text(await metrics.registry.metrics(), 200, { 'Content-Type': metrics.registry.contentType }));
    // Only paths outside /api/ and the probes; anything else passes on to the routes below, unchanged.
    app.get('/*', webHandler(config.WEB_DIR));

    const api = routeApp();
    api.use(
      bodyLimit({
        maxSize: BODY_LIMIT_BYTES,
        onError: (c) => errorResponse(c, 'PAYLOAD_TOO_LARGE', `request body exceeds ${BODY_LIMIT_BYTES} bytes`),
      }),
    );
    api.use(async (c, next) => {
      c.header('Cache-Control', 'no-store');
      const ip = gate.clientIp(c.env.incoming.socket.remoteAddress, c.req.header('x-forwarded-for'));
      await gate.admit(ip);
      const token = bearerToken(c.req.header('authorization'));
      const principal = await gate.authenticate(ip, token ? { token } : undefined, c.get('requestId'));
      c.set('principal', principal);
      checkQueryText(c);
      await users.ensure(principal, c.get('requestId'), log);
      await next();
    });
    // In the document's order (its paths follow the routes').
    api.route('/conversations', conversationRoutes(bus, limits));
    api.route('/', messageRoutes(bus, limits, sends));
    api.route('/', searchRoutes(bus));
    api.route('/', eventRoutes(bus));
    api.openapi(wsTicketRoute, async (c) => {
      // Per IP: a ticket is a Redis key held for its TTL, and one token could otherwise mint them without end.
      const quota = await limits.wsTickets.consume(gate.clientIp(c.env.incoming.socket.remoteAddress, c.req.header('x-forwarded-for')));
      quotaHeaders(c, quota);
      if (!quota.allowed) throw rateLimited('websocket tickets', quota.resetMs);
      return c.json({ data: WsTicketSchema.parse(await tickets.issue(c.get('principal'))) }, 200);
    });
    api.route('/blocks', blockRoutes(bus));
    api.route('/', accountRoutes(bus));
    const devSignIn = devSignInEnabled(config);
    // Everything under /api/chat, matched in this order; the document lists exactly these routes.
    const chat = routeApp();
    // Before the API's authentication: the document and its reference page are public (SPEC 3).
    chat.route('/', referenceRoutes(hsts, openApiDocument(chat)));
    // Likewise, since its caller has no token yet; and absent, not refused, anywhere else.
    if (devSignIn) {
      chat.route('/', devSignInRoutes(config, BODY_LIMIT_BYTES));
      log.info(
        { users: SEED_USERNAMES.length },
        `development sign-in enabled: JWT_SECRET is the development default, so ${DEV_SIGN_IN_PATH}/users and ${DEV_SIGN_IN_PATH}/token hand out tokens for the seeded users`,
      );
    }
    chat.route('/', api);
    app.route('/api/chat', chat);

    app.notFound((c) => errorResponse(c, 'NOT_FOUND', 'no such route'));
    app.onError((err, c) => {
      const e = toPublicError(err, log, { requestId: c.get('requestId'), userId: c.get('principal')?.id }, 'unhandled error');
      if (e.retryAfterMs !== undefined) c.header('Retry-After', String(Math.ceil(e.retryAfterMs / 1000)));
      return errorResponse(c, e.code, e.message, e.details);
    });

    const server = (
      tls ? createAdaptorServer({ fetch: app.fetch, createServer: createHttpsServer, serverOptions: tls }) : createAdaptorServer({ fetch: app.fetch })
    ) as Server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.PORT, '0.0.0.0', () => resolve());
    });
    teardown.add('http server', () => closeServer(server));

    const hub = new RealtimeHub(
      nc,
      client,
      s,
      {
        heartbeatMs: config.WS_HEARTBEAT_MS,
        softBufferBytes: config.WS_SOFT_BUFFER_BYTES,
        hardBufferBytes: config.WS_HARD_BUFFER_BYTES,
        presenceHeartbeatMs: Math.max(250, Math.floor(config.PRESENCE_TTL_MS / 3)),
        rates: limits,
        sends,
        caps,
      },
      metrics,
      log,
    );
    teardown.add('websockets', () => hub.stop());
    const upgrade = createUpgradeHandler({ corsOrigins: config.CORS_ORIGINS, tls: Boolean(tls), gate, rates: limits, caps, users, hub, log });
    server.on('upgrade', (req, socket, head) => void upgrade(req, socket, head));
    const port = (server.address() as AddressInfo).port;
    log.info({ port }, 'gateway ready');
    return { stop: () => teardown.stop(), port, server, metrics, app, hub, limits, caps, redis, tls: Boolean(tls) };
  } catch (err) {
    await teardown.stop();
    throw err;
  }
}

/** Stops accepting, lets in-flight requests finish, then drops idle keep-alive sockets. */
function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
    setTimeout(() => server.closeAllConnections(), 5000).unref();
  });
}
