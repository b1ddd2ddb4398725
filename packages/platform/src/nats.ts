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
    // A server that stops answering without closing (frozen, cut off) is
    // given up within about 30 s, not the library's 4-6 minutes, and a
    // server that accepts the TCP connection but never speaks within 3 s.
    pingInterval: 10_000,
    maxPingOut: 2,
    timeout: 3000,
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
  /**
   * Safe to ask twice (a read, or a write the service deduplicates): if the
   * connection to NATS drops while the request waits, its reply may have gone
   * with it, so the request is asked again as soon as the connection is
   * back, within the same timeout, instead of waiting the timeout out.
   */
  idempotent?: boolean;
  /**
   * For idempotent reads: when no answer has come after HEDGE_AFTER_MS, ask
   * once more (the queue group may pick another replica) and take whichever
   * answers first. A reply lost with a NATS node the caller is not on, or a
   * replica frozen mid-request, then costs a second instead of a timeout.
   * Not for writes: under overload a hedge is one more job for a busy service.
   */
  hedge?: boolean;
}

/** How long a request made while the connection to NATS is down waits for it to come back (a NATS node restarting). */
const RECONNECT_WAIT_MS = 2000;
/** The least time a repeated request is given, even when the first took most of the timeout. */
const MIN_RETRY_MS = 1000;
/** When a hedged request asks again: far past any normal reply (milliseconds), well inside the timeout. */
const HEDGE_AFTER_MS = 1000;
const LOST = Symbol('connection lost');
const HEDGE = Symbol('hedge');
/** The failures of an attempt that say nothing came back (timeout, no responder), as opposed to a service's answer. */
const noAnswer = new WeakSet<object>();

type Settled<T> = { value: T } | { error: unknown };
/**
 * The first attempt that got an answer (a reply, or a service's error), or,
 * when every attempt so far got none, the last one's failure.
 */
function firstAnswer<T>(attempts: Array<Promise<T>>): Promise<Settled<T> | { none: unknown }> {
  return new Promise((resolve) => {
    let failed = 0;
    for (const a of attempts)
      a.then(
        (value) => resolve({ value }),
        (error: unknown) => {
          if (!(typeof error === 'object' && error !== null && noAnswer.has(error))) resolve({ error });
          else if (++failed === attempts.length) resolve({ none: error });
        },
      );
  });
}

/** A promise and its resolve (Node 20 has no Promise.withResolvers). */
function signal(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/**
 * Request/reply over the bus with the shared envelope: resolves with `data`,
 * rethrows a service's `{ ok: false }` as the same ChatError, and turns "no
 * responder" or a timeout into SERVICE_UNAVAILABLE naming the service. The
 * subject and the library's message go in `internal`, for the log: they
 * describe this deployment's insides, not anything a client can act on.
 *
 * A NATS node restarting (a rolling upgrade, a node lost) is waited out
 * rather than passed on: a request made while the connection is down waits
 * up to RECONNECT_WAIT_MS for it, and an idempotent request whose
 * connection dropped under it is asked again once the connection is back.
 */
export class BusClient {
  /** False while the connection to NATS is down. */
  private connected = true;
  /** Resolved at the next status change (disconnect or reconnect), then replaced. */
  private change = signal();
  /** Requests waiting on a reply, told when the connection drops under them; each removes itself when done. */
  private readonly onDrop = new Set<() => void>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly defaultTimeoutMs: number,
    private readonly onDuration?: (subject: string, seconds: number) => void,
  ) {
    void this.followStatus();
  }

  private async followStatus(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type !== 'disconnect' && s.type !== 'reconnect') continue;
      this.connected = s.type === 'reconnect';
      if (s.type === 'disconnect') for (const dropped of [...this.onDrop]) dropped();
      const { resolve } = this.change;
      this.change = signal();
      resolve();
    }
  }

  /** Whether the connection is up, waiting up to `ms` for it to come back. */
  private async waitConnected(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.connected && !this.nc.isClosed()) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.change.promise, new Promise((r) => (timer = setTimeout(r, left)))]);
      clearTimeout(timer);
    }
    return this.connected && !this.nc.isClosed();
  }

  async request<S extends z.ZodType>(subject: string, body: unknown, schema: S, opts: RequestOptions = {}): Promise<z.output<S>> {
    const timeoutMs = opts.timeoutMs ?? this.defaultTimeoutMs;
    const deadline = Date.now() + timeoutMs;
    const unreachable = () =>
      new ChatError('SERVICE_UNAVAILABLE', `${serviceOf(subject)} is unreachable`, undefined, { internal: { subject, reason: 'nats disconnected' } });
    // Connected, the common case, costs no wait at all.
    if (!this.connected && !(await this.waitConnected(Math.min(RECONNECT_WAIT_MS, timeoutMs)))) throw unreachable();
    if (!opts.idempotent) return this.attempt(subject, body, schema, opts, deadline - Date.now());
    // A listener of its own, removed when the request ends: nothing builds up on a connection that never drops.
    let drop!: () => void;
    const lost = new Promise<typeof LOST>((r) => (drop = () => r(LOST)));
    this.onDrop.add(drop);
    const attempts: Array<Promise<z.output<S>>> = [];
    const ask = () => {
      const a = this.attempt(subject, body, schema, opts, Math.max(MIN_RETRY_MS, deadline - Date.now()));
      a.catch(() => undefined); // settled through firstAnswer
      attempts.push(a);
    };
    ask();
    let hedge: Promise<typeof HEDGE> | undefined;
    let hedgeTimer: NodeJS.Timeout | undefined;
    if (opts.hedge) hedge = new Promise((r) => (hedgeTimer = setTimeout(r, Math.min(HEDGE_AFTER_MS, timeoutMs / 2), HEDGE)));
    let reasked = false;
    try {
      for (;;) {
        const next = await Promise.race([firstAnswer(attempts), ...(hedge ? [hedge] : []), ...(reasked ? [] : [lost])]);
        if (next === HEDGE) {
          hedge = undefined;
          ask();
        } else if (next === LOST) {
          // The connection went while the reply was awaited: ask again on the new one.
          reasked = true;
          if (!(await this.waitConnected(Math.max(0, deadline - Date.now())))) throw unreachable();
          ask();
        } else if ('value' in next) return next.value;
        else if ('error' in next) throw next.error;
        else throw next.none;
      }
    } finally {
      clearTimeout(hedgeTimer);
      this.onDrop.delete(drop);
    }
  }

  private attempt<S extends z.ZodType>(subject: string, body: unknown, schema: S, opts: RequestOptions, timeoutMs: number): Promise<z.output<S>> {
    const operation = subject.split('.').slice(1).join('.');
    return inSpan(`request ${operation}`, { kind: SpanKind.CLIENT, attributes: { 'messaging.system': 'nats', 'messaging.destination.name': subject } }, async (span) => {
      // The span's context rides in the headers: the handler's span becomes its child.
      const h: MsgHdrs = injectTrace(natsHeaders());
      if (opts.requestId) h.set(Headers.requestId, opts.requestId);
      const started = performance.now();
      let raw: unknown;
      try {
        const reply = await this.nc.request(subject, JSON.stringify(body), { timeout: Math.max(1, Math.round(timeoutMs)), headers: h });
        raw = reply.json();
      } catch (err) {
        const failure = new ChatError('SERVICE_UNAVAILABLE', `${serviceOf(subject)} did not answer`, undefined, { internal: { subject, reason: (err as Error).message } });
        noAnswer.add(failure);
        throw failure;
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
