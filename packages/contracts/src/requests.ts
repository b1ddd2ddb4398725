import { z } from './zod';
import { ClientMessageIdSchema, ContentSchema, EmojiSchema } from './content';
import { BlockStatusSchema, ConversationSchema, MessageSchema, PageMetaSchema, NotificationPreferencesSchema, UserIdSchema, UserSchema, UsernameSchema, type User } from './dto';

/**
 * Bodies of the request/reply subjects. `actor` is the authenticated caller,
 * set by the gateway from the verified token, never by a client.
 */
const Actor = { actor: UserIdSchema };
// The cursor bound is only a size guard (above what an HTTP request line can carry); decodeCursor judges validity (INVALID_CURSOR).
const PageRequest = { cursor: z.string().max(16_384).optional(), limit: z.number().int().min(1).max(100) };
// Ids are opaque at the bus boundary; an id that cannot exist is a 404, not a 400.
const Id = z.string().min(1).max(128);

export const UpsertUserRequest = z.object({
  id: UserIdSchema,
  username: UsernameSchema,
  displayName: z.string().max(256).nullable(),
  avatarUrl: z.string().max(2048).nullable(),
});
export const FindUserRequest = z.object({ username: z.string().min(1).max(64) });
export const GetUsersRequest = z.object({ ids: z.array(UserIdSchema).max(200) });
/**
 * The users among `ids[0 .. answered)` (unknown ids are left out). Profiles
 * can be long, so a reply holds what fits in a NATS message: ask again with
 * `ids.slice(answered)` until every id is answered.
 */
export const GetUsersReply = z.object({ users: z.array(UserSchema), answered: z.number().int().min(0) });

/** Every profile among `ids`, by id: `ask` is one get-users request, asked again for the ids a reply could not hold. */
export async function usersById(ask: (ids: string[]) => Promise<z.output<typeof GetUsersReply>>, ids: readonly string[]): Promise<Map<string, User>> {
  const users = new Map<string, User>();
  for (let rest = [...new Set(ids)]; rest.length > 0; ) {
    const r = await ask(rest);
    for (const u of r.users) users.set(u.id, u);
    rest = rest.slice(Math.max(1, r.answered));
  }
  return users;
}

/** Every participant is in the directory (a conversation is opened by username); should one be missing, it shows under its id. */
export const unknownUser = (id: string): User => ({ id, username: id, displayName: null, avatarUrl: null });

export const ListConversationsRequest = z.object({ ...Actor, ...PageRequest });
export const GetConversationRequest = z.object({ ...Actor, conversationId: Id });
/** `create: false` only looks the pair up: CONVERSATION_NOT_FOUND when it does not exist yet. */
export const GetOrCreateConversationRequest = z.object({ ...Actor, username: z.string().min(1).max(64), create: z.boolean().default(true) });
export const GetOrCreateConversationReply = z.object({ conversation: ConversationSchema, created: z.boolean() });
export const ParticipantsRequest = z.object({ conversationId: Id });
export const ParticipantsReply = z.object({ conversationId: z.string(), userIds: z.tuple([UserIdSchema, UserIdSchema]) });

export const ListMessagesRequest = z.object({ ...Actor, conversationId: Id, ...PageRequest });
export const GetMessageRequest = z.object({ ...Actor, messageId: Id });
export const SendMessageRequest = z.object({
  ...Actor,
  conversationId: Id,
  content: ContentSchema,
  clientMessageId: ClientMessageIdSchema.optional(),
  /**
   * Epoch ms after which the caller no longer waits for the answer: the send
   * then writes nothing, so a timeout at the edge never commits behind the
   * client's back.
   */
  deadline: z.number().int().positive().optional(),
});
/** Section 10: the message's sender changes it (edit, delete) or either participant reacts. */
const MessageRef = { ...Actor, conversationId: Id, messageId: Id };
export const EditMessageRequest = z.object({ ...MessageRef, content: ContentSchema });
export const DeleteMessageRequest = z.object(MessageRef);
export const ReactRequest = z.object({ ...MessageRef, emoji: EmojiSchema, on: z.boolean() });
/** What an edit, delete or reaction answers: the message as it is now, and whether anything changed (no event when not). */
export const MessageChangeReply = z.object({ message: MessageSchema, changed: z.boolean() });
export type MessageChangeReply = z.infer<typeof MessageChangeReply>;
/** The caller's messages matching q, newest first; the gateway adds each conversation's participant. */
export const SearchMessagesRequest = z.object({
  ...Actor,
  q: z.string().min(1).max(200),
  conversationId: Id.optional(),
  cursor: z.string().max(16_384).optional(),
  limit: z.number().int().min(1).max(50),
});
export const SearchHit = z.object({ message: MessageSchema, participantId: UserIdSchema });
export type SearchHit = z.infer<typeof SearchHit>;
export const SearchMessagesReply = z.object({ items: z.array(SearchHit), meta: PageMetaSchema });
export const ReadMessagesRequest = z.object({ ...Actor, conversationId: Id, messageId: Id.optional() });
export const UnreadCountRequest = z.object({ ...Actor });

export const BlockByUsernameRequest = z.object({ ...Actor, username: z.string().min(1).max(64) });
export const ListBlocksRequest = z.object({ ...Actor, ...PageRequest });
export const BlockStatusRequest = z.object({ userId: UserIdSchema, otherId: UserIdSchema });
/** The blocks service pushing one pair's state to the messages service's replica (see block_replica). */
export const ApplyBlockRequest = z.object({ blockerId: UserIdSchema, blockedId: UserIdSchema, blocked: z.boolean(), version: z.number().int().min(0) });
export const BlockReplicaItem = ApplyBlockRequest;
/** Every pair's state, in (blockerId, blockedId) order, to fill a replica the first time. */
export const BlockReplicaPageRequest = z.object({
  after: z.object({ blockerId: UserIdSchema, blockedId: UserIdSchema }).optional(),
  limit: z.number().int().min(1).max(1000),
});
export const BlockReplicaPage = z.object({ items: z.array(BlockReplicaItem), hasMore: z.boolean() });
export const BlockStatusManyRequest = z.object({ userId: UserIdSchema, otherIds: z.array(UserIdSchema).max(200) });
/**
 * Block status of many unrelated pairs at once (the notifications consumer's
 * batch: each receiver with the sender of their message); the reply has one
 * BlockStatus per pair, in the order asked.
 */
export const BlockStatusPairsRequest = z.object({
  pairs: z.array(z.object({ userId: UserIdSchema, otherId: UserIdSchema })).max(200),
});
export const BlockStatusPairsReply = z.array(BlockStatusSchema);

export const PresenceQueryRequest = z.object({ userIds: z.array(UserIdSchema).max(200) });
/** Presence as one caller may see it: anyone in a block with the caller shows offline. */
export const PresenceQueryForRequest = z.object({ ...Actor, userIds: z.array(UserIdSchema).min(1).max(100) });

export const GetPreferencesRequest = z.object({ ...Actor });
export const PutPreferencesRequest = z.object({ ...Actor, preferences: NotificationPreferencesSchema });

/**
 * A user's contacts, a page at a time: a user may have more than one NATS
 * message holds. `after` is the `next` of the previous page; `next` is null
 * on the last one.
 */
export const ContactsRequest = z.object({ userId: UserIdSchema, after: z.string().max(128).optional() });
export const ContactsReply = z.object({ userIds: z.array(UserIdSchema), next: z.string().nullable() });

/** The caller's durable events after `since`; limit 0 asks only for latestSeq. */
export const EventsRequest = z.object({ ...Actor, since: z.number().int().min(0), limit: z.number().int().min(0).max(500) });
export const TypingRequest = z.object({ ...Actor, conversationId: Id, isTyping: z.boolean() });

const Connection = { userId: UserIdSchema, connectionId: z.string().min(1).max(64) };
export const PresenceConnectRequest = z.object(Connection);
export const PresenceDisconnectRequest = z.object(Connection);
export const PresenceHeartbeatRequest = z.object({ connections: z.array(z.object(Connection)).max(100_000) });
