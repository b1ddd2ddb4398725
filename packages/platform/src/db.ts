import type pg from 'pg';
import { pgDriver } from './drivers';
import { fileURLToPath } from 'node:url';
import { runner } from 'node-pg-migrate';
import type { Logger } from './logger';
import type { Metrics } from './metrics';

export type Row = Record<string, unknown>;

/**
 * Anything that runs one statement: the pool or a transaction's client.
 * `prepare` names the statement: each connection parses and plans it once,
 * then only binds and executes it (for statements on a hot path).
 */
export interface Queryable {
  query<R extends Row = Row>(sql: string, params?: readonly unknown[], opts?: { prepare?: string }): Promise<pg.QueryResult<R>>;
}

export interface Database extends Queryable {
  pool: pg.Pool;
  metrics: Metrics | undefined;
  end(): Promise<void>;
}

const statementKind = (sql: string) => /^\s*(\w+)/.exec(sql)?.[1]?.toLowerCase() ?? 'other';

function instrument(target: { query: pg.Pool['query'] }, metrics: Metrics | undefined): Queryable {
  return {
    async query<R extends Row>(sql: string, params?: readonly unknown[], opts?: { prepare?: string }) {
      const end = metrics?.dbQuery.startTimer({ statement: statementKind(sql) });
      try {
        const config = opts?.prepare ? { name: opts.prepare, text: sql, values: params as unknown[] } : undefined;
        return (await (config ? target.query(config) : target.query(sql, params as unknown[]))) as pg.QueryResult<R>;
      } finally {
        end?.();
      }
    },
  };
}

/** A pool whose connections see only the service's own schema (search_path) and speak UTC. */
export function createDatabase(url: string, schema: string, opts: { max: number; metrics?: Metrics; log?: Logger; name?: string }): Database {
  const pool = new (pgDriver().Pool)({
    connectionString: url,
    max: opts.max,
    application_name: opts.name ?? schema,
    options: `-c search_path=${schema} -c TimeZone=UTC -c DateStyle=ISO`,
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30_000,
  });
  // A pool error is an idle client dying (server restart); the next query reconnects.
  pool.on('error', (err) => opts.log?.warn({ err }, 'postgres: idle client error'));
  const q = instrument(pool, opts.metrics);
  return { pool, metrics: opts.metrics, query: q.query, end: () => pool.end() };
}

/** Runs fn in one transaction; a thrown error rolls back. */
export async function withTransaction<T>(db: Database, fn: (tx: Queryable) => Promise<T>): Promise<T> {
  const client = await db.pool.connect();
  // A connection that dies while checked out (the server restarting between
  // two statements) emits 'error' on the client, where the pool's own
  // listener does not reach: unheard, it would end the process. The
  // statement in flight fails with it anyway; the client is then discarded.
  let broken: Error | undefined;
  const onError = (err: Error) => {
    broken = err;
  };
  client.on('error', onError);
  const tx = instrument(client, db.metrics);
  try {
    await client.query('BEGIN');
    const result = await fn(tx);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    if (!broken) await client.query('ROLLBACK').catch((rollbackErr: Error) => (broken = rollbackErr));
    throw err;
  } finally {
    client.off('error', onError);
    // Released with an error, a client is closed rather than handed to the next caller.
    client.release(broken);
  }
}

export const isUniqueViolation = (err: unknown, constraint?: string): boolean =>
  err instanceof pgDriver().DatabaseError && err.code === '23505' && (constraint === undefined || err.constraint === constraint);

/** Creates the database of `url` when missing (connecting to `postgres` to do it). */
export async function ensureDatabase(url: string): Promise<boolean> {
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.slice(1));
  if (!/^[A-Za-z0-9_]+$/.test(name)) throw new Error(`refusing to create a database named ${JSON.stringify(name)}: use [A-Za-z0-9_]`);
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = new (pgDriver().Client)({ connectionString: admin.toString(), connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (found.rowCount) return false;
    try {
      await client.query(`CREATE DATABASE "${name}"`);
      return true;
    } catch (err) {
      // Another process created it between our check and our CREATE.
      if (err instanceof pgDriver().DatabaseError && (err.code === '42P04' || err.code === '23505')) return false;
      throw err;
    }
  } finally {
    await client.end();
  }
}

/**
 * Applies the service's ordered SQL migrations (`<service>/migrations/*.sql`)
 * to its own schema, recording them in `<schema>.pgmigrations`. Replicas
 * starting together wait on node-pg-migrate's advisory lock.
 */
export async function migrate(url: string, schema: string, migrationsDir: URL, log?: Logger): Promise<string[]> {
  const applied = await runner({
    databaseUrl: url,
    dir: fileURLToPath(migrationsDir),
    direction: 'up',
    migrationsTable: 'pgmigrations',
    schema,
    createSchema: true,
    createMigrationsSchema: true,
    advisoryLockMode: 'wait',
    log: () => undefined,
    logger: { debug: () => undefined, info: () => undefined, warn: (m: string) => log?.warn(m), error: (m: string) => log?.error(m) },
  });
  return applied.map((m) => m.name);
}
