import { createAdaptorServer } from '@hono/node-server';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { cors } from 'hono/cors';
import { requestId } from 'hono/request-id';
import { routePath } from 'hono/route';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ChatError, isChatError, subjects } from '@chat/contracts';
import { BusClient, connectNats, Teardown, type Config, type Logger } from '@chat/platform';
import { bearerToken, createTokenVerifier } from './auth';
import { Bus } from './bus';
import { createGatewayMetrics } from './gateway-metrics';
import { errorResponse, type GatewayEnv } from './http';
import { checkReadiness } from './readiness';
import { accountRoutes } from './routes/account';
import { eventRoutes } from './routes/events';
import { blockRoutes } from './routes/blocks';
import { conversationRoutes } from './routes/conversations';
import { messageRoutes } from './routes/messages';
import { UserSync } from './user-sync';
import { RealtimeHub } from './ws/hub';
import { createUpgradeHandler } from './ws/upgrade';

export const BODY_LIMIT_BYTES = 64 * 1024;
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Composition root of the gateway: config → NATS → verifier and routes → HTTP server. */
export async function startGateway(config: Config, log: Logger) {
  const teardown = new Teardown(log);
  try {
    const metrics = createGatewayMetrics();
    const nc = await connectNats(config.NATS_URL, 'gateway', log);
    teardown.add('nats drain', () => nc.drain());
    const s = subjects(config.NATS_PREFIX);
    const client = new BusClient(nc, config.REQUEST_TIMEOUT_MS, (subject, seconds) =>
      metrics.natsRequest.observe({ subject: subject.split('.').slice(1).join('.') }, seconds),
    );
    const bus = new Bus(client, s);
    const verify = createTokenVerifier(config);
    const users = new UserSync(client, s);

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
      end({ route: c.res.status === 404 && routePath(c) === '/*' ? 'unmatched' : routePath(c), status: String(c.res.status) });
    });
    app.use(
      '/api/chat/*',
      cors({ origin: (origin) => (config.CORS_ORIGINS.includes(origin) ? origin : null), credentials: true, maxAge: 600 }),
    );
    app.use('*', async (c, next) => {
      await next();
      c.header('X-Content-Type-Options', 'nosniff');
      c.header('Referrer-Policy', 'no-referrer');
      c.header('X-Frame-Options', 'DENY');
      c.header('Content-Security-Policy', "default-src 'none'; frame-ancestors 'none'");
      if (c.res.headers.get('content-type') === 'application/json') c.header('Content-Type', 'application/json; charset=utf-8');
    });

    app.get('/healthz', (c) => c.json({ status: 'ok' }));
    app.get('/readyz', async (c) => {
      const r = await checkReadiness(nc, config.NATS_PREFIX);
      return c.json(r, r.ready ? 200 : 503);
    });
    app.get('/metrics', async (c) => c.text(await metrics.registry.metrics(), 200, { 'Content-Type': metrics.registry.contentType }));

    const api = new Hono<GatewayEnv>();
    api.use(
      bodyLimit({
        maxSize: BODY_LIMIT_BYTES,
        onError: (c) => errorResponse(c, 'PAYLOAD_TOO_LARGE', `request body exceeds ${BODY_LIMIT_BYTES} bytes`),
      }),
    );
    api.use(async (c, next) => {
      c.header('Cache-Control', 'no-store');
      const token = bearerToken(c.req.header('authorization'));
      if (!token) throw new ChatError('UNAUTHORIZED', 'missing bearer token');
      const principal = await verify(token);
      c.set('principal', principal);
      await users.ensure(principal, c.get('requestId'), log);
      await next();
    });
    api.route('/conversations', conversationRoutes(bus));
    api.route('/blocks', blockRoutes(bus));
    api.route('/', messageRoutes(bus, () => metrics.messagesTotal.inc()));
    api.route('/', accountRoutes(bus));
    api.route('/', eventRoutes(bus));
    app.route('/api/chat', api);

    app.notFound((c) => errorResponse(c, 'NOT_FOUND', 'no such route'));
    app.onError((err, c) => {
      if (isChatError(err)) {
        if (err.code === 'SERVICE_UNAVAILABLE') log.warn({ requestId: c.get('requestId'), details: err.details }, err.message);
        return errorResponse(c, err.code, err.message, err.details);
      }
      log.error({ err, requestId: c.get('requestId') }, 'unhandled error');
      return errorResponse(c, 'INTERNAL', 'internal error');
    });

    const server = createAdaptorServer({ fetch: app.fetch }) as Server;
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
      },
      metrics,
      log,
    );
    teardown.add('websockets', () => hub.stop());
    const upgrade = createUpgradeHandler({ corsOrigins: config.CORS_ORIGINS, verify, users, hub, log });
    server.on('upgrade', (req, socket, head) => void upgrade(req, socket, head));
    const port = (server.address() as AddressInfo).port;
    log.info({ port }, 'gateway ready');
    return { stop: () => teardown.stop(), port, server, metrics, app, hub };
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
