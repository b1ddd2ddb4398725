import { Writable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, createRedis, redactUrl } from '@chat/platform';
import { api, conversationPair, signToken } from './helpers/client';
import { startStack, type Stack } from './helpers/stack';
import { connect, tryUpgrade } from './helpers/ws';

/** Every line any process of the stack logs, at trace level. */
class Capture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void) {
    this.lines.push(chunk.toString());
    done();
  }
  get text() {
    return this.lines.join('');
  }
}

describe('logs never hold a token, a ticket or message content (SPEC 9)', () => {
  const capture = new Capture();
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ LOG_LEVEL: 'trace', AUTH_FAILURES_PER_MIN: 2, AUTH_BAN_MS: 1000 }, { logDestination: capture });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('a full session at trace level leaves no secret in any line', async () => {
    const client = api(stack.baseUrl);
    const secret = `SECRET-${randomBytes(8).toString('hex')}`;
    const { alice, bob, conv } = await conversationPair(client);
    const { ticket } = (await client.post('/ws-ticket', alice.token)).body.data as { ticket: string };
    const { client: ws } = await connect(stack.gateway.port, { ticket });
    const { client: ws2 } = await connect(stack.gateway.port, { token: bob.token });
    try {
      expect((await client.post(`/conversations/${conv}/messages`, bob.token, { content: `rest ${secret}` })).status).toBe(201);
      expect((await ws.request('message.send', { conversationId: conv, content: `ws ${secret}` })).type).toBe('ack');
      await ws2.nextOf('message.new');
      // Failures log too: a bad token, a bad ticket, an invalid frame that carries content, a ban.
      const forged = await signToken({ sub: alice.id, username: alice.username }, { secret: 'x'.repeat(40) });
      expect((await client.get('/conversations', forged)).status).toBe(401);
      expect((await tryUpgrade(stack.gateway.port, { ticket })).status).toBe(401);
      expect((await tryUpgrade(stack.gateway.port, { token: forged })).status).toBe(401);
      expect((await tryUpgrade(stack.gateway.port, { token: alice.token })).status).toBe(403);
      await new Promise((r) => setTimeout(r, 1100)); // the ban ends
      ws.send({ type: 'message.send', id: 'x', payload: { conversationId: conv, content: `bad ${secret}`, extra: 1 } });
      await ws.nextOf('error');
      // A notification for an offline receiver carries a preview of the content.
      await ws2.close();
      expect((await client.post(`/conversations/${conv}/messages`, alice.token, { content: `offline ${secret}` })).status).toBe(201);
      await new Promise((r) => setTimeout(r, 500));
    } finally {
      await ws.close();
      await ws2.close();
    }
    const text = capture.text;
    expect(capture.lines.length).toBeGreaterThan(10); // trace level: the processes did talk
    for (const s of [secret, alice.token, bob.token, ticket]) expect(text).not.toContain(s);
    // The signatures alone would be enough to replay a token.
    for (const t of [alice.token, bob.token]) expect(text).not.toContain(t.split('.')[2]!);
  });
});

describe('the redaction paths', () => {
  it('replace tokens, tickets, authorization headers and content wherever pino meets them', () => {
    const capture = new Capture();
    const log = createLogger('unit', 'info', capture);
    log.info({ token: 't1', ticket: 't2', authorization: 'Bearer t3', headers: { authorization: 'Bearer t4' }, content: 'c1' }, 'top');
    log.info({ req: { headers: { authorization: 'Bearer t5' } }, body: { content: 'c2' }, message: { content: 'c3' }, payload: { content: 'c4' } }, 'nested');
    log.info({ frame: { token: 't6', content: 'c5' } }, 'any object');
    const text = capture.text;
    for (const s of ['t1', 't2', 't3', 't4', 't5', 't6', 'c1', 'c2', 'c3', 'c4', 'c5']) expect(text).not.toMatch(new RegExp(`"${s}"|Bearer ${s}`));
    expect(text.match(/\[redacted\]/g)!.length).toBeGreaterThanOrEqual(11);
  });
});

describe('backing-server URLs in logs', () => {
  it('never carry their password', async () => {
    expect(redactUrl('redis://:s3cret-pass@cache:6379/0')).toBe('redis://:***@cache:6379/0');
    expect(redactUrl('postgres://chat:s3cret-pass@db:5432/chat')).toBe('postgres://chat:***@db:5432/chat');
    const capture = new Capture();
    const redis = createRedis('redis://:s3cret-pass@127.0.0.1:1', 'x:', createLogger('unit', 'info', capture), 'unit', { failFast: true });
    await expect.poll(() => capture.text).toContain('does not answer');
    redis.disconnect();
    expect(capture.text).not.toContain('s3cret-pass');
    expect(capture.text).toContain('redis://:***@127.0.0.1:1');
  });
});
