import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { DEV_JWT_SECRET, loadConfig } from '@chat/platform';
import { api, newUser } from './helpers/client';
import { allReady, freePort, runEnv, runStart, servicePids } from './helpers/processes';
import { dropRunResources, runId } from './helpers/stack';
import { connect } from './helpers/ws';


interface OtlpSpan {
  service: string;
  scope: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
}

/** The test's own OTLP/HTTP collector: keeps every span POSTed to /v1/traces (the exporter's JSON encoding). */
function otlpReceiver(): Promise<{ server: Server; port: number; spans: OtlpSpan[]; requests: () => number }> {
  const spans: OtlpSpan[] = [];
  let requests = 0;
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      requests++;
      if (req.method === 'POST' && req.url === '/v1/traces') {
        const doc = JSON.parse(body) as { resourceSpans: any[] };
        for (const rs of doc.resourceSpans ?? []) {
          const service = rs.resource?.attributes?.find((a: any) => a.key === 'service.name')?.value?.stringValue ?? '?';
          for (const ss of rs.scopeSpans ?? [])
            for (const s of ss.spans ?? [])
              spans.push({ service, scope: ss.scope?.name ?? '', traceId: s.traceId, spanId: s.spanId, parentSpanId: s.parentSpanId ?? '', name: s.name });
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as AddressInfo).port, spans, requests: () => requests })));
}

describe('OTLP export: with OTEL_EXPORTER_OTLP_ENDPOINT set, one send is one trace across the service processes', () => {
  const id = runId();
  const env = { ...runEnv(id), JWT_SECRET: DEV_JWT_SECRET };
  let collector: Awaited<ReturnType<typeof otlpReceiver>> | undefined;
  afterAll(async () => {
    for (const pid of servicePids(id)) process.kill(Number(pid), 'SIGKILL');
    collector?.server.close();
    await dropRunResources(loadConfig({ ...env, CONFIG_FILE: '/nonexistent' }));
  });

  it('gateway, messages (with SQL), the consumers and the recipient socket write export spans of one trace, each under its own service.name', async () => {
    collector = await otlpReceiver();
    const port = await freePort();
    const run = runStart({ ...env, PORT: String(port), OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${collector.port}` });
    await allReady(run.output, 40_000);
    expect(run.output()).toMatch(/gateway ready/);

    const client = api(`http://127.0.0.1:${port}`);
    const [alice, bob] = [await newUser('alice'), await newUser('bob')];
    const { signToken } = await import('./helpers/client');
    const sign = (u: typeof alice) => signToken({ sub: u.id, username: u.username }, { secret: DEV_JWT_SECRET });
    const [aliceToken, bobToken] = [await sign(alice), await sign(bob)];
    expect((await client.get('/conversations', bobToken)).status).toBe(200);
    const conv = (await client.get(`/conversations/with/${bob.username}`, aliceToken)).body.data.id as string;
    const { client: bobSocket } = await connect(port, { token: bobToken });
    const sent = await client.post(`/conversations/${conv}/messages`, aliceToken, { content: 'exported' });
    expect(sent.status).toBe(201);
    await bobSocket.next((f) => f.type === 'message.new');
    await new Promise((r) => setTimeout(r, 500)); // the consumers finish after the answer
    await bobSocket.close();

    // SIGTERM: each process flushes its batched spans on the way out.
    run.child.kill('SIGTERM');
    expect(await run.exited).toBe(0);

    const spans = collector.spans;
    const http = spans.find((s) => s.service === 'gateway' && s.name === 'POST /api/chat/conversations/:conversationId/messages');
    expect(http, `spans received: ${spans.length}`).toBeDefined();
    const trace = spans.filter((s) => s.traceId === http!.traceId);
    const services = new Set(trace.map((s) => s.service));
    expect([...services].sort()).toEqual(expect.arrayContaining(['blocks', 'conversations', 'gateway', 'messages', 'notifications', 'presence']));
    const has = (service: string, name: string | RegExp) =>
      trace.some((s) => s.service === service && (typeof name === 'string' ? s.name === name : name.test(s.name)));
    expect(has('gateway', 'request messages.send')).toBe(true);
    expect(has('messages', 'messages.send')).toBe(true);
    // The whole send is one prepared statement (SELECT send_messages(…)), named after it.
    expect(trace.some((s) => s.service === 'messages' && s.scope === '@opentelemetry/instrumentation-pg' && /send_messages/.test(s.name))).toBe(true);
    expect(has('messages', 'publish message.created')).toBe(true);
    expect(has('conversations', 'conversations-projection process')).toBe(true);
    expect(has('notifications', 'notifications process')).toBe(true);
    expect(has('gateway', 'ws deliver message.new')).toBe(true);
    // Parents cross process boundaries: every span but the root has its parent among the exported ones.
    const ids = new Set(trace.map((s) => s.spanId));
    const orphans = trace.filter((s) => s.parentSpanId && !ids.has(s.parentSpanId));
    expect(orphans.map((s) => `${s.service}:${s.name}`)).toEqual([]);
  }, 90_000);
});
