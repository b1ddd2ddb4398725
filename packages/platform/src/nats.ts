import { connect, headers as natsHeaders, type NatsConnection, type MsgHdrs } from '@nats-io/transport-node';
import { ChatError, Headers, ReplySchema } from '@chat/contracts';
import type { z } from 'zod';
import type { Logger } from './logger';
import { injectTrace, inSpan, markSpanError, SpanKind } from './tracing';
import { natsConnectOptions, type NatsSettings } from './nats-auth';

export type { NatsConnection };
export * from './nats-auth';

/** Connects with endless reconnects: a NATS restart is waited out, not fatal. */
export async function connectNats(settings: NatsSettings, name: string, log: Logger): Promise<NatsConnection> {
  const nc = await connect({
    ...natsConnectOptions(settings),
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    waitOnFirstConnect: false,
    // Without this every request builds two Error objects (stack traces) up
    // front, in case it fails; BusClient names the subject in its own errors.
    noAsyncTraces: true,
  });
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') log.warn({ server: s.server }, 'nats: disconnected, reconnecting');
      else if (s.type === 'reconnect') log.info({ server: s.server }, 'nats: reconnected');
      else if (s.type === 'error') log.warn({ err: s.error }, 'nats: error');
    }
  })().catch(() => undefined);
  return nc;
}

export interface RequestOptions {
  requestId?: string;
  timeoutMs?: number;
}

/**
 * Request/reply over the bus with the shared envelope: resolves with `data`,
 * rethrows a service's `{ ok: false }` as the same ChatError, and turns "no
 * responder" or a timeout into SERVICE_UNAVAILABLE naming the service. The
 * subject and the library's message go in `internal`, for the log: they
 * describe this deployment's insides, not anything a client can act on.
 */
export class BusClient {
  /** False while the connection to NATS is down: requests then fail at once instead of waiting out their timeout. */
  private connected = true;

  constructor(
    private readonly nc: NatsConnection,
    private readonly defaultTimeoutMs: number,
    private readonly onDuration?: (subject: string, seconds: number) => void,
  ) {
    void this.followStatus();
  }

  private async followStatus(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type === 'disconnect') this.connected = false;
      else if (s.type === 'reconnect') this.connected = true;
    }
  }

  async request<S extends z.ZodType>(subject: string, body: unknown, schema: S, opts: RequestOptions = {}): Promise<z.output<S>> {
    if (!this.connected || this.nc.isClosed())
      throw new ChatError('SERVICE_UNAVAILABLE', `${serviceOf(subject)} is unreachable`, undefined, { internal: { subject, reason: 'nats disconnected' } });
    const operation = subject.split('.').slice(1).join('.');
    return inSpan(`request ${operation}`, { kind: SpanKind.CLIENT, attributes: { 'messaging.system': 'nats', 'messaging.destination.name': subject } }, async (span) => {
      // The span's context rides in the headers: the handler's span becomes its child.
      const h: MsgHdrs = injectTrace(natsHeaders());
      if (opts.requestId) h.set(Headers.requestId, opts.requestId);
      const started = performance.now();
      let raw: unknown;
      try {
        const reply = await this.nc.request(subject, JSON.stringify(body), { timeout: opts.timeoutMs ?? this.defaultTimeoutMs, headers: h });
        raw = reply.json();
      } catch (err) {
        throw new ChatError('SERVICE_UNAVAILABLE', `${serviceOf(subject)} did not answer`, undefined, { internal: { subject, reason: (err as Error).message } });
      } finally {
        this.onDuration?.(subject, (performance.now() - started) / 1000);
      }
      const envelope = ReplySchema.safeParse(raw);
      if (!envelope.success) throw new ChatError('INTERNAL', 'internal error', undefined, { internal: { subject, reason: 'malformed reply' } });
      if (!envelope.data.ok) {
        const { code, message, details } = envelope.data.error;
        span.setAttribute('chat.error_code', code);
        if (code === 'INTERNAL' || code === 'SERVICE_UNAVAILABLE') markSpanError(span, code);
        throw new ChatError(code, message, details);
      }
      const data = schema.safeParse(envelope.data.data);
      if (!data.success) throw new ChatError('INTERNAL', 'internal error', undefined, { internal: { subject, reason: 'reply does not match its contract' } });
      return data.data;
    });
  }
}

const serviceOf = (subject: string) => subject.split('.')[1] ?? subject;

/**
 * How many bytes a reply may carry: half the server's max_payload (1 MiB by
 * default), leaving room for the envelope. A page that would outgrow it is
 * cut short (with hasMore and a cursor), since a reply too large for NATS
 * is never delivered.
 */
export const replyBudget = (nc: NatsConnection): number => Math.floor((nc.info?.max_payload ?? 1024 * 1024) / 2);

/** How many of `items`, in order, fit in `budget` bytes of JSON; at least one. */
export function countFitting(items: readonly unknown[], budget: number): number {
  let bytes = 0;
  for (let i = 0; i < items.length; i++) {
    bytes += Buffer.byteLength(JSON.stringify(items[i]));
    if (i > 0 && bytes > budget) return i;
  }
  return items.length;
}
