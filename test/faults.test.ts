import { spawn, type ChildProcess } from 'node:child_process';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '@chat/platform';
import { conversationPair, eventually } from './helpers/client';
import { useStack } from './helpers/stack';
import { streamEvents } from './helpers/streams';
import { connect, messageIdsAfterResume } from './helpers/ws';

const ROOT = new URL('..', import.meta.url).pathname;
const ctx = useStack({ REQUEST_TIMEOUT_MS: 2000 });
let db: pg.Pool;
beforeAll(() => {
  db = new pg.Pool({ connectionString: ctx.stack.config.DATABASE_URL, max: 2 });
});
afterAll(async () => {
  await db?.end();
});

/** The messages service as a real process on this run's database, NATS prefix and Redis prefix. */
function spawnMessages(c: Config): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'services/messages/src/main.ts'], {
    cwd: ROOT,
    env: {
      ...process.env,
      CONFIG_FILE: '/nonexistent',
      DATABASE_URL: c.DATABASE_URL,
      NATS_URL: c.NATS_URL,
      NATS_PREFIX: c.NATS_PREFIX,
      REDIS_URL: c.REDIS_URL,
      REDIS_PREFIX: c.REDIS_PREFIX,
      METRICS_PORT: '0',
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += String(d);
      if (out.includes('messages ready')) resolve(child);
    });
    child.once('exit', (code) => reject(new Error(`messages exited early (${code}): ${out}`)));
  });
}

describe('the messages service killed with SIGKILL in the middle of sends', () => {
  let child: ChildProcess | undefined;
  afterAll(() => {
    child?.kill('SIGKILL');
  });

  it('after a restart every committed message is published once and reaches the recipient once', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    // The in-process replica steps aside so the real process takes every request.
    await ctx.stack.services.messages.stop();
    child = await spawnMessages(ctx.stack.config);
    const { client: bobWs } = await connect(ctx.stack.gateway.port, { token: bob.token });

    // Four lanes of sends; the process is killed once 20 have committed, with others in flight.
    const answers: Array<{ status: number }> = new Array(60);
    let committed = 0;
    let next = 0;
    const lane = async () => {
      while (next < 60) {
        const i = next++;
        answers[i] = await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: `k${i}`, clientMessageId: `k-${i}` });
        if (answers[i]!.status === 201 && ++committed === 20) child!.kill('SIGKILL');
      }
    };
    await Promise.all([lane(), lane(), lane(), lane()]);
    for (const a of answers) expect([201, 503]).toContain(a.status);
    if (process.env.DEBUG_FAULTS) console.log('committed before the kill:', answers.filter((a) => a.status === 201).length);

    child = await spawnMessages(ctx.stack.config);
    // Clients retry what failed; clientMessageId keeps the retries from sending twice.
    for (const [i, a] of answers.entries())
      if (a.status !== 201)
        expect([200, 201]).toContain((await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: `k${i}`, clientMessageId: `k-${i}` })).status);

    const { rows } = await db.query<{ id: string }>('SELECT id FROM messages.messages WHERE conversation_id = $1', [conv]);
    expect(rows).toHaveLength(60);
    const ids = rows.map((r) => r.id).sort();
    await eventually(async () => {
      const { rows: pending } = await db.query('SELECT 1 FROM messages.outbox WHERE published_at IS NULL');
      expect(pending).toHaveLength(0);
    }, 10_000);
    const published = (await streamEvents<{ conversationId: string; message: { id: string } }>(ctx.stack.config.NATS_URL, ctx.stack.config.NATS_PREFIX, 'message.created.*'))
      .filter((e) => e.conversationId === conv)
      .map((e) => e.message.id)
      .sort();
    expect(published).toEqual(ids);

    // Some arrived live, a resume from the last seq brings the rest: together, each exactly once.
    expect(await messageIdsAfterResume(bobWs, ctx.stack.gateway.port, bob.token)).toEqual(ids);
  }, 60_000);
});
