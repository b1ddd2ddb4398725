import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { withTransaction, type Database, type Queryable } from './db';
import type { Logger } from './logger';
import type { NatsConnection } from './nats';
import { WorkLoop } from './work-loop';
import { Counter, Gauge, type Registry } from 'prom-client';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { contextFromCarrier, injectTrace, inSpan, SpanKind, traceCarrier } from './tracing';

const BATCH = 100;
const IDLE_POLL_MS = 1000;
const RETRY_MS = 1000;
const PACE_MS = 25;
const PRUNE_EVERY_MS = 60 * 60 * 1000;

/**
 * Appends a domain event to the service's `outbox` table (same schema, same
 * transaction as the change it describes). `type` is the event's subject
 * below `<prefix>.events.`, e.g. `message.created`.
 */
export async function appendOutbox(tx: Queryable, eventId: string, type: string, payload: unknown, messageId?: string): Promise<void> {
  // The writing request's trace context travels with the row: the relay
  // publishes later, from its own loop, and continues that trace.
  const trace = traceCarrier();
  const values = [eventId, type, JSON.stringify(payload), trace === null ? null : JSON.stringify(trace)];
  // `messageId`: the message the event is about, in an outbox that records it (the messages service's: a delete scrubs those rows).
  await tx.query(
    messageId === undefined
      ? 'INSERT INTO outbox (event_id, subject, payload, trace_context) VALUES ($1, $2, $3, $4)'
      : 'INSERT INTO outbox (event_id, subject, payload, trace_context, message_id) VALUES ($1, $2, $3, $4, $5)',
    messageId === undefined ? values : [...values, messageId],
  );
}


interface OutboxRow {
  id: string;
  event_id: string;
  subject: string;
  /** The event's JSON as stored. */
  payload: string;
  trace_context: Record<string, string> | null;
  [k: string]: unknown;
}

/**
 * Publishes outbox rows to JetStream in id order, then marks them published,
 * all inside one transaction that holds an advisory lock, so one relay at a
 * time works however many replicas run. It selects every unpublished row
 * rather than "ids after the last one", so a row whose transaction commits
 * late (a gap in the sequence) is picked up on a later pass, never skipped.
 * A crash after the publish ack but before the commit republishes the same
 * Nats-Msg-Id, which JetStream's duplicate window drops.
 */
export class OutboxRelay extends WorkLoop {
  private readonly js: JetStreamClient;
  private lastPrune = 0;

  /** `lockName` is unique per owning service (e.g. its schema), so each service's relays exclude only each other. */
  constructor(
    nc: NatsConnection,
    private readonly db: Database,
    private readonly prefix: string,
    private readonly lockName: string,
    log: Logger,
    registry?: Registry,
  ) {
    // Rounds back to back would each pay a transaction (and wake every consumer) for a row or two; 25 ms apart they carry dozens.
    super(log, 'outbox relay', RETRY_MS, PACE_MS);
    this.js = jetstream(nc);
    if (registry) {
      this.published = new Counter({ name: 'chat_outbox_published_total', help: 'Outbox events published to JetStream', registers: [registry] });
      const lag = () => this.lagSeconds();
      new Gauge({
        name: 'chat_outbox_lag_seconds',
        help: 'Age of the oldest event not yet published to JetStream (0 when none waits)',
        registers: [registry],
        async collect() {
          const seconds = await lag().catch(() => undefined); // database away: keep the last value
          if (seconds !== undefined) this.set(seconds);
        },
      });
    }
  }

  private readonly published?: Counter;

  /** How long the oldest unpublished event has waited, in seconds. */
  async lagSeconds(): Promise<number> {
    // On the pool itself, not the instrumented query: a scrape is not a statement worth timing.
    const { rows } = await this.db.pool.query<{ lag: number | null }>(
      'SELECT EXTRACT(EPOCH FROM clock_timestamp() - min(created_at))::float8 AS lag FROM outbox WHERE published_at IS NULL',
    );
    return Math.max(0, rows[0]?.lag ?? 0);
  }

  protected async round(): Promise<number> {
    const published = await this.publishBatch();
    if (Date.now() - this.lastPrune > PRUNE_EVERY_MS) await this.prune();
    return published < BATCH ? IDLE_POLL_MS : 0;
  }

  /**
   * One round: every publish of the batch is issued before any ack is
   * awaited, so a batch costs one round trip to JetStream rather than one per
   * row. They are issued synchronously, in id order, on one connection, and
   * NATS keeps a connection's order, so the stream stores them in id order.
   * If a publish fails, only the rows before it (all acked) are marked and
   * the round fails; the rest are published again next round, and those of
   * them JetStream already stored are dropped as duplicates (Nats-Msg-Id).
   * Marking the acked prefix, rather than nothing, keeps the relay moving
   * when the tail of a batch keeps failing (a publish timing out), and never
   * marks a row while an earlier one is left unpublished.
   */
  async publishBatch(): Promise<number> {
    let failure: { reason: unknown } | undefined;
    const marked = await withTransaction(this.db, async (tx) => {
      // The lock is taken once, before the rows are read (a one-time filter): no rows when another relay holds it.
      // The rows stay locked until they are marked: a change to one (a delete scrubbing a message's content) waits
      // for this publish to be recorded, and then knows the stream holds it (MessageChanges purges after its commit).
      // The payload stays text: published as stored, never parsed and printed again.
      const { rows } = await tx.query<OutboxRow>(
        `SELECT id, event_id, subject, payload::text AS payload, trace_context FROM outbox
         WHERE (SELECT pg_try_advisory_xact_lock(hashtext($1))) AND published_at IS NULL ORDER BY id LIMIT $2
         FOR UPDATE`,
        [`${this.lockName}.outbox`, BATCH],
      );
      const acks = await Promise.allSettled(rows.map((row) => this.publish(row)));
      const firstFailed = acks.findIndex((a) => a.status === 'rejected');
      const acked = firstFailed === -1 ? rows : rows.slice(0, firstFailed);
      if (firstFailed !== -1) failure = { reason: (acks[firstFailed] as PromiseRejectedResult).reason };
      if (acked.length > 0) {
        await tx.query('UPDATE outbox SET published_at = clock_timestamp() WHERE id = ANY($1::bigint[])', [acked.map((r) => r.id)]);
      }
      return acked.length;
    });
    this.published?.inc(marked);
    if (failure) throw failure.reason;
    return marked;
  }

  /** One publish, in its own span continuing the trace stored with the row; the request goes out before this returns. */
  private publish(row: OutboxRow) {
    const subject = `${this.prefix}.events.${row.subject}`;
    // The span is named by the event's type (`message.created`), not its subject, which may end in a message id: names stay few.
    const type = row.subject.split('.').slice(0, 2).join('.');
    return inSpan(`publish ${type}`, { kind: SpanKind.PRODUCER, parent: contextFromCarrier(row.trace_context), attributes: { 'messaging.system': 'nats', 'messaging.destination.name': subject } }, () =>
      this.js.publish(subject, row.payload, { msgID: row.event_id, headers: injectTrace(natsHeaders()) }),
    );
  }

  /** Published rows are kept a day for inspection, then deleted; JetStream holds the events from then on. */
  private async prune(): Promise<void> {
    this.lastPrune = Date.now();
    try {
      await this.db.query("DELETE FROM outbox WHERE published_at < clock_timestamp() - interval '1 day'");
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'outbox relay: pruning failed');
    }
  }
}
