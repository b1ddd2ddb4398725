import { createServer, type AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import pg from 'pg';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ChatError, eventStreamName } from '@chat/contracts';
import {
  BusClient,
  createLogger,
  deadLetterStreamName,
  ensureEventStream,
  isTransientError,
  PoisonEventError,
  runConsumer,
  type ConsumerOptions,
} from '@chat/platform';
import { eventually } from './helpers/client';

/**
 * Only poison is dead-lettered: an event whose handler fails because a
 * dependency is away (PostgreSQL refusing connections or shutting down,
 * Redis, a service not answering) is retried until the dependency is back,
 * however many deliveries that takes, and applied once; an unknown error is
 * still given up after `maxDeliver` deliveries. Real NATS, on a private
 * prefix; the failures are real errors from real clients.
 */
const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const prefix = `t${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
const stream = eventStreamName(prefix);
const MAX_DELIVER = 3;

let nc: NatsConnection;
let jsm: JetStreamManager;
let admin: pg.Client;
/** A local port nothing listens on: connecting to it is refused at once. */
let closedPort: number;
beforeAll(async () => {
  nc = await connect({ servers: NATS_URL });
  jsm = await jetstreamManager(nc);
  admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  closedPort = await new Promise<number>((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
});
afterAll(async () => {
  await admin?.end();
  if (jsm) {
    await jsm.streams.delete(stream).catch(() => undefined);
    await jsm.streams.delete(deadLetterStreamName(prefix)).catch(() => undefined);
  }
  await nc?.close();
});

interface LogLine {
  level: string;
  msg: string;
  attempt?: number;
  poison?: boolean;
  transient?: boolean;
}

/** A consumer on this run's prefix, logging into `lines`; the caller stops it. */
function consumer(durable: string, lines: LogLine[], opts: Partial<ConsumerOptions>) {
  const log = createLogger(durable, 'warn', { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
  return runConsumer(nc, {
    prefix,
    durable,
    filterSubject: `${prefix}.events.${durable}`,
    maxDeliver: MAX_DELIVER,
    retryDelayMs: () => 20,
    log,
    ...opts,
  } as ConsumerOptions);
}

const publish = (durable: string, body: unknown) => jetstream(nc).publish(`${prefix}.events.${durable}`, typeof body === 'string' ? body : JSON.stringify(body));

/** What `durable` parked on the dead-letter stream: body and headers. */
async function deadLettered(durable: string): Promise<Array<{ body: string; attempts: string; reason: string }>> {
  const dead = deadLetterStreamName(prefix);
  const info = await jsm.streams.info(dead).catch(() => undefined);
  if (!info || info.state.messages === 0) return [];
  const out = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(dead, { seq }).catch(() => null);
    if (m?.subject !== `${prefix}.dead.${durable}`) continue;
    out.push({ body: new TextDecoder().decode(m.data), attempts: m.header.get('Chat-Attempts'), reason: m.header.get('Chat-Dead-Reason') });
  }
  return out;
}

/** Until the durable has nothing left to deliver and nothing unacked. */
const drained = (durable: string) =>
  eventually(async () => {
    const info = await jsm.consumers.info(stream, durable);
    expect(info.num_pending + info.num_ack_pending).toBe(0);
  }, 10_000);

/** A real "connection refused" from node-postgres: a client connecting to a port nothing listens on. */
async function connectionRefused(): Promise<Error> {
  const client = new pg.Client({ host: '127.0.0.1', port: closedPort, user: 'postgres', database: 'postgres' });
  return client.connect().then(
    () => new Error('connected to a closed port'),
    (err: Error) => err,
  );
}

/**
 * Real errors of a PostgreSQL session ended by an administrator: the query it
 * was running fails with 57P01, its next one with "Connection terminated".
 */
async function adminShutdown(): Promise<{ shutdown: Error; terminated: Error }> {
  const victim = new pg.Client({ connectionString: ADMIN_URL });
  victim.on('error', () => undefined);
  await victim.connect();
  const pid = (await victim.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  const running = victim.query('SELECT pg_sleep(30)').then(
    () => new Error('pg_sleep was not interrupted'),
    (err: Error) => err,
  );
  await eventually(async () => expect((await admin.query('SELECT state FROM pg_stat_activity WHERE pid = $1', [pid])).rows[0]?.state).toBe('active'), 5000, 5);
  await admin.query('SELECT pg_terminate_backend($1)', [pid]);
  const shutdown = await running;
  const terminated = await victim.query('SELECT 1').then(
    () => new Error('queried a terminated session'),
    (err: Error) => err,
  );
  await victim.end().catch(() => undefined);
  return { shutdown, terminated };
}

describe('a consumer whose dependency is away', () => {
  it('retries a valid event past maxDeliver while PostgreSQL refuses connections, never dead-letters it, and applies it once when PostgreSQL is back', async () => {
    const durable = 'single-refused';
    const lines: LogLine[] = [];
    let port = closedPort;
    let failures = 0;
    const applied: string[] = [];
    const c = await consumer(durable, lines, {
      handle: async (_subject, data) => {
        // What a repository does: a query on a connection to the database, wherever it is now.
        const client = new pg.Client({ connectionString: ADMIN_URL.replace(':5432/', `:${port}/`) });
        try {
          await client.connect();
          await client.query('SELECT 1');
        } catch (err) {
          failures++;
          throw err;
        } finally {
          await client.end().catch(() => undefined);
        }
        applied.push((data as { id: string }).id);
      },
    });
    try {
      await publish(durable, { id: 'e1' });
      // Well past maxDeliver (3), or parked already (the old rule).
      await eventually(async () => {
        if ((await deadLettered(durable)).length > 0) return;
        expect(failures).toBeGreaterThanOrEqual(3 * MAX_DELIVER);
      }, 10_000);
      expect(await deadLettered(durable)).toEqual([]);
      expect(applied).toEqual([]);

      port = 5432; // PostgreSQL is back
      await eventually(async () => expect(applied).toEqual(['e1']), 10_000);
      await drained(durable);
      expect(applied).toEqual(['e1']);
      expect(await deadLettered(durable)).toEqual([]);
      // Told at warn, with the attempt count, one line per failure; never as an error.
      const retries = lines.filter((l) => l.msg.includes('retry'));
      expect(retries.length).toBeGreaterThanOrEqual(3 * MAX_DELIVER);
      expect(retries.every((l) => l.level === 'warn' && l.transient === true)).toBe(true);
      expect(Math.max(...retries.map((l) => l.attempt ?? 0))).toBeGreaterThan(MAX_DELIVER);
      expect(lines.filter((l) => l.level === 'error')).toEqual([]);
    } finally {
      await c.stop();
    }
  });

  it('in batch mode, retries valid events past maxDeliver while PostgreSQL shuts sessions down (57P01), dead-letters a poison event of the same batch at once, and applies the rest once', async () => {
    const durable = 'batch-shutdown';
    const lines: LogLine[] = [];
    let down = true;
    let failedBatches = 0;
    const applied: string[] = [];
    // Published before the consumer starts: the first batch holds them all.
    for (const id of ['b1', 'b2', 'b3']) await publish(durable, { id });
    await publish(durable, 'not json at all');
    const c = await consumer(durable, lines, {
      lingerMs: 20,
      handleBatch: async (events) => {
        if (down) {
          // As the projection does: a statement for the batch fails, every event of it gets that error.
          const { shutdown } = await adminShutdown();
          failedBatches++;
          return events.map(() => shutdown);
        }
        applied.push(...events.map((e) => (e.data as { id: string }).id));
        return events.map(() => undefined);
      },
    });
    try {
      await eventually(async () => {
        if ((await deadLettered(durable)).length > 1) return;
        expect(failedBatches).toBeGreaterThanOrEqual(2 * MAX_DELIVER);
      }, 15_000);
      const parked = await deadLettered(durable);
      expect(parked.map((d) => [d.body, d.attempts])).toEqual([['not json at all', '1']]);

      down = false;
      await eventually(async () => expect([...applied].sort()).toEqual(['b1', 'b2', 'b3']), 10_000);
      await drained(durable);
      expect([...applied].sort()).toEqual(['b1', 'b2', 'b3']);
      expect(await deadLettered(durable)).toHaveLength(1);
      const retries = lines.filter((l) => l.transient === true);
      expect(retries.every((l) => l.level === 'warn')).toBe(true);
      expect(Math.max(...retries.map((l) => l.attempt ?? 0))).toBeGreaterThan(MAX_DELIVER);
      // At most one line per failed batch (its events share one error), not one per event.
      expect(retries.length).toBeLessThanOrEqual(failedBatches);
      // The only error line is the poison one.
      expect(lines.filter((l) => l.level === 'error').map((l) => l.poison)).toEqual([true]);
    } finally {
      await c.stop();
    }
  });
});

describe('what is still dead-lettered', () => {
  it('a poison event at once, after one delivery', async () => {
    const durable = 'poison';
    let calls = 0;
    const c = await consumer(durable, [], {
      handle: async () => {
        calls++;
        throw new PoisonEventError('does not match its contract');
      },
    });
    try {
      await publish(durable, { id: 'p1' });
      await eventually(async () => expect(await deadLettered(durable)).toHaveLength(1), 10_000);
      await drained(durable);
      expect(await deadLettered(durable)).toEqual([{ body: JSON.stringify({ id: 'p1' }), attempts: '1', reason: 'does not match its contract' }]);
      expect(calls).toBe(1);
    } finally {
      await c.stop();
    }
  });

  it('an unknown error after maxDeliver deliveries', async () => {
    const durable = 'unknown';
    let calls = 0;
    const c = await consumer(durable, [], {
      handle: async () => {
        calls++;
        throw new TypeError("Cannot read properties of undefined (reading 'id')");
      },
    });
    try {
      await publish(durable, { id: 'u1' });
      await eventually(async () => expect(await deadLettered(durable)).toHaveLength(1), 10_000);
      await drained(durable);
      const [parked] = await deadLettered(durable);
      expect(parked).toMatchObject({ attempts: String(MAX_DELIVER), reason: expect.stringContaining('Cannot read properties') });
      expect(calls).toBe(MAX_DELIVER);
    } finally {
      await c.stop();
    }
  });
});

describe('the consumer on the server', () => {
  it('a single-event handler slower than ack_wait is not redelivered while it runs', async () => {
    const durable = 'slow';
    let calls = 0;
    const c = await consumer(durable, [], {
      ackWaitMs: 1000,
      handle: async () => {
        calls++;
        // A handler waiting on a database that is restarting: 2.5 ack_waits.
        if (calls === 1) await new Promise((r) => setTimeout(r, 2500));
      },
    });
    try {
      await publish(durable, { id: 's1' });
      await eventually(async () => expect(calls).toBeGreaterThan(0), 5000);
      await drained(durable);
      // One delivery in all: the server never handed the event out again.
      expect((await jsm.consumers.info(stream, durable)).delivered.consumer_seq).toBe(1);
      expect(calls).toBe(1);
    } finally {
      await c.stop();
    }
  });

  it('has max_deliver -1 (the limit is applied in code), also when it existed with max_deliver 10', async () => {
    const fresh = await consumer('fresh', [], { handle: async () => undefined });
    await fresh.stop();
    const info = await jsm.consumers.info(stream, 'fresh');
    expect(info.config.max_deliver).toBe(-1);
    expect(info.config.ack_wait).toBe(30_000_000_000);

    // As the previous release created it.
    await ensureEventStream(nc, prefix);
    await jsm.consumers.add(stream, {
      durable_name: 'upgraded',
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      filter_subject: `${prefix}.events.upgraded`,
      max_deliver: 10,
      ack_wait: 30_000_000_000,
      max_ack_pending: 1024,
    });
    expect((await jsm.consumers.info(stream, 'upgraded')).config.max_deliver).toBe(10);
    const applied: string[] = [];
    const upgraded = await consumer('upgraded', [], { handle: async (_s, data) => void applied.push((data as { id: string }).id) });
    try {
      expect((await jsm.consumers.info(stream, 'upgraded')).config.max_deliver).toBe(-1);
      // The same durable, still consuming.
      await publish('upgraded', { id: 'x1' });
      await eventually(async () => expect(applied).toEqual(['x1']), 5000);
    } finally {
      await upgraded.stop();
    }
  });
});

describe('isTransientError', () => {
  const sqlstate = (code: string) => Object.assign(new pg.DatabaseError('from PostgreSQL', 0, 'error'), { code });
  const errno = (code: string) => Object.assign(new Error(`connect ${code} db:5432`), { code });

  it('node-postgres: connection refused, a session shut down, a connection terminated, the pool timing out (real errors)', async () => {
    const refused = await connectionRefused();
    expect((refused as Error & { code?: string }).code).toBe('ECONNREFUSED');
    expect(isTransientError(refused)).toBe(true);

    const { shutdown, terminated } = await adminShutdown();
    expect((shutdown as Error & { code?: string }).code).toBe('57P01');
    expect(isTransientError(shutdown)).toBe(true);
    expect(terminated.message).toMatch(/^Connection terminated/);
    expect(isTransientError(terminated)).toBe(true);

    // Its only client is held: the next checkout waits, and times out.
    const pool = new pg.Pool({ connectionString: ADMIN_URL, max: 1, connectionTimeoutMillis: 5000 });
    const held = await pool.connect();
    pool.options.connectionTimeoutMillis = 50;
    try {
      const timeout = await pool.query('SELECT 1').then(
        () => new Error('the pool had a free client'),
        (err: Error) => err,
      );
      expect(timeout.message).toBe('timeout exceeded when trying to connect');
      expect(isTransientError(timeout)).toBe(true);
    } finally {
      held.release();
      await pool.end();
    }
  });

  it('node-postgres: socket errors and the SQLSTATEs of a server that is away, overloaded or asking for a retry', () => {
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN']) expect(isTransientError(errno(code)), code).toBe(true);
    for (const code of ['08000', '08001', '08003', '08006', '08P01', '57P01', '57P02', '57P03', '53300', '40001', '40P01']) expect(isTransientError(sqlstate(code)), code).toBe(true);
    expect(isTransientError(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isTransientError(new Error('Connection terminated due to connection timeout'))).toBe(true);
    expect(isTransientError(new Error('Client has encountered a connection error and is not queryable'))).toBe(true);
  });

  it('ioredis: retries exhausted, a closed connection, a fail-fast client while Redis is away (real errors)', async () => {
    const away = new Redis(`redis://127.0.0.1:${closedPort}`, { maxRetriesPerRequest: 1, retryStrategy: () => 10, lazyConnect: true });
    away.on('error', () => undefined);
    const exhausted = await away.get('k').then(
      () => new Error('Redis answered'),
      (err: Error) => err,
    );
    away.disconnect();
    expect(exhausted.name).toBe('MaxRetriesPerRequestError');
    expect(isTransientError(exhausted)).toBe(true);

    const failFast = new Redis(`redis://127.0.0.1:${closedPort}`, { enableOfflineQueue: false, retryStrategy: () => 10, lazyConnect: true });
    failFast.on('error', () => undefined);
    const unwritable = await failFast.get('k').then(
      () => new Error('Redis answered'),
      (err: Error) => err,
    );
    failFast.disconnect();
    expect(isTransientError(unwritable)).toBe(true);

    const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: 1 });
    await redis.ping();
    redis.disconnect();
    const closed = await redis.get('k').then(
      () => new Error('Redis answered'),
      (err: Error) => err,
    );
    expect(closed.message).toBe('Connection is closed.');
    expect(isTransientError(closed)).toBe(true);
    expect(isTransientError(errno('ECONNREFUSED'))).toBe(true);
  });

  it('a service that does not answer on the bus: SERVICE_UNAVAILABLE (a real BusClient request), as the notifier hands it back per event', async () => {
    const bus = new BusClient(nc, 200);
    const unanswered = await bus.request(`${prefix}.nobody.there`, {}, z.unknown()).then(
      () => new Error('answered'),
      (err: Error) => err,
    );
    expect(unanswered).toBeInstanceOf(ChatError);
    expect((unanswered as ChatError).code).toBe('SERVICE_UNAVAILABLE');
    expect(isTransientError(unanswered)).toBe(true);
    // The notifier's per-event outcome is the request's error itself (toError keeps an Error as it is).
    expect(isTransientError(new ChatError('SERVICE_UNAVAILABLE', 'presence: its data store is unavailable'))).toBe(true);
  });

  it('looks through err.cause and an AggregateError of connection attempts', async () => {
    const refused = await connectionRefused();
    expect(isTransientError(new Error('applying the batch', { cause: refused }))).toBe(true);
    expect(isTransientError(new Error('outer', { cause: new Error('middle', { cause: sqlstate('57P03') }) }))).toBe(true);
    expect(isTransientError(new AggregateError([errno('ECONNREFUSED'), errno('ECONNREFUSED')], 'connect failed'))).toBe(true);
    const cyclic = new Error('cyclic') as Error & { cause?: unknown };
    cyclic.cause = cyclic;
    expect(isTransientError(cyclic)).toBe(false);
  });

  it('anything else is not transient: bugs, poison, refused values, other service answers, the notifier\'s own inconsistencies', () => {
    const notTransient: unknown[] = [
      new Error('a bug'),
      new TypeError("Cannot read properties of undefined (reading 'id')"),
      new SyntaxError('Unexpected token'),
      new PoisonEventError('does not match its contract'),
      sqlstate('23505'),
      sqlstate('22P02'),
      sqlstate('42P01'),
      new ChatError('INTERNAL', 'internal error'),
      new ChatError('NOT_FOUND', 'not found'),
      new Error('presence.query answered without the receiver'),
      new Error('the sender is not in the users directory'),
      new Error('event left undecided'),
      new AggregateError([errno('ECONNREFUSED'), new Error('a bug')], 'mixed'),
      new AggregateError([], 'empty'),
      undefined,
      null,
      'ECONNREFUSED',
    ];
    for (const err of notTransient) expect(isTransientError(err), String((err as Error | undefined)?.message ?? err)).toBe(false);
  });
});
