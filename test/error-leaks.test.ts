import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node';
import { subjects } from '@chat/contracts';
import { api, conversationPair, eventually, type Api } from './helpers/client';
import { startStack, type Stack } from './helpers/stack';
import { connect } from './helpers/ws';

/** Every JSON line the stack logs. */
class Capture extends Writable {
  readonly lines: Array<Record<string, unknown>> = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void) {
    for (const line of chunk.toString().split('\n')) if (line.trim()) this.lines.push(JSON.parse(line) as Record<string, unknown>);
    done();
  }
}

/** What the bus library says when a request finds no responder or times out: never for a client's eyes. */
const LIBRARY_WORDS = /no responders|timeout|timed out|nats|503 |TimeoutError|NoRespondersError|RequestError/i;

/**
 * Issue 13, finding 8: a 503 told clients the internal subject it failed on
 * and the NATS library's own message. Clients get the code and a plain
 * message; the detail stays in the log, under the same requestId.
 */
describe('server-side errors reach clients as code and message only; the detail is in the log', () => {
  const capture = new Capture();
  let stack: Stack;
  let client: Api;
  let nc: NatsConnection;
  let prefix: string;
  let pairs: Array<Awaited<ReturnType<typeof conversationPair>>>;
  beforeAll(async () => {
    stack = await startStack({ REQUEST_TIMEOUT_MS: 1000, LOG_LEVEL: 'info' }, { logDestination: capture });
    client = api(stack.baseUrl);
    prefix = stack.config.NATS_PREFIX;
    nc = await natsConnect({ servers: stack.config.NATS_URL.split(',') });
    // Before any service is stopped: each test stops one.
    pairs = [await conversationPair(client), await conversationPair(client)];
  });
  afterAll(async () => {
    await nc?.drain();
    await stack?.stop();
  });

  const expectPlain = (error: Record<string, unknown>) => {
    const text = JSON.stringify(error);
    expect(error).not.toHaveProperty('details');
    expect(Object.keys(error).sort()).toEqual(['code', 'message', 'requestId']);
    expect(text).not.toContain(prefix);
    expect(text).not.toMatch(LIBRARY_WORDS);
  };

  it('a service that does not answer: the REST 503 has no details, no subject, no library message; the gateway log line with its requestId has them', async () => {
    const { alice } = pairs[0]!;
    expect((await client.get('/blocks', alice.token)).status).toBe(200);
    await stack.services.blocks.stop();

    const res = await client.get('/blocks', alice.token);
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe('SERVICE_UNAVAILABLE');
    expectPlain(res.body.error);

    const requestId = res.body.error.requestId as string;
    expect(requestId).toBeTruthy();
    const line = capture.lines.find((l) => l.service === 'gateway' && l.requestId === requestId && l.code === 'SERVICE_UNAVAILABLE');
    expect(line, 'the gateway logged the failure under the requestId').toBeDefined();
    expect(line!.internal).toMatchObject({ subject: subjects(prefix).blocks.list, reason: expect.any(String) });
    expect(line!.userId).toBe(alice.id);

    // Relayed through another service (conversations asks blocks): the same, and that service logs it under the requestId.
    const list = await client.get('/conversations', alice.token);
    expect(list.status).toBe(503);
    expectPlain(list.body.error);
    const relayed = list.body.error.requestId as string;
    await eventually(async () => {
      const there = capture.lines.find((l) => l.service === 'conversations' && l.requestId === relayed && l.code === 'SERVICE_UNAVAILABLE');
      expect(there?.internal).toMatchObject({ subject: subjects(prefix).blocks.statusMany });
    });
  });

  it('a WebSocket send that times out: the error frame has no details, no subject, no library message; the gateway log line with the frame id has them', async () => {
    const { alice, conv } = pairs[1]!;
    const { client: ws } = await connect(stack.gateway.port, { token: alice.token });
    // A responder that never answers: the gateway's request times out (the library's TimeoutError), as with a hung service.
    await stack.services.messages.stop();
    const silent = nc.subscribe(subjects(prefix).messages.send, { queue: 'messages' });
    await nc.flush();
    try {
      const frame = await ws.request('message.send', { conversationId: conv, content: 'into the void' }, 5000);
      expect(frame.type).toBe('error');
      expect(frame.payload.code).toBe('SERVICE_UNAVAILABLE');
      const text = JSON.stringify(frame.payload);
      expect(frame.payload).not.toHaveProperty('details');
      expect(text).not.toContain(prefix);
      expect(text).not.toMatch(LIBRARY_WORDS);
      const line = capture.lines.find((l) => l.service === 'gateway' && l.replyTo === frame.replyTo && l.code === 'SERVICE_UNAVAILABLE');
      expect(line, 'the gateway logged the failure under the frame id').toBeDefined();
      expect(line!.internal).toMatchObject({ subject: subjects(prefix).messages.send, reason: expect.stringMatching(/timeout/i) });
      expect(line!.userId).toBe(alice.id);
    } finally {
      silent.unsubscribe();
      await ws.close();
    }
  });
});
