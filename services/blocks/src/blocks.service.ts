import { ChatError, EventType, GetUsersReply, isChatError, unknownUser, usersById, idMap, UserSchema, type BlockCreatedEvent, type BlockRemovedEvent, type Block, type BlockStatus, type Page, type Subjects, type User } from '@chat/contracts';
import { appendOutbox, countFitting, decodeCursor, iso, newId, toPage, withTransaction, type BusClient, type Database, type Logger } from '@chat/platform';
import { z } from 'zod';
import { BlocksRepository } from './blocks.repository';

export interface CallContext {
  requestId: string | undefined;
  log: Logger;
}

const Applied = z.object({ applied: z.boolean() });

/** Blocks by username; users are resolved through the conversations service's directory. */
export class BlocksService {
  private readonly repo: BlocksRepository;

  constructor(
    private readonly db: Database,
    private readonly bus: BusClient,
    private readonly subjects: Subjects,
    /** Wakes the outbox relay after a commit that wrote an event. */
    private readonly onCommitted: () => void = () => undefined,
    /** Bytes a reply may carry (replyBudget): a NATS message larger than max_payload is never delivered. */
    private readonly maxReplyBytes: () => number = () => 512 * 1024,
  ) {
    this.repo = new BlocksRepository(db);
  }

  /**
   * Stores the block, then pushes it to the messages service's replica and
   * answers only once that is applied: no send is accepted after the 201.
   * A push that fails answers 503 with the block stored; the block event
   * repairs the replica, and a retried call (ALREADY_BLOCKED) pushes again.
   */
  async block(actor: string, username: string, ctx: CallContext): Promise<Block> {
    const user = await this.findUser(username, ctx);
    if (user.id === actor) throw new ChatError('CANNOT_BLOCK_SELF', 'cannot block yourself');
    let row;
    try {
      row = await withTransaction(this.db, async (tx) => {
        const repo = new BlocksRepository(tx);
        const version = await repo.bumpVersion(actor, user.id);
        const inserted = await repo.insert(newId(), actor, user.id);
        const event: BlockCreatedEvent = { eventId: newId(), blockId: inserted.id, blockerId: actor, blockedId: user.id, createdAt: iso(inserted.created_at), version };
        await appendOutbox(tx, event.eventId, EventType.blockCreated, event);
        return { ...inserted, version };
      });
    } catch (err) {
      if (isChatError(err) && err.code === 'ALREADY_BLOCKED') await this.pushCurrent(actor, user.id, ctx);
      throw err;
    }
    this.onCommitted();
    await this.push({ blockerId: actor, blockedId: user.id, blocked: true, version: row.version }, ctx);
    ctx.log.info({ userId: actor, blockedId: user.id }, 'user blocked');
    return { id: row.id, user, createdAt: iso(row.created_at) };
  }

  async unblock(actor: string, username: string, ctx: CallContext): Promise<null> {
    const user = await this.findUser(username, ctx);
    let version;
    try {
      version = await withTransaction(this.db, async (tx) => {
        const repo = new BlocksRepository(tx);
        const v = await repo.bumpVersion(actor, user.id);
        if (!(await repo.delete(actor, user.id))) throw new ChatError('NOT_BLOCKED', 'this user is not blocked');
        const event: BlockRemovedEvent = { eventId: newId(), blockerId: actor, blockedId: user.id, removedAt: new Date().toISOString(), version: v };
        await appendOutbox(tx, event.eventId, EventType.blockRemoved, event);
        return v;
      });
    } catch (err) {
      if (isChatError(err) && err.code === 'NOT_BLOCKED') await this.pushCurrent(actor, user.id, ctx);
      throw err;
    }
    this.onCommitted();
    await this.push({ blockerId: actor, blockedId: user.id, blocked: false, version }, ctx);
    ctx.log.info({ userId: actor, blockedId: user.id }, 'user unblocked');
    return null;
  }

  /** Pages of every pair's state, for a replica filling itself the first time. */
  async replicaPage(after: { blockerId: string; blockedId: string } | undefined, limit: number) {
    const rows = await this.repo.pairStates(after, limit + 1);
    return { items: rows.slice(0, limit), hasMore: rows.length > limit };
  }

  private async push(change: { blockerId: string; blockedId: string; blocked: boolean; version: number }, ctx: CallContext): Promise<void> {
    try {
      await this.bus.request(this.subjects.messages.applyBlock, change, Applied, { requestId: ctx.requestId });
    } catch (err) {
      ctx.log.warn({ err: (err as Error).message, userId: change.blockerId }, 'block stored but not yet applied by messages');
      throw new ChatError('SERVICE_UNAVAILABLE', 'blocks: the change is stored but the messages service did not confirm it; retry the call');
    }
  }

  /** After a retry found nothing to change: make sure the replica has the pair's state (an earlier push may have failed). */
  private async pushCurrent(blockerId: string, blockedId: string, ctx: CallContext): Promise<void> {
    const state = await this.repo.pairState(blockerId, blockedId);
    if (state) await this.push({ blockerId, blockedId, ...state }, ctx);
  }

  async list(actor: string, cursor: string | undefined, limit: number, ctx: CallContext): Promise<Page<Block>> {
    const before = cursor === undefined ? undefined : decodeCursor(cursor);
    const rows = await this.repo.page(actor, before, limit + 1);
    const kept = rows.slice(0, limit);
    const byId = await usersById(
      (ids) => this.bus.request(this.subjects.conversations.getUsers, { ids }, GetUsersReply, { requestId: ctx.requestId, idempotent: true, hedge: true }),
      kept.map((r) => r.blocked_id),
    );
    const items = kept.map((r) => ({ id: r.id, user: byId.get(r.blocked_id) ?? unknownUser(r.blocked_id), createdAt: iso(r.created_at) }));
    // Long profiles can make a full page outgrow a NATS message: it is cut short, with hasMore and a cursor at its last item.
    const fit = Math.min(limit, countFitting(items, this.maxReplyBytes()));
    const page = toPage(rows.slice(0, fit + 1), fit, (r) => r, (r) => ({ at: r.created_key, id: r.id }));
    return { items: items.slice(0, fit), meta: page.meta };
  }

  async status(userId: string, otherId: string): Promise<BlockStatus> {
    return (await this.statusMany(userId, [otherId]))[otherId]!;
  }

  async statusByUsername(actor: string, username: string, ctx: CallContext): Promise<BlockStatus> {
    const user = await this.findUser(username, ctx);
    if (user.id === actor) return { blockedByMe: false, blockedByThem: false, canMessage: false };
    return this.status(actor, user.id);
  }

  async statusMany(userId: string, otherIds: readonly string[]): Promise<Record<string, BlockStatus>> {
    const rows = await this.repo.between(userId, otherIds);
    const result = idMap<BlockStatus>();
    for (const other of otherIds) {
      const blockedByMe = rows.some((r) => r.blocker_id === userId && r.blocked_id === other);
      const blockedByThem = rows.some((r) => r.blocker_id === other && r.blocked_id === userId);
      result[other] = { blockedByMe, blockedByThem, canMessage: !blockedByMe && !blockedByThem };
    }
    return result;
  }

  private findUser(username: string, ctx: CallContext): Promise<User> {
    return this.bus.request(this.subjects.conversations.findUser, { username }, UserSchema, { requestId: ctx.requestId, idempotent: true, hedge: true });
  }

  /** The status of each pair, in the order given: one statement for a whole batch of unrelated pairs. */
  async statusPairs(pairs: ReadonlyArray<{ userId: string; otherId: string }>): Promise<BlockStatus[]> {
    const rows = await this.repo.betweenPairs(pairs);
    return rows.map((r) => ({ blockedByMe: r.by_me, blockedByThem: r.by_them, canMessage: !r.by_me && !r.by_them }));
  }
}
