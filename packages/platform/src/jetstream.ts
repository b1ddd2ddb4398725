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
import { extractTrace, injectTrace, inSpan, SpanKind } from './tracing';

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

export interface ConsumerOptions {
  prefix: string;
  durable: string;
  /** One subject filter (wildcards allowed): multi-filter consumers need nats-server 2.10, Debian 12 ships 2.9. */
  filterSubject: string;
  maxDeliver?: number;
  handle: (subject: string, data: unknown) => Promise<void>;
  log: Logger;
  /** The service's registry: `chat_jetstream_consumer_pending` and `chat_events_dead_lettered_total` go there. */
  registry?: Registry;
  /** The owning service, for its spans. */
  service?: string;
  /** JETSTREAM_REPLICAS, for the streams this consumer ensures. */
  replicas?: number;
}

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

/**
 * A durable, explicit-ack pull consumer. A handler that throws is redelivered
 * with a growing delay up to `maxDeliver` times; handlers must be idempotent.
 */
export async function runConsumer(nc: NatsConnection, opts: ConsumerOptions): Promise<{ stop(): Promise<void> }> {
  const stream = await ensureEventStream(nc, opts.prefix, opts.replicas);
  await ensureDeadLetterStream(nc, opts.prefix, opts.replicas ?? 1);
  const js = jetstream(nc);
  const deadSubject = subjects(opts.prefix).events.deadLetter(opts.durable);
  const jsm = await jetstreamManager(nc);
  const maxDeliver = opts.maxDeliver ?? 10;
  await jsm.consumers.add(stream, {
    durable_name: opts.durable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subject: opts.filterSubject,
    max_deliver: maxDeliver,
    ack_wait: 30_000_000_000,
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
  const messages: ConsumerMessages = await consumer.consume({ max_messages: 256 });
  const done = (async () => {
    for await (const m of messages) await handleOne(m);
  })();

  // Each event is handled in a span whose parent is the trace that produced it
  // (the relay's publish, itself a child of the request that wrote the event).
  function handleOne(m: JsMsg) {
    return inSpan(
      `${opts.durable} process`,
      { kind: SpanKind.CONSUMER, parent: extractTrace(m.headers), attributes: { 'chat.service': opts.service ?? opts.durable, 'messaging.system': 'nats', 'messaging.destination.name': m.subject } },
      () => handleInSpan(m),
    );
  }

  async function handleInSpan(m: JsMsg) {
    try {
      await opts.handle(m.subject, m.json());
      m.ack();
    } catch (err) {
      const attempt = m.info.deliveryCount;
      const poison = err instanceof PoisonEventError || err instanceof SyntaxError || (err as Error).name === 'ZodError';
      opts.log.error({ err, subject: m.subject, attempt, seq: m.seq, poison }, 'event handler failed');
      if (!poison && attempt < maxDeliver) {
        m.nak(Math.min(30_000, 250 * 2 ** attempt));
        return;
      }
      // One bad event must not hold up the rest: park it, with why, and move on.
      try {
        const h = injectTrace(natsHeaders());
        h.set('Chat-Original-Subject', m.subject);
        h.set('Chat-Dead-Reason', String((err as Error).message).slice(0, 500));
        h.set('Chat-Attempts', String(attempt));
        await js.publish(deadSubject, m.data, { headers: h });
        m.term('dead-lettered');
        metrics?.dead.inc({ consumer: opts.durable });
      } catch (dlqErr) {
        opts.log.error({ err: dlqErr, subject: m.subject }, 'dead-letter publish failed: will retry the event');
        m.nak(5000);
      }
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
