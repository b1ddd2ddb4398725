import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, withTransaction, type Database } from '@chat/platform';
import { eventually } from './helpers/client';

const URL = process.env.TEST_DATABASE_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/**
 * PostgreSQL restarting (or a failover, or an administrator ending sessions)
 * while a transaction holds a connection between two statements: found by
 * the chaos run, where it ended the conversations service with "Unhandled
 * 'error' event". The transaction must fail like any other, the process live
 * on, and the dead connection never be handed out again.
 */
describe('a connection lost inside a transaction', () => {
  let db: Database;
  let admin: pg.Client;
  beforeAll(async () => {
    db = createDatabase(URL, 'public', { max: 2, name: 'connection-loss-test' });
    admin = new pg.Client({ connectionString: URL });
    await admin.connect();
  });
  afterAll(async () => {
    await db?.end();
    await admin?.end();
  });

  it('fails the transaction, leaves the process running and is not reused by the pool', async () => {
    let pid = 0;
    const outcome = withTransaction(db, async (tx) => {
      pid = (await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      await admin.query('SELECT pg_terminate_backend($1)', [pid]);
      // Between statements, as a handler awaiting something else would be: the client hears of it on its own.
      await eventually(async () => {
        const { rows } = await admin.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
        expect(rows).toHaveLength(0);
      });
      await new Promise((r) => setTimeout(r, 100));
      await tx.query('SELECT 1');
    });
    await expect(outcome).rejects.toThrow();
    // The pool hands out a live connection, never the dead one.
    for (let i = 0; i < 4; i++) {
      const { rows } = await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      expect(rows[0]!.pid).not.toBe(pid);
    }
    await expect(withTransaction(db, async (tx) => (await tx.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one)).resolves.toBe(1);
  });
});
