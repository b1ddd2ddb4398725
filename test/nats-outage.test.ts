import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conversationPair, eventually } from './helpers/client';
import { useStack } from './helpers/stack';
import { connect, messageIdsAfterResume } from './helpers/ws';

/**
 * This file runs its own nats-server (JetStream on, its own store), so
 * stopping it disturbs no other test.
 */
const NATS_BIN = process.env.NATS_SERVER_BIN ?? '/usr/sbin/nats-server';
const store = mkdtempSync(join(tmpdir(), 'chat-nats-'));
let port = 0;
let server: ChildProcess | undefined;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const p = (srv.address() as { port: number }).port;
      srv.close(() => resolve(p));
    });
  });
}

async function startNats(): Promise<void> {
  server = spawn(NATS_BIN, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', store], { stdio: 'ignore' });
  await eventually(
    () =>
      new Promise<void>((resolve, reject) => {
        const sock = createServer();
        sock.once('error', () => resolve()); // the port is taken: the server listens
        sock.listen(port, '127.0.0.1', () => sock.close(() => reject(new Error('nats-server not listening yet'))));
      }),
    10_000,
  );
}

async function stopNats(): Promise<void> {
  const s = server;
  if (!s) return;
  const exited = new Promise((r) => s.once('exit', r));
  s.kill('SIGTERM');
  await exited;
  server = undefined;
}

// Hooks: after-all hooks run in reverse, so this one (registered before useStack) stops NATS after the stack.
beforeAll(async () => {
  port = await freePort();
  await startNats();
});
afterAll(async () => {
  await stopNats();
  rmSync(store, { recursive: true, force: true });
});
const ctx = useStack(() => ({ NATS_URL: `nats://127.0.0.1:${port}`, REQUEST_TIMEOUT_MS: 3000 }));

describe('NATS down', () => {
  it('the gateway answers 503 within 2 s while NATS is away, and recovers by itself when it returns; sockets keep receiving', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const { client: bobWs } = await connect(ctx.stack.gateway.port, { token: bob.token });

    await stopNats();
    await eventually(async () => {
      const started = Date.now();
      const res = await ctx.api.get('/conversations', alice.token);
      expect(res.status).toBe(503);
      expect(res.body.error.code).toBe('SERVICE_UNAVAILABLE');
      // Not the 3 s request timeout: it waits up to 2 s for the connection (a NATS node restarting), then says so.
      expect(Date.now() - started).toBeLessThan(2800);
    }, 5000);
    expect((await fetch(`${ctx.stack.baseUrl}/readyz`)).status).toBe(503);
    expect((await fetch(`${ctx.stack.baseUrl}/healthz`)).status).toBe(200);

    await startNats();
    await eventually(async () => expect((await fetch(`${ctx.stack.baseUrl}/readyz`)).status).toBe(200), 15_000);
    await eventually(async () => expect((await ctx.api.get('/conversations', alice.token)).status).toBe(200), 5000);
    // Every process resubscribes at its own pace; a client retrying with its clientMessageId gets through, once.
    const sent = await eventually(async () => {
      const res = await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'after the outage', clientMessageId: 'after-outage' });
      expect([200, 201]).toContain(res.status);
      return res;
    }, 5000);
    const frame = await bobWs.next((f) => f.type === 'message.new' && f.payload.message.id === sent.body.data.id, 10_000);
    expect(frame.seq).toBeGreaterThan(0);
    await bobWs.close();
  }, 60_000);

  it('500 messages sent over REST and WS while NATS restarts: none lost, none twice for a client that resumes with since', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    let aliceWs = (await connect(ctx.stack.gateway.port, { token: alice.token })).client;
    let aliceClosed = false;
    const watch = (ws: typeof aliceWs) => void ws.closed.then(() => ws === aliceWs && (aliceClosed = true));
    watch(aliceWs);
    // A socket the server closed while NATS was away (1011: resume with since) is opened again, as a real client does.
    let reopening: Promise<void> | undefined;
    const reopenAlice = () =>
      (reopening ??= (async () => {
        try {
          const next = (await connect(ctx.stack.gateway.port, { token: alice.token })).client;
          aliceWs = next;
          aliceClosed = false;
          watch(next);
        } catch {
          /* the upgrade needs NATS too: tried again on the next attempt */
        } finally {
          reopening = undefined;
        }
      })());
    const { client: bobWs } = await connect(ctx.stack.gateway.port, { token: bob.token });
    const TOTAL = 500;
    let done = 0;
    let restarted: Promise<void> | undefined;

    // A client's behaviour: retry what failed, with the same clientMessageId, until it is accepted.
    const sendOne = async (i: number) => {
      const clientMessageId = `load-${i}`;
      const deadline = Date.now() + 60_000;
      let last: unknown;
      for (;;) {
        let ok = false;
        if (i % 2 === 0) {
          const res = await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: `n${i}`, clientMessageId });
          ok = res.status === 201 || res.status === 200;
          last = { status: res.status, body: res.body };
        } else {
          if (aliceClosed) await reopenAlice();
          const reply = await aliceWs.request('message.send', { conversationId: conv, content: `n${i}`, clientMessageId }, 8000).catch((err: Error) => err.message);
          ok = typeof reply === 'object' && reply?.type === 'ack';
          last = reply;
        }
        if (ok) break;
        // A send that never gets through is a failure to report, not a hang until the test's timeout.
        if (Date.now() > deadline) throw new Error(`message ${i} still refused after 60 s; last answer: ${JSON.stringify(last)}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      if (++done === 150) restarted = (async () => {
        await stopNats();
        await new Promise((r) => setTimeout(r, 500));
        await startNats();
      })();
    };
    let next = 0;
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (next < TOTAL) await sendOne(next++);
    }));
    await restarted;

    const { rows } = await pgQuery(ctx.stack.config.DATABASE_URL, 'SELECT id FROM messages.messages WHERE conversation_id = $1', [conv]);
    expect(rows).toHaveLength(TOTAL);
    const ids = rows.map((r: { id: string }) => r.id).sort();

    expect(await messageIdsAfterResume(bobWs, ctx.stack.gateway.port, bob.token)).toEqual(ids);
    await aliceWs.close();
  }, 120_000);
});

async function pgQuery(url: string, sql: string, params: unknown[]) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(sql, params);
  } finally {
    await client.end();
  }
}
