import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { ChatError, errorStatus, MAX_FRAME_BYTES, type ErrorCode } from '@chat/contracts';
import type { Logger } from '@chat/platform';
import { bearerToken, type Principal } from '../auth';
import { toPublicError } from '../http';
import type { ConnectionCaps } from '../security/connection-caps';
import type { Credential, Gate } from '../security/gate';
import { rateLimited, type RateLimits } from '../security/rate-limits';
import type { UserSync } from '../user-sync';
import type { RealtimeHub } from './hub';

export const WS_PATH = '/api/chat/ws';
const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  429: 'Too Many Requests',
  503: 'Service Unavailable',
};

/**
 * Every check happens before the 101: path, IP denylist and ban, the IP's
 * upgrade rate, Origin (one of CORS_ORIGINS or the gateway's own, exact
 * match; none is a non-browser client), token or ticket, `since`, and last
 * the caps on open sockets per user and per IP. A refusal is an ordinary HTTP
 * answer with the SPEC's error body, and the socket is closed.
 */
export function createUpgradeHandler(opts: {
  corsOrigins: readonly string[];
  /** The gateway serves HTTPS/WSS itself, so its own pages are `https://`. */
  tls: boolean;
  gate: Gate;
  rates: RateLimits;
  caps: ConnectionCaps;
  users: UserSync;
  hub: RealtimeHub;
  log: Logger;
}) {
  // No per-message compression: it costs memory per socket and opens compression side channels.
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false });

  return async (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const requestId = crypto.randomUUID();
    socket.on('error', () => undefined);
    try {
      const url = new URL(req.url ?? '/', 'http://gateway');
      if (url.pathname !== WS_PATH) throw new ChatError('NOT_FOUND', 'no such route');
      const ip = opts.gate.clientIp(req.socket.remoteAddress, req.headers['x-forwarded-for']);
      await opts.gate.admit(ip);
      // Before the credential: a flood of upgrades costs handshakes and verifications whether or not they authenticate.
      const upgrades = await opts.rates.wsUpgrades.consume(ip);
      if (!upgrades.allowed) throw rateLimited('websocket upgrades', upgrades.resetMs);
      // Cross-site WebSocket hijacking: a browser always sends Origin, and only listed ones pass,
      // or the gateway's own (the web chat it serves, under whatever name it was opened).
      const origin = req.headers.origin;
      if (origin !== undefined && !opts.corsOrigins.includes(origin) && origin !== ownOrigin(req.headers.host, opts.tls))
        throw new ChatError('ORIGIN_NOT_ALLOWED', 'origin not allowed');
      const ticket = url.searchParams.get('ticket');
      const token = url.searchParams.get('token') ?? bearerToken(req.headers.authorization);
      const credential: Credential = ticket !== null ? { ticket } : token ? { token } : undefined;
      const principal: Principal = await opts.gate.authenticate(ip, credential, requestId);
      const sinceRaw = url.searchParams.get('since');
      if (sinceRaw !== null && !/^\d{1,15}$/.test(sinceRaw))
        throw new ChatError('VALIDATION_FAILED', 'since must be a non-negative integer', [{ path: 'since', message: 'must be a non-negative integer' }]);
      await opts.users.ensure(principal, requestId, opts.log);
      const slot = await opts.caps.acquire(principal.id, ip);
      // The slot lives as long as the TCP socket, whatever ends it: a refused handshake, a close, a crash of the peer.
      if (socket.destroyed) void opts.caps.release(slot);
      else socket.once('close', () => void opts.caps.release(slot));
      wss.handleUpgrade(req, socket, head, (ws) => opts.hub.open(ws, principal, sinceRaw === null ? undefined : Number(sinceRaw)));
    } catch (err) {
      const e = toPublicError(err, opts.log, { requestId }, 'upgrade failed');
      refuse(socket, e.code, e.message, requestId, e.details, e.retryAfterMs);
    }
  };
}

/**
 * The origin of a page served by this gateway under the name the client used:
 * the scheme it listens with and the Host header. A browser sets Host to the
 * server it connects to, and a page elsewhere cannot make its Origin name this
 * host, so equality admits only pages of this origin. Anything that is not a
 * plain host[:port] gives none (no match).
 */
export function ownOrigin(host: string | undefined, tls: boolean): string | undefined {
  if (host === undefined || !/^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/.test(host)) return undefined;
  try {
    // Through URL, as the browser writes Origin: lower case, the default port left out.
    return new URL(`${tls ? 'https' : 'http'}://${host}`).origin;
  } catch {
    return undefined;
  }
}

function refuse(socket: Duplex, code: ErrorCode, message: string, requestId: string, details?: unknown, retryAfterMs?: number): void {
  const status = errorStatus[code];
  const retryAfter = retryAfterMs === undefined ? '' : `Retry-After: ${Math.ceil(retryAfterMs / 1000)}\r\n`;
  const body = JSON.stringify({ error: { code, message, ...(details === undefined ? {} : { details }), requestId } });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\nContent-Type: application/json; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${requestId}\r\n${retryAfter}Connection: close\r\n\r\n${body}`,
  );
}
