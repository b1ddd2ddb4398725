import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { ChatError, errorStatus, MAX_FRAME_BYTES, type ErrorCode } from '@chat/contracts';
import type { Logger } from '@chat/platform';
import { bearerToken, type Principal, type TokenVerifier } from '../auth';
import type { UserSync } from '../user-sync';
import type { RealtimeHub } from './hub';

export const WS_PATH = '/api/chat/ws';
const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 503: 'Service Unavailable' };

/**
 * Every check happens before the 101: path, Origin (exact match; none is a
 * non-browser client), token, `since`. A refusal is an ordinary HTTP answer
 * with the SPEC's error body, and the socket is closed.
 */
export function createUpgradeHandler(opts: {
  corsOrigins: readonly string[];
  verify: TokenVerifier;
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
      const origin = req.headers.origin;
      if (origin !== undefined && !opts.corsOrigins.includes(origin)) throw new ChatError('ORIGIN_NOT_ALLOWED', 'origin not allowed');
      const token = url.searchParams.get('token') ?? bearerToken(req.headers.authorization);
      if (!token) throw new ChatError('UNAUTHORIZED', 'missing token');
      const principal: Principal = await opts.verify(token);
      const sinceRaw = url.searchParams.get('since');
      if (sinceRaw !== null && !/^\d{1,15}$/.test(sinceRaw))
        throw new ChatError('VALIDATION_FAILED', 'since must be a non-negative integer', [{ path: 'since', message: 'must be a non-negative integer' }]);
      await opts.users.ensure(principal, requestId, opts.log);
      wss.handleUpgrade(req, socket, head, (ws) => opts.hub.open(ws, principal, sinceRaw === null ? undefined : Number(sinceRaw)));
    } catch (err) {
      const e = err instanceof ChatError ? err : new ChatError('INTERNAL', 'internal error');
      if (!(err instanceof ChatError)) opts.log.error({ err, requestId }, 'upgrade failed');
      refuse(socket, e.code, e.message, requestId, e.details);
    }
  };
}

function refuse(socket: Duplex, code: ErrorCode, message: string, requestId: string, details?: unknown): void {
  const status = errorStatus[code];
  const body = JSON.stringify({ error: { code, message, ...(details === undefined ? {} : { details }), requestId } });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\nContent-Type: application/json; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${requestId}\r\nConnection: close\r\n\r\n${body}`,
  );
}
