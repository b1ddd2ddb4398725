import { randomBytes } from 'node:crypto';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { eventStreamName } from '@chat/contracts';
import { deadLetterStreamName, ensureEventStream, PoisonEventError, runConsumer, type BatchResults, type ConsumedEvent } from '../src/jetstream';
import { createLogger } from '../src/logger';

/**
 * runConsumer's batch mode against a real nats-server: what arrives together
 * is handed over together, and each event is still settled on its own.
 */
describe('runConsumer with handleBatch (real NATS)', () => {
  const log = createLogger('consumer-batch', (process.env.TEST_LOG_LEVEL ?? 'silent') as 'silent');
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let prefix: string;
  let stop: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    nc = await connect({ servers: '127.0.0.1:4222' });
    jsm = await jetstreamManager(nc);
  });
  afterEach(async () => {
    await stop?.();
    stop = undefined;
    await jsm.streams.delete(eventStreamName(prefix)).catch(() => undefined);
    await jsm.streams.delete(deadLetterStreamName(prefix)).catch(() => undefined);
  });
  afterAll(async () => {
    await nc?.close();
  });

  /** A fresh prefix whose stream already holds `bodies`, published before any consumer exists, so they wait together. */
  async function backlog(bodies: string[]): Promise<void> {
    prefix = `b${randomBytes(5).toString('hex')}`;
    await ensureEventStream(nc, prefix, 1);
    const js = jetstream(nc);
    await Promise.all(bodies.map((b) => js.publish(`${prefix}.events.test.thing`, b)));
  }

  async function settled(durable: string): Promise<void> {
    await expect
      .poll(async () => {
        const info = await jsm.consumers.info(eventStreamName(prefix), durable);
        return info.num_pending + info.num_ack_pending;
      }, { timeout: 10_000, interval: 100 })
      .toBe(0);
  }

  async function parked(durable: string): Promise<Array<{ data: string; subject: string | undefined }>> {
    const info = await jsm.streams.info(deadLetterStreamName(prefix));
    const out = [];
    for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(deadLetterStreamName(prefix), { seq });
      if (m && m.subject === `${prefix}.dead.${durable}`) out.push({ data: new TextDecoder().decode(m.data), subject: m.header.get('Chat-Original-Subject') });
    }
    return out;
  }

  it('hands the waiting events over together; a poison event is dead-lettered alone, a transient failure retried alone, the rest acked once', async () => {
    // 0..59; #7 is not JSON, #23 the handler calls poison, #41 fails once (a dependency away).
    await backlog(Array.from({ length: 60 }, (_, n) => (n === 7 ? 'not json' : JSON.stringify({ n }))));
    const registry = new Registry();
    const batches: number[][] = [];
    const seen = new Map<number, number>();
    const consumer = await runConsumer(nc, {
      prefix,
      durable: 'batch-test',
      filterSubject: `${prefix}.events.test.>`,
      log,
      registry,
      maxBatch: 32,
      handleBatch: async (events: ConsumedEvent[]): Promise<BatchResults> => {
        batches.push(events.map((e) => (e.data as { n: number }).n));
        return events.map((e) => {
          const { n } = e.data as { n: number };
          seen.set(n, (seen.get(n) ?? 0) + 1);
          if (n === 23) return new PoisonEventError('never valid');
          if (n === 41 && seen.get(n) === 1) return new Error('dependency did not answer');
          return undefined;
        });
      },
    });
    stop = () => consumer.stop();
    await settled('batch-test');

    // Batching happened, within the bound asked for, and #23 came with valid neighbours.
    expect(Math.max(...batches.map((b) => b.length))).toBeGreaterThan(1);
    expect(batches.every((b) => b.length <= 32)).toBe(true);
    const withPoison = batches.find((b) => b.includes(23))!;
    expect(withPoison.length).toBeGreaterThan(1);
    // Each valid event was handled once (acked with its batch, not failed with #23); #41 twice; #7 never reached the handler.
    for (let n = 0; n < 60; n++) {
      if (n === 7) expect(seen.has(n)).toBe(false);
      else expect(seen.get(n), `event ${n}`).toBe(n === 41 ? 2 : 1);
    }
    // Exactly the two poison events are parked, with their original subject.
    const dead = await parked('batch-test');
    expect(dead.map((d) => d.data).sort()).toEqual([JSON.stringify({ n: 23 }), 'not json'].sort());
    expect(dead.every((d) => d.subject === `${prefix}.events.test.thing`)).toBe(true);
    const metric = await registry.getSingleMetricAsString('chat_events_dead_lettered_total');
    expect(metric).toContain('chat_events_dead_lettered_total{consumer="batch-test"} 2');
  });

  it('a handler failing as a whole has every event of the batch retried, none dead-lettered', async () => {
    await backlog(Array.from({ length: 20 }, (_, n) => JSON.stringify({ n })));
    const seen = new Map<number, number>();
    let calls = 0;
    const consumer = await runConsumer(nc, {
      prefix,
      durable: 'batch-whole',
      filterSubject: `${prefix}.events.test.>`,
      log,
      handleBatch: async (events) => {
        for (const e of events) seen.set((e.data as { n: number }).n, (seen.get((e.data as { n: number }).n) ?? 0) + 1);
        if (++calls === 1) throw new Error('database away');
        return events.map(() => undefined);
      },
    });
    stop = () => consumer.stop();
    await settled('batch-whole');
    expect([...seen.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, n) => n));
    // The first batch's events twice (failed, then handled), any later ones once.
    expect([...seen.values()].every((v) => v === 1 || v === 2)).toBe(true);
    expect([...seen.values()].some((v) => v === 2)).toBe(true);
    const info = await jsm.streams.info(deadLetterStreamName(prefix));
    expect(info.state.messages).toBe(0);
  });

  it('a poison error thrown for the whole batch is narrowed down: only the event that causes it is dead-lettered', async () => {
    await backlog(Array.from({ length: 12 }, (_, n) => JSON.stringify({ n })));
    const handled = new Set<number>();
    const consumer = await runConsumer(nc, {
      prefix,
      durable: 'batch-narrow',
      filterSubject: `${prefix}.events.test.>`,
      log,
      handleBatch: async (events) => {
        // A handler that validates all or nothing: one bad event throws for everyone.
        if (events.some((e) => (e.data as { n: number }).n === 5)) throw new PoisonEventError('event 5 is malformed');
        for (const e of events) handled.add((e.data as { n: number }).n);
        return events.map(() => undefined);
      },
    });
    stop = () => consumer.stop();
    await settled('batch-narrow');
    expect([...handled].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11]);
    expect((await parked('batch-narrow')).map((d) => d.data)).toEqual([JSON.stringify({ n: 5 })]);
  });

  it('single mode (handle) still takes one event at a time; a dead-lettered event is settled at once, not redelivered after ack_wait', async () => {
    await backlog(Array.from({ length: 6 }, (_, n) => (n === 2 ? 'not json' : JSON.stringify({ n }))));
    const order: number[] = [];
    const consumer = await runConsumer(nc, {
      prefix,
      durable: 'single',
      filterSubject: `${prefix}.events.test.>`,
      log,
      handle: async (_subject, data) => {
        const { n } = data as { n: number };
        if (n === 4) throw new PoisonEventError('never valid');
        order.push(n);
      },
    });
    stop = () => consumer.stop();
    await settled('single');
    expect(order).toEqual([0, 1, 3, 5]);
    expect((await parked('single')).map((d) => d.data).sort()).toEqual([JSON.stringify({ n: 4 }), 'not json'].sort());
  });

  it('states its settings on the durable: explicit acks, ack_wait 30 s, max_ack_pending 1024', async () => {
    await backlog([]);
    const consumer = await runConsumer(nc, { prefix, durable: 'batch-config', filterSubject: `${prefix}.events.test.>`, log, handleBatch: async (e) => e.map(() => undefined) });
    stop = () => consumer.stop();
    const info = await jsm.consumers.info(eventStreamName(prefix), 'batch-config');
    expect(info.config.ack_wait).toBe(30_000_000_000);
    expect(info.config.max_ack_pending).toBe(1024);
  });
});
