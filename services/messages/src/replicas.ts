import { BlockCreatedEvent, BlockRemovedEvent, BlockReplicaPage, ConversationCreatedEvent, subjects, type Subjects } from '@chat/contracts';
import { PoisonEventError, runConsumer, type BusClient, type Logger, type NatsConnection } from '@chat/platform';
import type { Registry } from 'prom-client';
import type { MessagesRepository } from './messages.repository';

const REPLICA = 'blocks';
const PAGE = 1000;
const RETRY_MS = 1000;

/**
 * Fills this service's replica of blocks from the blocks service the first
 * time (an existing deployment has blocks older than the event stream
 * keeps), then leaves it to the pushes and the event consumer. Sends wait
 * for it: the service registers its endpoints only after this resolves.
 */
export async function syncBlockReplica(repo: MessagesRepository, bus: BusClient, s: Subjects, log: Logger, stopping: () => boolean): Promise<void> {
  if (await repo.isReplicaSynced(REPLICA)) return;
  let after: { blockerId: string; blockedId: string } | undefined;
  let pairs = 0;
  for (let attempt = 1; !stopping(); ) {
    try {
      const page = await bus.request(s.blocks.replicaPage, { limit: PAGE, ...(after ? { after } : {}) }, BlockReplicaPage, { idempotent: true, hedge: true });
      for (const item of page.items) await repo.applyBlock(item);
      pairs += page.items.length;
      const last = page.items.at(-1);
      if (last) after = { blockerId: last.blockerId, blockedId: last.blockedId };
      if (!page.hasMore) break;
    } catch (err) {
      if (attempt++ % 10 === 1) log.warn({ err: (err as Error).message }, 'block replica: waiting for the blocks service to fill it');
      await new Promise((r) => setTimeout(r, RETRY_MS));
    }
  }
  if (stopping()) return;
  await repo.markReplicaSynced(REPLICA);
  log.info({ pairs }, 'block replica filled from the blocks service');
}

/**
 * Repairs the replica from the durable block events: a push the blocks
 * service could not deliver (this service was away) arrives this way. The
 * pair's version makes a late or repeated event harmless.
 */
export function startBlockReplicaConsumer(nc: NatsConnection, repo: MessagesRepository, prefix: string, log: Logger, registry?: Registry, replicas?: number) {
  const s = subjects(prefix).events;
  return runConsumer(nc, {
    prefix,
    durable: 'messages-block-replica',
    filterSubject: s.blockEvents,
    log,
    registry,
    replicas,
    service: 'messages',
    handle: async (subject, data) => {
      const created = subject.endsWith('.block.created');
      const parsed = (created ? BlockCreatedEvent : BlockRemovedEvent).safeParse(data);
      if (!parsed.success) throw new PoisonEventError(`${subject} does not match its contract`);
      const { blockerId, blockedId, version } = parsed.data;
      await repo.applyBlock({ blockerId, blockedId, blocked: created, version: version ?? 0 });
    },
  });
}

/**
 * Learns each new conversation's participants from its conversation.created
 * event, so the first send of a conversation does not wait for a request to
 * the conversations service (it still asks if it gets there first).
 */
export function startConversationConsumer(nc: NatsConnection, repo: MessagesRepository, prefix: string, log: Logger, registry?: Registry, replicas?: number) {
  return runConsumer(nc, {
    prefix,
    durable: 'messages-conversations',
    filterSubject: subjects(prefix).events.conversationCreated,
    log,
    registry,
    replicas,
    service: 'messages',
    lingerMs: 10,
    handleBatch: async (events) => {
      const parsed = events.map((e) => ConversationCreatedEvent.safeParse(e.data));
      await repo.insertConversations(parsed.flatMap((p) => (p.success ? [{ id: p.data.conversationId, userIds: p.data.userIds }] : [])));
      return parsed.map((p, i) => (p.success ? undefined : new PoisonEventError(`${events[i]!.subject} does not match its contract`)));
    },
  });
}
