import { randomBytes } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventStreamName } from '@chat/contracts';
import { ensureEventStream } from '../src/jetstream';
import { loadConfig } from '../src/config';

describe('JetStream streams and JETSTREAM_REPLICAS (real NATS, one server)', () => {
  const prefix = `j${randomBytes(5).toString('hex')}`;
  let nc: NatsConnection;
  beforeAll(async () => {
    nc = await connect({ servers: '127.0.0.1:4222' });
  });
  afterAll(async () => {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(eventStreamName(prefix)).catch(() => undefined);
    await nc.close();
  });

  it('creates the event stream with the replicas asked for, and ensuring it again changes nothing', async () => {
    const name = await ensureEventStream(nc, prefix, 1);
    expect(name).toBe(eventStreamName(prefix));
    const jsm = await jetstreamManager(nc);
    const before = await jsm.streams.info(name);
    expect(before.config.num_replicas).toBe(1);
    expect(before.config.subjects).toEqual([`${prefix}.events.>`]);
    await Promise.all([ensureEventStream(nc, prefix, 1), ensureEventStream(nc, prefix, 1)]);
    expect((await jsm.streams.info(name)).created).toBe(before.created);
  });

  it('a new stream with more replicas than NATS servers is a start-up error naming JETSTREAM_REPLICAS', async () => {
    const other = `${prefix}x`;
    await expect(ensureEventStream(nc, other, 3)).rejects.toThrow(/JETSTREAM_REPLICAS must not exceed the number of NATS servers/);
    const jsm = await jetstreamManager(nc);
    await expect(jsm.streams.info(eventStreamName(other))).rejects.toThrow();
  });

  it('the setting is validated like every other', () => {
    expect(loadConfig({ CONFIG_FILE: '/nonexistent' }).JETSTREAM_REPLICAS).toBe(1);
    expect(loadConfig({ CONFIG_FILE: '/nonexistent', JETSTREAM_REPLICAS: '3' }).JETSTREAM_REPLICAS).toBe(3);
    for (const bad of ['0', '6', 'two']) expect(() => loadConfig({ CONFIG_FILE: '/nonexistent', JETSTREAM_REPLICAS: bad })).toThrow(/JETSTREAM_REPLICAS/);
  });
});
