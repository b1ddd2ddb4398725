import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { withTransaction, type Database, type Queryable } from './db';
import type { Logger } from './logger';
import type { NatsConnection } from './nats';
import { WorkLoop } from './work-loop';

const BATCH = 100;
const IDLE_POLL_MS = 1000;
const RETRY_MS = 1000;
const PRUNE_EVERY_MS = 60 * 60 * 1000;

/**
 * Appends a domain event to the service's `outbox` table (same schema, same
 * transaction as the change it describes). `type` is the event's subject
 * below `<prefix>.events.`, e.g. `message.created`.
 */
export async function appendOutbox(tx: Queryable, eventId: string, type: string, payload: unknown): Promise<void> {
  await tx.query('INSERT INTO outbox (event_id, subject, payload) VALUES ($1, $2, $3)', [eventId, type, JSON.stringify(payload)]);
}


interface OutboxRow {
  id: string;
  event_id: string;
  subject: string;
  payload: unknown;
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
  ) {
    super(log, 'outbox relay', RETRY_MS);
    this.js = jetstream(nc);
  }

  protected async round(): Promise<number> {
    const published = await this.publishBatch();
    if (Date.now() - this.lastPrune > PRUNE_EVERY_MS) await this.prune();
    return published < BATCH ? IDLE_POLL_MS : 0;
  }

  async publishBatch(): Promise<number> {
    return withTransaction(this.db, async (tx) => {
      const { rows: lock } = await tx.query<{ locked: boolean }>('SELECT pg_try_advisory_xact_lock(hashtext($1)) AS locked', [`${this.lockName}.outbox`]);
      if (!lock[0]?.locked) return 0;
      const { rows } = await tx.query<OutboxRow>(
        'SELECT id, event_id, subject, payload FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1',
        [BATCH],
      );
      for (const row of rows) {
        await this.js.publish(`${this.prefix}.events.${row.subject}`, JSON.stringify(row.payload), { msgID: row.event_id });
      }
      if (rows.length > 0) {
        await tx.query('UPDATE outbox SET published_at = clock_timestamp() WHERE id = ANY($1::bigint[])', [rows.map((r) => r.id)]);
      }
      return rows.length;
    });
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
