import {
  ContactsRequest,
  ConversationSnapshotSchema,
  FindUserRequest,
  GetConversationRequest,
  GetOrCreateConversationRequest,
  GetUsersRequest,
  ListConversationsRequest,
  ParticipantsRequest,
  UpsertUserRequest,
  type Subjects,
} from '@chat/contracts';
import { endpoint, type Database, type EndpointDef } from '@chat/platform';
import { ChatError } from '@chat/contracts';
import type { ConversationsService } from './conversations.service';
import { UsersRepository } from './users.repository';
import { ConversationsRepository } from './conversations.repository';
import type { ListCache } from './list-cache';
import { withTransaction, isUniqueViolation } from '@chat/platform';

export function conversationEndpoints(s: Subjects['conversations'], service: ConversationsService, db: Database, cache?: ListCache): EndpointDef[] {
  const users = new UsersRepository(db);
  return [
    endpoint(s.list, ListConversationsRequest, (req, ctx) => service.list(req.actor, req.cursor, req.limit, ctx)),
    endpoint(s.get, GetConversationRequest, (req, ctx) => service.get(req.actor, req.conversationId, ctx)),
    endpoint(s.getOrCreate, GetOrCreateConversationRequest, (req, ctx) => service.getOrCreate(req.actor, req.username, ctx, req.create)),
    endpoint(s.participants, ParticipantsRequest, async (req) => ({
      conversationId: req.conversationId,
      userIds: await service.participants(req.conversationId),
    })),
    endpoint(s.contacts, ContactsRequest, (req) => service.contacts(req.userId, req.after)),
    endpoint(s.upsertUser, UpsertUserRequest, (req) => upsertUser(db, req, cache)),
    endpoint(s.findUser, FindUserRequest, async (req) => {
      const user = await users.findByUsername(req.username);
      if (!user) throw new ChatError('USER_NOT_FOUND', `no user named ${req.username}`);
      return user;
    }),
    endpoint(s.getUsers, GetUsersRequest, (req) => service.usersFitting(req.ids)),
    // The event of the same change follows through the projection and finds the version applied (a no-op).
    endpoint(s.applySnapshot, ConversationSnapshotSchema, async (snapshot) => {
      const changed = await new ConversationsRepository(db).applySnapshot({ ...snapshot, lastMessageAt: snapshot.lastMessage?.createdAt ?? null });
      await cache?.invalidate(changed);
      return { applied: changed.length > 0 };
    }),
  ];
}

/**
 * A name stays with the first account to claim it (users.repository.ts
 * `claim`). Two first claims racing for one name, or a release racing a
 * claim, end in a unique violation or a deadlock for one of them: that one
 * runs again and sees the winner.
 */
async function upsertUser(db: Database, user: Parameters<UsersRepository['claim']>[0], cache: ListCache | undefined) {
  for (let attempt = 0; ; attempt++) {
    try {
      const { before, saved, promoted } = await withTransaction(db, (tx) => new UsersRepository(tx).claim(user));
      const changed = before !== undefined && JSON.stringify(before) !== JSON.stringify(saved);
      // The profile shows in every contact's list: their cached first pages are out of date.
      if (cache && (changed || promoted !== undefined)) {
        const conversations = new ConversationsRepository(db);
        const stale = changed ? await conversations.contacts(user.id) : [];
        if (promoted !== undefined) stale.push(...(await conversations.contacts(promoted)));
        await cache.invalidate(stale);
      }
      return saved;
    } catch (err) {
      if (attempt < 4 && (isUniqueViolation(err) || isDeadlock(err))) continue;
      throw err;
    }
  }
}

const isDeadlock = (err: unknown): boolean => (err as { code?: unknown } | null)?.code === '40P01';
