import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { BusClient } from '@chat/platform';
import { runDir, removeDir, startNatsCluster, type NatsCluster } from '../scripts/chaos/infra';

/**
 * A NATS node going away under a request (a rolling upgrade of the cluster,
 * a node lost): the chaos run's rolling restart saw REST reads answer 503
 * because the reply went with the requester's connection. An idempotent
 * request is asked again on the new connection; any other is not.
 */
describe('BusClient when its NATS node stops answering mid-request', () => {
  let dir: string;
  let cluster: NatsCluster;
  let responder: NatsConnection;
  let calls = 0;
  beforeAll(async () => {
    dir = runDir('bus');
    cluster = await startNatsCluster(dir);
    responder = await connect({ servers: cluster.nodes[1]!.url });
    responder.subscribe('bus-test.echo', {
      callback: (_err, msg) => {
        calls++;
        msg.respond(JSON.stringify({ ok: true, data: { echo: (msg.json() as { n: number }).n } }));
      },
    });
    await responder.flush();
  }, 60_000);
  afterAll(async () => {
    await responder?.close();
    for (const n of cluster?.nodes ?? []) n.signal('SIGCONT');
    await cluster?.stop();
    if (dir) removeDir(dir);
  });

  /** A client on node 1 (node 3 as its fallback) that notices a silent server within about a second. */
  const requester = () =>
    connect({ servers: [cluster.nodes[0]!.url, cluster.nodes[2]!.url], noRandomize: true, pingInterval: 400, maxPingOut: 2, reconnectTimeWait: 100, timeout: 1000 });

  it('asks an idempotent request again once reconnected, and answers within its timeout', async () => {
    const nc = await requester();
    const bus = new BusClient(nc, 8000);
    try {
      expect(await bus.request('bus-test.echo', { n: 1 }, z.object({ echo: z.number() }), { idempotent: true })).toEqual({ echo: 1 });
      calls = 0;
      // Node 1 freezes: whatever it was handed is never delivered, its clients hear nothing.
      cluster.nodes[0]!.signal('SIGSTOP');
      const started = Date.now();
      const reply = await bus.request('bus-test.echo', { n: 2 }, z.object({ echo: z.number() }), { idempotent: true });
      expect(reply).toEqual({ echo: 2 });
      // Well before the 8 s timeout: asked again as soon as the connection moved to node 3.
      expect(Date.now() - started).toBeLessThan(6000);
      // Once, or twice if node 1 passed the first ask on before it froze (the reply is what was lost then).
      expect(calls).toBeGreaterThanOrEqual(1);
    } finally {
      cluster.nodes[0]!.signal('SIGCONT');
      await nc.close();
    }
  }, 30_000);

  it('does not ask a request that is not idempotent again: it fails with SERVICE_UNAVAILABLE', async () => {
    const nc = await requester();
    const bus = new BusClient(nc, 3000);
    try {
      calls = 0;
      cluster.nodes[0]!.signal('SIGSTOP');
      await expect(bus.request('bus-test.echo', { n: 3 }, z.object({ echo: z.number() }))).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
      expect(calls).toBe(0);
    } finally {
      cluster.nodes[0]!.signal('SIGCONT');
      await nc.close();
    }
  }, 30_000);

  it('waits for the connection to come back before asking, instead of failing at once', async () => {
    const nc = await requester();
    const bus = new BusClient(nc, 5000);
    try {
      const disconnected = (async () => {
        for await (const st of nc.status()) if (st.type === 'disconnect') return;
      })();
      cluster.nodes[0]!.signal('SIGSTOP');
      await disconnected;
      calls = 0;
      // Not idempotent, and nothing was sent yet: it waits for the connection, then asks once.
      expect(await bus.request('bus-test.echo', { n: 4 }, z.object({ echo: z.number() }))).toEqual({ echo: 4 });
      expect(calls).toBe(1);
    } finally {
      cluster.nodes[0]!.signal('SIGCONT');
      await nc.close();
    }
  }, 30_000);

  it('answers an idempotent request whose node was killed under it', async () => {
    const nc = await requester();
    const bus = new BusClient(nc, 5000);
    try {
      const reply = bus.request('bus-test.echo', { n: 5 }, z.object({ echo: z.number() }), { idempotent: true });
      await cluster.nodes[0]!.kill('SIGKILL');
      expect(await reply).toEqual({ echo: 5 });
    } finally {
      await nc.close();
      await cluster.nodes[0]!.start();
    }
  }, 30_000);

  it('hedges an idempotent read: with no answer after a second it asks again, and takes the first answer', async () => {
    const nc = await connect({ servers: cluster.nodes[1]!.url });
    let seen = 0;
    // The first ask vanishes (its reply lost with a node, its replica frozen); a second is answered.
    nc.subscribe('bus-test.flaky', {
      queue: 'q',
      callback: (_err, msg) => {
        if (++seen > 1) msg.respond(JSON.stringify({ ok: true, data: { seen } }));
      },
    });
    await nc.flush();
    const bus = new BusClient(nc, 5000);
    try {
      const started = Date.now();
      expect(await bus.request('bus-test.flaky', {}, z.object({ seen: z.number() }), { idempotent: true, hedge: true })).toEqual({ seen: 2 });
      expect(Date.now() - started).toBeLessThan(3000);
      // Not hedged, the same loss is a timeout.
      seen = 0;
      await expect(bus.request('bus-test.flaky', {}, z.unknown(), { idempotent: true, timeoutMs: 1500 })).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
    } finally {
      await nc.close();
    }
  }, 30_000);
});
