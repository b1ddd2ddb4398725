import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type ConsumerMessages,
  type JsMsg,
} from '@nats-io/jetstream';
import { ChatError, eventStreamName, subjects } from '@chat/contracts';
import { headers as natsHeaders } from '@nats-io/transport-node';
import type { NatsConnection } from './nats';
import type { Logger } from './logger';
import { Counter, Gauge, type Registry } from 'prom-client';
import { extractTrace, injectTrace, inSpan, linkFromHeaders, SpanKind } from './tracing';

const DAY_NS = 24 * 60 * 60 * 1_000_000_000;

/**
 * The domain event stream `<PREFIX>_EVENTS` on `<prefix>.events.>`. Producer and
 * consumers both ensure it, so services may start in any order. `replicas`
 * (JETSTREAM_REPLICAS) applies to a new stream and raises or lowers an
 * existing one, so a deployment moving to a NATS cluster only changes a setting.
 */
export async function ensureEventStream(nc: NatsConnection, prefix: string, replicas = 1): Promise<string> {
  const name = eventStreamName(prefix);
  await ensureStream(nc, {
    name,
    subjects: [subjects(prefix).events.all],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    max_age: 7 * DAY_NS,
    duplicate_window: 2 * 60 * 1_000_000_000,
    num_replicas: replicas,
  });
  return name;
}

/** Streams and names derived from the prefix; the dead-letter stream keeps what consumers gave up on. */
export const deadLetterStreamName = (prefix: string) => `${prefix.toUpperCase()}_DEAD`;

function ensureDeadLetterStream(nc: NatsConnection, prefix: string, replicas: number): Promise<void> {
  return ensureStream(nc, {
    name: deadLetterStreamName(prefix),
    subjects: [subjects(prefix).events.deadLetterAll],
    storage: StorageType.File,
    max_age: 30 * DAY_NS,
    num_replicas: replicas,
  });
}

type StreamSpec = Parameters<Awaited<ReturnType<typeof jetstreamManager>>['streams']['add']>[0] & { name: string; num_replicas: number };

async function ensureStream(nc: NatsConnection, spec: StreamSpec): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const existing = await jsm.streams.info(spec.name).catch(() => undefined);
  try {
    if (!existing) await jsm.streams.add(spec);
    else if (existing.config.num_replicas !== spec.num_replicas) await jsm.streams.update(spec.name, { ...existing.config, num_replicas: spec.num_replicas });
  } catch (err) {
    // Another service won a creation race: fine if the stream is there now, with the replicas asked for.
    const now = await jsm.streams.info(spec.name).catch(() => undefined);
    if (now?.config.num_replicas === spec.num_replicas) return;
    throw new Error(
      `JetStream stream ${spec.name} with ${spec.num_replicas} replica(s): ${(err as Error).message} ` +
        '(JETSTREAM_REPLICAS must not exceed the number of NATS servers with JetStream)',
    );
  }
}

/**
 * Thrown by a handler for an event it can never process (it does not parse,
 * say): the event goes to the dead-letter stream at once instead of being
 * retried. A transient error (isTransientError) is retried for as long as it
 * lasts; any other error up to `maxDeliver` deliveries.
 */
export class PoisonEventError extends Error {
  override name = 'PoisonEventError';
}

/** Whether an error means the event can never be handled, so retrying it is pointless. */
export const isPoisonError = (err: unknown): boolean =>
  err instanceof PoisonEventError || err instanceof SyntaxError || (err as Error | undefined)?.name === 'ZodError';

/** Node's socket errors: the server is down, restarting, unreachable or not resolvable yet. */
const TRANSIENT_ERRNO = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED']);
/**
 * PostgreSQL's SQLSTATEs for "not now": admin shutdown, crash shutdown,
 * cannot connect now (starting up, shutting down, in recovery), too many
 * connections, serialization failure, deadlock (the statement is meant to be
 * retried). Class 08 (connection exception) is matched by its prefix.
 */
const TRANSIENT_SQLSTATE = new Set(['57P01', '57P02', '57P03', '53300', '40001', '40P01']);
/**
 * Messages of client errors that carry no code: node-postgres's "Connection
 * terminated (unexpectedly | due to connection timeout)" and "… is not
 * queryable", pg-pool's checkout timeout; ioredis's closed connection and
 * its fail-fast client (no offline queue) while Redis is away.
 */
const TRANSIENT_MESSAGE =
  /^(Connection terminated\b|timeout exceeded when trying to connect$|Client has encountered a connection error and is not queryable$|Client was closed and is not queryable$|Connection is closed\.?$|Stream isn't writeable and enableOfflineQueue options is false$)/;

/**
 * Whether an error means "a dependency is away, try later": PostgreSQL or
 * Redis not reachable, restarting or overloaded, or another service not
 * answering on the bus (BusClient's SERVICE_UNAVAILABLE, which is also what a
 * service answers when its own data store is down). Such a failure says
 * nothing about the event, so the consumer retries it until the dependency
 * is back rather than dead-lettering a valid event. Looks through `cause`
 * (and an AggregateError's errors, all of which must be transient).
 */
export function isTransientError(err: unknown): boolean {
  const seen = new Set<unknown>();
  const check = (e: unknown): boolean => {
    if (typeof e !== 'object' || e === null || seen.has(e) || seen.size > 8) return false;
    seen.add(e);
    const { code, name, message, cause } = e as { code?: unknown; name?: unknown; message?: unknown; cause?: unknown };
    if ((e instanceof ChatError || name === 'ChatError') && code === 'SERVICE_UNAVAILABLE') return true;
    if (typeof code === 'string' && (TRANSIENT_ERRNO.has(code) || TRANSIENT_SQLSTATE.has(code) || /^08[0-9A-Z]{3}$/.test(code))) return true;
    if (name === 'MaxRetriesPerRequestError') return true;
    if (typeof message === 'string' && TRANSIENT_MESSAGE.test(message)) return true;
    if (e instanceof AggregateError && e.errors.length > 0 && e.errors.every(check)) return true;
    return check(cause);
  };
  return check(err);
}

/** Today's curve: 0.5 s, 1 s, 2 s … doubling per delivery, at most 30 s. */
const RETRY_DELAY_CAP_MS = 30_000;
const defaultRetryDelayMs = (attempt: number) => 250 * 2 ** attempt;

/** One event handed to a batch handler: its subject and its parsed JSON body. */
export interface ConsumedEvent {
  subject: string;
  data: unknown;
}

/**
 * A batch handler's answer: one entry per event, in the order given;
 * `undefined` when the event was handled (it is acked), otherwise why not
 * (a poison error dead-letters that event alone, any other naks it alone).
 */
export type BatchResults = ReadonlyArray<Error | undefined>;

/** The largest batch handed to a handler; also how many messages the client keeps buffered. */
export const MAX_BATCH = 256;
/**
 * Messages delivered and not yet acked, across all replicas sharing the
 * durable: enough for two replicas each to hold a batch in flight and the
 * next one buffered, without letting a stuck consumer hoard the stream.
 */
const MAX_ACK_PENDING = 4 * MAX_BATCH;
/**
 * How long a delivered message may stay unacked before JetStream delivers it
 * again. A message can wait out the batch (or event) ahead of it and then its
 * own, so both modes tell JetStream "still working" every ack_wait / 3 for
 * what is in flight: a slow handler (a database restarting, dependencies
 * timing out) does not get its events redelivered to another replica behind
 * its back.
 */
const ACK_WAIT_MS = 30_000;
/** How long each pull request stays open; heartbeats come every half of it. */
const PULL_EXPIRES_MS = 5000;

interface ConsumerBase {
  prefix: string;
  durable: string;
  /** One subject filter (wildcards allowed): multi-filter consumers need nats-server 2.10, Debian 12 ships 2.9. */
  filterSubject: string;
  /**
   * Deliveries an event failing with an unknown error (not poison, not
   * transient: a bug, say) gets before it is dead-lettered; default 10.
   * Poison is dead-lettered at once, transient failures are retried forever.
   */
  maxDeliver?: number;
  /** The delay before a failed event's next delivery, by attempt (1 after the first); default 250 ms · 2^attempt, at most 30 s. For tests. */
  retryDelayMs?: (attempt: number) => number;
  /** ack_wait in ms; default 30 s. For tests (a handler slower than it). */
  ackWaitMs?: number;
  log: Logger;
  /** The service's registry: `chat_jetstream_consumer_pending` and `chat_events_dead_lettered_total` go there. */
  registry?: Registry;
  /** The owning service, for its spans. */
  service?: string;
  /** JETSTREAM_REPLICAS, for the streams this consumer ensures. */
  replicas?: number;
}

export type ConsumerOptions = ConsumerBase &
  (
    | {
        /** One event at a time, in stream order: resolves when handled, throws to retry (or dead-letter a poison event). */
        handle: (subject: string, data: unknown) => Promise<void>;
        handleBatch?: undefined;
      }
    | {
        /**
         * Every event that has arrived (at most `maxBatch`), together, so a
         * handler can do per batch what it would otherwise do per event.
         * Throwing fails the whole batch: every event is retried.
         */
        handleBatch: (events: ConsumedEvent[]) => Promise<BatchResults>;
        /** At most MAX_BATCH (the client's buffer); a handler whose requests take bounded id lists asks for fewer. */
        maxBatch?: number;
        /**
         * How long a batch stays open for more events after its first one
         * (0: only those already buffered). Under a steady stream a few ms
         * turn many batches of one or two into a few full ones, at that much
         * latency for a derived view.
         */
        lingerMs?: number;
        handle?: undefined;
      }
  );

/** One metric per registry, however many consumers a service runs. */
function consumerMetrics(registry: Registry | undefined) {
  if (!registry) return undefined;
  const dead =
    (registry.getSingleMetric('chat_events_dead_lettered_total') as Counter<'consumer'> | undefined) ??
    new Counter({ name: 'chat_events_dead_lettered_total', help: 'Events parked on the dead-letter stream, by consumer', labelNames: ['consumer'] as const, registers: [registry] });
  const pending =
    (registry.getSingleMetric('chat_jetstream_consumer_pending') as Gauge<'consumer'> | undefined) ??
    new Gauge({
      name: 'chat_jetstream_consumer_pending',
      help: 'Events on the stream this consumer has not finished: not yet delivered plus delivered and not yet acked',
      labelNames: ['consumer'] as const,
      registers: [registry],
      async collect() {
        await Promise.all([...pendingSources.get(registry)?.entries() ?? []].map(async ([name, read]) => {
          const n = await read().catch(() => undefined); // NATS away: keep the last value
          if (n !== undefined) this.set({ consumer: name }, n);
        }));
      },
    });
  return { dead, pending };
}
const pendingSources = new WeakMap<Registry, Map<string, () => Promise<number>>>();

/** Resolves, after every message already buffered has been taken, with this marker. */
const DRAINED = Symbol('drained');

/**
 * A durable, explicit-ack pull consumer; handlers must be idempotent. A
 * failed event is redelivered with a growing delay (at most 30 s), and only
 * poison is ever given up on: a poison error dead-letters the event at once;
 * a transient error (isTransientError: a dependency away) is retried for as
 * long as it lasts, so an outage of any length loses nothing; any other
 * error is retried up to `maxDeliver` deliveries, then dead-lettered (an
 * unknown failure must not hold the event forever, nor be retried forever).
 * With `handleBatch`, messages are handed over in batches of whatever has
 * arrived; each is still acked, retried or dead-lettered on its own.
 */
export async function runConsumer(nc: NatsConnection, opts: ConsumerOptions): Promise<{ stop(): Promise<void> }> {
  const stream = await ensureEventStream(nc, opts.prefix, opts.replicas);
  await ensureDeadLetterStream(nc, opts.prefix, opts.replicas ?? 1);
  const js = jetstream(nc);
  const deadSubject = subjects(opts.prefix).events.deadLetter(opts.durable);
  const jsm = await jetstreamManager(nc);
  const maxDeliver = opts.maxDeliver ?? 10;
  const retryDelayMs = opts.retryDelayMs ?? defaultRetryDelayMs;
  const ackWaitMs = opts.ackWaitMs ?? ACK_WAIT_MS;
  // Adding an existing durable with other settings updates it (nats-server 2.9+), so a deploy changes them in place
  // (a consumer created with max_deliver 10 by an earlier release becomes -1; checked on 2.9.10).
  await jsm.consumers.add(stream, {
    durable_name: opts.durable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subject: opts.filterSubject,
    // Unlimited on the server: JetStream would otherwise stop redelivering after maxDeliver, silently,
    // whatever the failure. settleFailed applies the limit, to unknown errors only.
    max_deliver: -1,
    ack_wait: ackWaitMs * 1_000_000,
    max_ack_pending: MAX_ACK_PENDING,
  });
  const consumer = await js.consumers.get(stream, opts.durable);
  const metrics = consumerMetrics(opts.registry);
  // Present at 0 from the start, so `increase()` sees the first dead letter.
  metrics?.dead.inc({ consumer: opts.durable }, 0);
  if (opts.registry) {
    const sources = pendingSources.get(opts.registry) ?? new Map<string, () => Promise<number>>();
    pendingSources.set(opts.registry, sources);
    sources.set(opts.durable, async () => {
      const info = await consumer.info(true);
      return info.num_pending + info.num_ack_pending;
    });
  }
  const spanAttributes = { 'chat.service': opts.service ?? opts.durable, 'messaging.system': 'nats' };
  // A pull lost with its server (the consumer's leader moving to another NATS
  // node) is noticed after two missed idle heartbeats, half of `expires`
  // each: at the library's default (30 s) a consumer stood still for 30 s
  // after a node died (found by the chaos run); at PULL_EXPIRES_MS it pulls
  // again within about that long.
  const messages: ConsumerMessages = await consumer.consume({ max_messages: MAX_BATCH, expires: PULL_EXPIRES_MS });
  const done = opts.handleBatch
    ? batchLoop(opts.handleBatch, Math.max(1, Math.min(opts.maxBatch ?? MAX_BATCH, MAX_BATCH)), opts.lingerMs ?? 0)
    : singleLoop(opts.handle);

  async function singleLoop(handle: (subject: string, data: unknown) => Promise<void>) {
    for await (const m of messages) await handleOne(m, handle);
  }

  // Each event is handled in a span whose parent is the trace that produced it
  // (the relay's publish, itself a child of the request that wrote the event).
  function handleOne(m: JsMsg, handle: (subject: string, data: unknown) => Promise<void>) {
    return inSpan(
      `${opts.durable} process`,
      { kind: SpanKind.CONSUMER, parent: extractTrace(m.headers), attributes: { ...spanAttributes, 'messaging.destination.name': m.subject } },
      async () => {
        try {
          await whileWorking([m], () => handle(m.subject, m.json()));
          m.ack();
        } catch (err) {
          logFailure(err, { subject: m.subject, seq: m.seq, attempt: m.info.deliveryCount });
          await settleFailed(m, err);
        }
      },
    );
  }

  /**
   * Takes a first message (waiting for it), then every message already
   * buffered, up to `max`: under load batches fill up, when idle a lone
   * event goes at once. The iterator hands buffered messages over in
   * microtasks, so a macrotask (setImmediate) resolving first means none is left.
   */
  async function batchLoop(handleBatch: (events: ConsumedEvent[]) => Promise<BatchResults>, max: number, lingerMs: number) {
    const it = messages[Symbol.asyncIterator]();
    let next = it.next();
    for (;;) {
      const first = await next;
      if (first.done) return;
      const batch = [first.value];
      next = it.next();
      const drained = new Promise<typeof DRAINED>((resolve) => (lingerMs > 0 ? setTimeout(resolve, lingerMs, DRAINED) : setImmediate(resolve, DRAINED)));
      let ended = false;
      while (batch.length < max) {
        const r = await Promise.race([next, drained]);
        if (r === DRAINED) break;
        if (r.done) {
          ended = true;
          break;
        }
        batch.push(r.value);
        next = it.next();
      }
      try {
        await handleMany(batch, handleBatch);
      } catch (err) {
        // Only settling can throw here (the connection closing under an ack): the unsettled events come back after ack_wait.
        opts.log.error({ err, events: batch.length }, 'event batch could not be settled');
      }
      if (ended) return;
    }
  }

  // One span per batch, cheap whatever its size: its parent is the first
  // event's trace (a batch of one reads exactly like single mode), the
  // other events' traces are links.
  function handleMany(batch: JsMsg[], handleBatch: (events: ConsumedEvent[]) => Promise<BatchResults>) {
    const links = batch.slice(1).flatMap((m) => linkFromHeaders(m.headers) ?? []);
    const subject = batch.every((m) => m.subject === batch[0]!.subject) ? batch[0]!.subject : opts.filterSubject;
    return inSpan(
      `${opts.durable} process`,
      {
        kind: SpanKind.CONSUMER,
        parent: extractTrace(batch[0]!.headers),
        links,
        attributes: { ...spanAttributes, 'messaging.destination.name': subject, 'messaging.batch.message_count': batch.length },
      },
      () => handleBatchInSpan(batch, handleBatch),
    );
  }

  async function handleBatchInSpan(batch: JsMsg[], handleBatch: (events: ConsumedEvent[]) => Promise<BatchResults>) {
    const owners: JsMsg[] = [];
    const events: ConsumedEvent[] = [];
    for (const m of batch) {
      try {
        events.push({ subject: m.subject, data: m.json() });
        owners.push(m);
      } catch (err) {
        opts.log.error({ err, subject: m.subject, attempt: m.info.deliveryCount, seq: m.seq, poison: true }, 'event is not JSON');
        await settleFailed(m, err);
      }
    }
    if (events.length === 0) return;
    const results = await runBatch(events, owners, handleBatch);
    // Failures are grouped by error, so a dependency down logs one line per batch, not one per event.
    const failed = new Map<Error, JsMsg[]>();
    owners.forEach((m, i) => {
      const err = results[i];
      if (err === undefined) m.ack();
      else if (failed.has(err)) failed.get(err)!.push(m);
      else failed.set(err, [m]);
    });
    for (const [err, ms] of failed) {
      logFailure(err, { events: ms.length, subject: ms[0]!.subject, seqs: ms.map((m) => m.seq).slice(0, 20), attempt: Math.max(...ms.map((m) => m.info.deliveryCount)) });
      await Promise.all(ms.map((m) => settleFailed(m, err)));
    }
  }

  /** Runs `fn` telling JetStream every ack_wait / 3 that `ms` are still being worked on, so they are not redelivered meanwhile. */
  async function whileWorking<T>(ms: readonly JsMsg[], fn: () => Promise<T>): Promise<T> {
    const heartbeat = setInterval(() => {
      try {
        for (const m of ms) m.working();
      } catch {
        // The connection is closing: the events come back after ack_wait anyway.
      }
    }, ackWaitMs / 3);
    try {
      return await fn();
    } finally {
      clearInterval(heartbeat);
    }
  }

  function runBatch(events: ConsumedEvent[], owners: JsMsg[], handleBatch: (events: ConsumedEvent[]) => Promise<BatchResults>): Promise<BatchResults> {
    return whileWorking(owners, () => decideBatch(events, handleBatch));
  }

  async function decideBatch(events: ConsumedEvent[], handleBatch: (events: ConsumedEvent[]) => Promise<BatchResults>): Promise<BatchResults> {
    try {
      const results = await handleBatch(events);
      if (results.length !== events.length) throw new Error(`batch handler answered ${results.length} results for ${events.length} events`);
      return results;
    } catch (err) {
      // Which event cannot parse is unknown: each goes alone, so only that one is dead-lettered.
      if (isPoisonError(err) && events.length > 1) {
        const one: Array<Error | undefined> = [];
        for (const e of events) {
          one.push(
            await handleBatch([e]).then(
              (r) => (r.length === 1 ? r[0] : new Error(`batch handler answered ${r.length} results for 1 event`)),
              (e2: unknown) => toError(e2),
            ),
          );
        }
        return one;
      }
      // Anything else (a database or dependency away) concerns every event: all are retried.
      const failure = toError(err);
      return events.map(() => failure);
    }
  }

  /**
   * One line per failed event (single mode) or per error of a batch. A
   * dependency away is expected to pass, and is retried however long it
   * lasts: a warning, with the attempt count. Poison and unknown errors are
   * errors (they may end on the dead-letter stream).
   */
  function logFailure(err: unknown, fields: Record<string, unknown>): void {
    const poison = isPoisonError(err);
    if (!poison && isTransientError(err)) opts.log.warn({ err, ...fields, transient: true }, 'event handler failed on a dependency that is away: will retry until it is back');
    else opts.log.error({ err, ...fields, poison }, 'event handler failed');
  }

  /**
   * Retries a failed event with a growing delay, or parks it on the
   * dead-letter stream: at once when it is poison, after `maxDeliver`
   * deliveries when the error is unknown, never when it is transient (the
   * event is valid; only a dependency is missing, and it will be back).
   */
  async function settleFailed(m: JsMsg, err: unknown): Promise<void> {
    const attempt = m.info.deliveryCount;
    const poison = isPoisonError(err);
    if (!poison && (attempt < maxDeliver || isTransientError(err))) {
      m.nak(Math.max(0, Math.min(RETRY_DELAY_CAP_MS, retryDelayMs(attempt))));
      return;
    }
    // One bad event must not hold up the rest: park it, with why, and move on.
    try {
      const h = injectTrace(natsHeaders());
      h.set('Chat-Original-Subject', m.subject);
      h.set('Chat-Dead-Reason', String((err as Error)?.message ?? err).slice(0, 500));
      h.set('Chat-Attempts', String(attempt));
      await js.publish(deadSubject, m.data, { headers: h });
      // No reason: nats-server 2.9 only knows a bare +TERM and ignores "+TERM <reason>" (the event would come back after ack_wait).
      m.term();
      metrics?.dead.inc({ consumer: opts.durable });
    } catch (dlqErr) {
      opts.log.error({ err: dlqErr, subject: m.subject }, 'dead-letter publish failed: will retry the event');
      m.nak(5000);
    }
  }

  return {
    async stop() {
      pendingSources.get(opts.registry!)?.delete(opts.durable);
      await messages.close();
      await done.catch(() => undefined);
    },
  };
}

const toError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)));
