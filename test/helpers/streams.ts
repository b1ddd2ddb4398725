import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { eventStreamName } from '@chat/contracts';

/**
 * Every event on a run's stream under `<prefix>.events.<type>`, read through a
 * throwaway consumer (nats-server 2.9 allows one filter subject per consumer).
 */
export async function streamEvents<T = Record<string, unknown>>(natsUrl: string, prefix: string, type: string): Promise<T[]> {
  const nc = await connect({ servers: natsUrl });
  try {
    const jsm = await jetstreamManager(nc);
    const stream = eventStreamName(prefix);
    const info = await jsm.consumers.add(stream, {
      filter_subject: `${prefix}.events.${type}`,
      ack_policy: AckPolicy.None,
      deliver_policy: DeliverPolicy.All,
      inactive_threshold: 5_000_000_000,
    });
    const out: T[] = [];
    try {
      if (info.num_pending === 0) return out;
      const c = await jetstream(nc).consumers.get(stream, info.name);
      for await (const m of await c.fetch({ max_messages: info.num_pending, expires: 3000 })) {
        out.push(m.json<T>());
        if (out.length >= info.num_pending) break;
      }
      return out;
    } finally {
      await jsm.consumers.delete(stream, info.name).catch(() => undefined);
    }
  } finally {
    await nc.close();
  }
}
