import {
  ContactsRequest,
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
    endpoint(s.contacts, ContactsRequest, (req) => service.contacts(req.userId)),
    endpoint(s.upsertUser, UpsertUserRequest, (req) => upsertUser(db, req, cache)),
    endpoint(s.findUser, FindUserRequest, async (req) => {
      const user = await users.findByUsername(req.username);
      if (!user) throw new ChatError('USER_NOT_FOUND', `no user named ${req.username}`);
      return user;
    }),
    endpoint(s.getUsers, GetUsersRequest, (req) => users.getMany(req.ids)),
  ];
}

/** A username moves to whoever presents it last; two racing claims retry once. */
async function upsertUser(db: Database, user: Parameters<UsersRepository['upsert']>[0], cache: ListCache | undefined) {
  for (let attempt = 0; ; attempt++) {
    try {
      const { saved, changed } = await withTransaction(db, async (tx) => {
        const repo = new UsersRepository(tx);
        const before = (await repo.getMany([user.id]))[0];
        await repo.releaseUsername(user.id, user.username);
        const saved = await repo.upsert(user);
        return { saved, changed: before !== undefined && JSON.stringify(before) !== JSON.stringify(saved) };
      });
      // The profile shows in every contact's list: their cached first pages are out of date.
      if (changed && cache) await cache.invalidate(await new ConversationsRepository(db).contacts(user.id));
      return saved;
    } catch (err) {
      if (attempt < 2 && isUniqueViolation(err)) continue;
      throw err;
    }
  }
}
