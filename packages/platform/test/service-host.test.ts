import { connect, type NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChatError } from '@chat/contracts';
import { BusClient, createLogger, createMetrics, endpoint, startMicroService, type HostedService } from '../src';

const prefix = `sh${Date.now().toString(36)}`;
let nc: NatsConnection;
let svc: HostedService;
const metrics = createMetrics('test');

beforeAll(async () => {
  nc = await connect({ servers: process.env.NATS_URL ?? 'nats://127.0.0.1:4222' });
  svc = await startMicroService(
    nc,
    { name: `${prefix}-probe`, version: '0.0.1', description: 'test' },
    [
      endpoint(`${prefix}.probe.echo`, z.object({ n: z.number() }), async (req) => ({ twice: req.n * 2 })),
      endpoint(`${prefix}.probe.domain`, z.object({}), async () => {
        throw new ChatError('NOT_BLOCKED', 'not blocked');
      }),
      endpoint(`${prefix}.probe.crash`, z.object({}), async () => {
        throw new Error('secret internals at line 42');
      }),
    ],
    createLogger('test', 'silent'),
    metrics,
  );
});
afterAll(async () => {
  await svc.stop();
  await nc.drain();
});

describe('service host and bus client over real NATS', () => {
  const bus = () => new BusClient(nc, 1000);

  it('replies with the handler result inside the ok envelope', async () => {
    expect(await bus().request(`${prefix}.probe.echo`, { n: 21 }, z.object({ twice: z.number() }))).toEqual({ twice: 42 });
  });

  it('turns a request that fails its schema into VALIDATION_FAILED with the bad fields', async () => {
    await expect(bus().request(`${prefix}.probe.echo`, { n: 'x' }, z.unknown())).rejects.toMatchObject({
      code: 'VALIDATION_FAILED',
      details: [{ path: 'n', message: expect.any(String) }],
    });
  });

  it('turns a body that is not JSON into VALIDATION_FAILED', async () => {
    const reply = await nc.request(`${prefix}.probe.echo`, 'not json{', { timeout: 1000 });
    expect(reply.json()).toMatchObject({ ok: false, error: { code: 'VALIDATION_FAILED' } });
  });

  it('passes a domain error through with its code', async () => {
    await expect(bus().request(`${prefix}.probe.domain`, {}, z.unknown())).rejects.toMatchObject({ code: 'NOT_BLOCKED' });
  });

  it('answers an unexpected failure as INTERNAL without its message or stack', async () => {
    const reply = await nc.request(`${prefix}.probe.crash`, '{}', { timeout: 1000 });
    const raw = reply.string();
    expect(JSON.parse(raw)).toEqual({ ok: false, error: { code: 'INTERNAL', message: 'internal error' } });
    expect(raw).not.toMatch(/secret internals|line 42|at /);
  });

  it('gives SERVICE_UNAVAILABLE naming the service when no one answers the subject', async () => {
    await expect(bus().request(`${prefix}.nobody.home`, {}, z.unknown())).rejects.toMatchObject({
      code: 'SERVICE_UNAVAILABLE',
      message: 'nobody did not answer',
    });
  });

  it('rejects a reply that breaks its contract as INTERNAL', async () => {
    await expect(bus().request(`${prefix}.probe.echo`, { n: 1 }, z.object({ other: z.string() }))).rejects.toMatchObject({ code: 'INTERNAL' });
  });

  it('answers the services API ping and counts handled requests by endpoint', async () => {
    const pong = await nc.request(`$SRV.PING.${prefix}-probe`, undefined, { timeout: 1000 });
    expect(pong.json()).toMatchObject({ name: `${prefix}-probe`, type: 'io.nats.micro.v1.ping_response' });
    const counted = (await metrics.natsHandler.get()).values.filter((v) => v.metricName?.endsWith('_count') && v.labels.endpoint === 'echo');
    expect(counted.reduce((n, v) => n + v.value, 0)).toBeGreaterThanOrEqual(3);
  });
});

describe('stopping a service with a request in flight (a rolling restart)', () => {
  it('replies to the request it already took before its connection is drained', async () => {
    const own = await connect({ servers: process.env.NATS_URL ?? 'nats://127.0.0.1:4222' });
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const hosted = await startMicroService(
      own,
      { name: `${prefix}-slow`, version: '0.0.1', description: 'test' },
      [
        endpoint(`${prefix}.slow.work`, z.object({}), async () => {
          started();
          await new Promise((r) => setTimeout(r, 300));
          return { done: true };
        }),
      ],
      createLogger('test', 'silent'),
    );
    const reply = new BusClient(nc, 3000).request(`${prefix}.slow.work`, {}, z.object({ done: z.boolean() }));
    await running;
    // What SIGTERM does: stop taking requests, then drain and close the connection.
    await hosted.stop();
    await own.drain();
    await expect(reply).resolves.toEqual({ done: true });
  });
});
