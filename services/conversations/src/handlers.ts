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
import { withTransaction, isUniqueViolation } from '@chat/platform';

export function conversationEndpoints(s: Subjects['conversations'], service: ConversationsService, db: Database): EndpointDef[] {
  const users = new UsersRepository(db);
  return [
    endpoint(s.list, ListConversationsRequest, (req, ctx) => service.list(req.actor, req.cursor, req.limit, ctx)),
    endpoint(s.get, GetConversationRequest, (req, ctx) => service.get(req.actor, req.conversationId, ctx)),
    endpoint(s.getOrCreate, GetOrCreateConversationRequest, (req, ctx) => service.getOrCreate(req.actor, req.username, ctx)),
    endpoint(s.participants, ParticipantsRequest, async (req) => ({
      conversationId: req.conversationId,
      userIds: await service.participants(req.conversationId),
    })),
    endpoint(s.contacts, ContactsRequest, (req) => service.contacts(req.userId)),
    endpoint(s.upsertUser, UpsertUserRequest, (req) => upsertUser(db, req)),
    endpoint(s.findUser, FindUserRequest, async (req) => {
      const user = await users.findByUsername(req.username);
      if (!user) throw new ChatError('USER_NOT_FOUND', `no user named ${req.username}`);
      return user;
    }),
    endpoint(s.getUsers, GetUsersRequest, (req) => users.getMany(req.ids)),
  ];
}

/** A username moves to whoever presents it last; two racing claims retry once. */
async function upsertUser(db: Database, user: Parameters<UsersRepository['upsert']>[0]) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await withTransaction(db, async (tx) => {
        const repo = new UsersRepository(tx);
        await repo.releaseUsername(user.id, user.username);
        return repo.upsert(user);
      });
    } catch (err) {
      if (attempt < 2 && isUniqueViolation(err)) continue;
      throw err;
    }
  }
}
