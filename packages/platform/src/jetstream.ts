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
import { eventStreamName, subjects } from '@chat/contracts';
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
 * retried. Any other error is retried up to MaxDeliver first.
 */
export class PoisonEventError extends Error {
  override name = 'PoisonEventError';
}

/** Whether an error means the event can never be handled, so retrying it is pointless. */
export const isPoisonError = (err: unknown): boolean =>
  err instanceof PoisonEventError || err instanceof SyntaxError || (err as Error | undefined)?.name === 'ZodError';

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
 * again. A message can wait out the batch ahead of it and then its own, so
 * batch mode tells JetStream "still working" every ACK_WAIT_MS / 3 for the
 * batch in flight: a slow batch (dependencies timing out) is not redelivered
 * to another replica behind its back.
 */
const ACK_WAIT_MS = 30_000;

interface ConsumerBase {
  prefix: string;
  durable: string;
  /** One subject filter (wildcards allowed): multi-filter consumers need nats-server 2.10, Debian 12 ships 2.9. */
  filterSubject: string;
  maxDeliver?: number;
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
 * A durable, explicit-ack pull consumer. A handler that throws is redelivered
 * with a growing delay up to `maxDeliver` times; handlers must be idempotent.
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
  // Adding an existing durable with other settings updates it (nats-server 2.9+), so a deploy changes them in place.
  await jsm.consumers.add(stream, {
    durable_name: opts.durable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subject: opts.filterSubject,
    max_deliver: maxDeliver,
    ack_wait: ACK_WAIT_MS * 1_000_000,
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
  const messages: ConsumerMessages = await consumer.consume({ max_messages: MAX_BATCH });
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
          await handle(m.subject, m.json());
          m.ack();
        } catch (err) {
          opts.log.error({ err, subject: m.subject, attempt: m.info.deliveryCount, seq: m.seq, poison: isPoisonError(err) }, 'event handler failed');
          await settleFailed(m, err, isPoisonError(err));
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
        await settleFailed(m, err, true);
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
      const poison = isPoisonError(err);
      opts.log.error({ err, events: ms.length, subject: ms[0]!.subject, seqs: ms.map((m) => m.seq).slice(0, 20), attempt: ms[0]!.info.deliveryCount, poison }, 'event handler failed');
      await Promise.all(ms.map((m) => settleFailed(m, err, poison)));
    }
  }

  async function runBatch(events: ConsumedEvent[], owners: JsMsg[], handleBatch: (events: ConsumedEvent[]) => Promise<BatchResults>): Promise<BatchResults> {
    const heartbeat = setInterval(() => {
      try {
        for (const m of owners) m.working();
      } catch {
        // The connection is closing: the events come back after ack_wait anyway.
      }
    }, ACK_WAIT_MS / 3);
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
    } finally {
      clearInterval(heartbeat);
    }
  }

  /** Retries a failed event with a growing delay, or parks it on the dead-letter stream when it is poison or out of attempts. */
  async function settleFailed(m: JsMsg, err: unknown, poison: boolean): Promise<void> {
    const attempt = m.info.deliveryCount;
    if (!poison && attempt < maxDeliver) {
      m.nak(Math.min(30_000, 250 * 2 ** attempt));
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
