import { ChatError, EventType, idMap, UserSchema, type BlockCreatedEvent, type BlockRemovedEvent, type Block, type BlockStatus, type Page, type Subjects, type User } from '@chat/contracts';
import { appendOutbox, decodeCursor, iso, lockUserPair, newId, toPage, withTransaction, type BusClient, type Database, type Logger } from '@chat/platform';
import { z } from 'zod';
import { BlocksRepository } from './blocks.repository';

export interface CallContext {
  requestId: string | undefined;
  log: Logger;
}

const Users = z.array(UserSchema);

/** Blocks by username; users are resolved through the conversations service's directory. */
export class BlocksService {
  private readonly repo: BlocksRepository;

  constructor(
    private readonly db: Database,
    private readonly bus: BusClient,
    private readonly subjects: Subjects,
    /** Wakes the outbox relay after a commit that wrote an event. */
    private readonly onCommitted: () => void = () => undefined,
  ) {
    this.repo = new BlocksRepository(db);
  }

  async block(actor: string, username: string, ctx: CallContext): Promise<Block> {
    const user = await this.findUser(username, ctx);
    if (user.id === actor) throw new ChatError('CANNOT_BLOCK_SELF', 'cannot block yourself');
    const row = await withTransaction(this.db, async (tx) => {
      // Waits for sends of this pair that already passed their block check (see lockUserPair).
      await lockUserPair(tx, actor, user.id, 'exclusive');
      const inserted = await new BlocksRepository(tx).insert(newId(), actor, user.id);
      const event: BlockCreatedEvent = { eventId: newId(), blockId: inserted.id, blockerId: actor, blockedId: user.id, createdAt: iso(inserted.created_at) };
      await appendOutbox(tx, event.eventId, EventType.blockCreated, event);
      return inserted;
    });
    this.onCommitted();
    ctx.log.info({ userId: actor, blockedId: user.id }, 'user blocked');
    return { id: row.id, user, createdAt: iso(row.created_at) };
  }

  async unblock(actor: string, username: string, ctx: CallContext): Promise<null> {
    const user = await this.findUser(username, ctx);
    await withTransaction(this.db, async (tx) => {
      if (!(await new BlocksRepository(tx).delete(actor, user.id))) throw new ChatError('NOT_BLOCKED', 'this user is not blocked');
      const event: BlockRemovedEvent = { eventId: newId(), blockerId: actor, blockedId: user.id, removedAt: new Date().toISOString() };
      await appendOutbox(tx, event.eventId, EventType.blockRemoved, event);
    });
    this.onCommitted();
    ctx.log.info({ userId: actor, blockedId: user.id }, 'user unblocked');
    return null;
  }

  async list(actor: string, cursor: string | undefined, limit: number, ctx: CallContext): Promise<Page<Block>> {
    const before = cursor === undefined ? undefined : decodeCursor(cursor);
    const rows = await this.repo.page(actor, before, limit + 1);
    const page = toPage(rows, limit, (r) => r, (r) => ({ at: r.created_key, id: r.id }));
    const ids = page.items.map((r) => r.blocked_id);
    const users = ids.length
      ? await this.bus.request(this.subjects.conversations.getUsers, { ids }, Users, { requestId: ctx.requestId })
      : [];
    const byId = new Map(users.map((u) => [u.id, u]));
    const unknown = (id: string): User => ({ id, username: id, displayName: null, avatarUrl: null });
    return {
      items: page.items.map((r) => ({ id: r.id, user: byId.get(r.blocked_id) ?? unknown(r.blocked_id), createdAt: iso(r.created_at) })),
      meta: page.meta,
    };
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
    return this.bus.request(this.subjects.conversations.findUser, { username }, UserSchema, { requestId: ctx.requestId });
  }
}
