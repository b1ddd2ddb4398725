import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTelemetry, type Telemetry } from '@chat/platform/telemetry';
import { conversationPair } from './helpers/client';
import { useStack } from './helpers/stack';
import { connect } from './helpers/ws';

/**
 * One process holds every service here, so spans are told apart by their
 * `chat.service` attribute and instrumentation scope; the OTLP test runs them
 * as separate processes, each with its own service.name.
 */
const exporter = new InMemorySpanExporter();
let telemetry: Telemetry;
// Registered before useStack's hook, so tracing starts before any pool or server exists.
beforeAll(() => {
  telemetry = startTelemetry('chat-test', { spanProcessors: [new SimpleSpanProcessor(exporter)] });
});
afterAll(async () => {
  await telemetry.shutdown();
});

const PG = '@opentelemetry/instrumentation-pg';
const REDIS = '@opentelemetry/instrumentation-ioredis';
const HTTP = '@opentelemetry/instrumentation-http';

function traceOf(traceId: string): ReadableSpan[] {
  return exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
}
const parentId = (s: ReadableSpan) => s.parentSpanContext?.spanId;
/** Every span on the path from `span` up to its trace's root. */
function ancestors(span: ReadableSpan, all: ReadableSpan[]): ReadableSpan[] {
  const byId = new Map(all.map((s) => [s.spanContext().spanId, s]));
  const chain: ReadableSpan[] = [];
  for (let p = byId.get(parentId(span) ?? ''); p; p = byId.get(parentId(p) ?? '')) chain.push(p);
  return chain;
}

describe('tracing: one REST send is one trace from the HTTP request to the SQL, the consumers and the recipient socket', () => {
  const ctx = useStack();

  it('gateway → messages (and its SQL) → relay → consumers, and the recipient socket write, share one trace with real parents', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const { client: bobSocket } = await connect(ctx.stack.gateway.port, { token: bob.token });
    try {
      exporter.reset();
      const sent = await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'traced' });
      expect(sent.status).toBe(201);
      await bobSocket.next((f) => f.type === 'message.new' && f.payload.message.id === sent.body.data.id);

      const http = await expect
        .poll(() => exporter.getFinishedSpans().find((s) => s.instrumentationScope.name === HTTP && s.name === 'POST /api/chat/conversations/:conversationId/messages'))
        .toBeDefined()
        .then(() => exporter.getFinishedSpans().find((s) => s.name === 'POST /api/chat/conversations/:conversationId/messages')!);
      expect(http.attributes['http.route']).toBe('/api/chat/conversations/:conversationId/messages');
      expect(http.attributes['chat.request_id']).toBe(sent.headers.get('x-request-id'));
      const traceId = http.spanContext().traceId;

      // The consumers finish a little after the answer: wait for them to land in the same trace.
      await expect.poll(() => traceOf(traceId).map((s) => s.name), { timeout: 5000 }).toEqual(
        expect.arrayContaining(['conversations-projection process', 'notifications process', 'ws deliver message.new', 'publish message.created']),
      );
      const spans = traceOf(traceId);
      const named = (name: string) => spans.filter((s) => s.name === name);

      const client = named('request messages.send');
      expect(client).toHaveLength(1);
      expect(parentId(client[0]!)).toBe(http.spanContext().spanId);
      const server = named('messages.send');
      expect(server).toHaveLength(1);
      expect(server[0]!.attributes['chat.service']).toBe('messages');
      expect(parentId(server[0]!)).toBe(client[0]!.spanContext().spanId);

      // The send's statement (SELECT send_messages(…), which inserts everything) runs inside the messages handler's span.
      const inserts = spans.filter((s) => s.instrumentationScope.name === PG && /send_messages/i.test(String(s.attributes['db.statement'] ?? s.attributes['db.query.text'] ?? s.name)));
      expect(inserts.length).toBeGreaterThan(0);
      for (const q of inserts) expect(ancestors(q, spans).map((s) => s.name)).toContain('messages.send');
      // Redis is traced too (the gateway's send limit, under the HTTP span).
      expect(spans.some((s) => s.instrumentationScope.name === REDIS)).toBe(true);

      // The recipient's frame: a child of the send's handler, through the delivery publish.
      const deliver = named('ws deliver message.new');
      expect(deliver).toHaveLength(1); // Bob's one socket (Alice has none open)
      for (const d of deliver) expect(ancestors(d, spans).map((s) => s.name)).toContain('messages.send');
      expect(named('ws deliver unread.updated').length).toBeGreaterThan(0);

      // JetStream: the relay's publish continues the trace stored with the outbox row; consumers are its children.
      const publish = named('publish message.created');
      expect(publish).toHaveLength(1);
      expect(ancestors(publish[0]!, spans).map((s) => s.name)).toContain('messages.send');
      for (const consumer of [...named('conversations-projection process'), ...named('notifications process')]) {
        expect(parentId(consumer)).toBe(publish[0]!.spanContext().spanId);
        expect(consumer.attributes['messaging.destination.name']).toMatch(/\.events\.message\.created\.[0-9a-f-]{36}$/);
      }
      // The notifications consumer asks presence and blocks over NATS: those requests are in the trace as well.
      const notifierCalls = spans.filter((s) => s.name.startsWith('request ') && ancestors(s, spans).some((a) => a.name === 'notifications process'));
      expect(notifierCalls.map((s) => s.name)).toEqual(expect.arrayContaining(['request presence.query']));
      // No span of this trace is an orphan: one root, every other parent is in the trace. (The root is
      // this test's own fetch: the undici instrumentation traces it, and the gateway continues its trace.)
      const ids = new Set(spans.map((s) => s.spanContext().spanId));
      const roots = spans.filter((s) => !ids.has(parentId(s) ?? ''));
      expect(roots.map((s) => s.name)).toEqual(['POST']);
      expect(parentId(http)).toBe(roots[0]!.spanContext().spanId);
    } finally {
      await bobSocket.close();
    }
  });

  it('a WebSocket send is traced from the frame through the handler', async () => {
    const { alice, conv } = await conversationPair(ctx.api);
    const { client } = await connect(ctx.stack.gateway.port, { token: alice.token });
    try {
      exporter.reset();
      expect((await client.request('message.send', { conversationId: conv, content: 'ws traced' })).type).toBe('ack');
      const server = await expect.poll(() => exporter.getFinishedSpans().find((s) => s.name === 'messages.send')).toBeDefined().then(() => exporter.getFinishedSpans().find((s) => s.name === 'messages.send')!);
      const trace = traceOf(server.spanContext().traceId);
      const root = trace.find((s) => !trace.some((p) => p.spanContext().spanId === parentId(s)));
      expect(root?.name).toBe('ws message.send');
      expect(root?.attributes['chat.service']).toBe('gateway');
    } finally {
      await client.close();
    }
  });

  it('log lines written inside a span carry its trace and span ids', async () => {
    const { Writable } = await import('node:stream');
    const { createLogger, inSpan } = await import('@chat/platform');
    const lines: string[] = [];
    const log = createLogger('unit', 'info', new Writable({ write: (c, _e, done) => (lines.push(String(c)), done()) }));
    let ids: { traceId: string; spanId: string } | undefined;
    await inSpan('logging', {}, async (span) => {
      ids = { traceId: span.spanContext().traceId, spanId: span.spanContext().spanId };
      log.info('inside');
    });
    log.info('outside');
    const [inside, outside] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(inside).toMatchObject(ids!);
    expect(outside!.traceId).toBeUndefined();
  });
});
