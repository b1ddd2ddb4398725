import { z } from './zod';
import { MessageSchema, UserIdSchema } from './dto';

/**
 * Domain events on the `<prefix>.events.>` stream. Each carries a snapshot of
 * the conversation's derived state at `version` (per conversation, strictly
 * increasing), so a projection applies the newest version it has seen and
 * ignores older or repeated deliveries.
 */
const ConversationSnapshot = {
  eventId: z.string(),
  conversationId: z.string(),
  version: z.number().int().positive(),
  lastMessage: MessageSchema.nullable(),
  unread: z.array(z.object({ userId: UserIdSchema, count: z.number().int().min(0) })),
};

/**
 * The snapshot alone: what the messages service pushes to the conversations
 * service when a change must show in the list before it answers (a delete's
 * content must be gone from every answer from its 200 on, SPEC 10).
 */
export const ConversationSnapshotSchema = z.object(ConversationSnapshot).omit({ eventId: true });
export type ConversationSnapshot = z.infer<typeof ConversationSnapshotSchema>;

export const MessageCreatedEvent = z.object({ ...ConversationSnapshot, message: MessageSchema });
export type MessageCreatedEvent = z.infer<typeof MessageCreatedEvent>;

export const MessageReadEvent = z.object({
  ...ConversationSnapshot,
  readerId: UserIdSchema,
  lastReadMessageId: z.string(),
  readAt: z.string(),
  markedCount: z.number().int(),
});
export type MessageReadEvent = z.infer<typeof MessageReadEvent>;

/**
 * An edit, a delete, a reaction: the conversation's new snapshot and the
 * message it was about. They carry no message of their own, so each message
 * event holds the content of one message only, its lastMessage (see
 * subjects().events.messageEvent).
 */
export const MessageUpdatedEvent = z.object({ ...ConversationSnapshot, messageId: z.string() });
export type MessageUpdatedEvent = z.infer<typeof MessageUpdatedEvent>;

export const MessageDeletedEvent = z.object({ ...ConversationSnapshot, messageId: z.string(), deletedAt: z.string() });
export type MessageDeletedEvent = z.infer<typeof MessageDeletedEvent>;

export const MessageReactionsEvent = z.object({ ...ConversationSnapshot, messageId: z.string() });
export type MessageReactionsEvent = z.infer<typeof MessageReactionsEvent>;

export const ConversationCreatedEvent = z.object({
  eventId: z.string(),
  conversationId: z.string(),
  userIds: z.tuple([UserIdSchema, UserIdSchema]),
  createdAt: z.string(),
});
export type ConversationCreatedEvent = z.infer<typeof ConversationCreatedEvent>;

export const BlockCreatedEvent = z.object({
  eventId: z.string(),
  blockId: z.string(),
  blockerId: UserIdSchema,
  blockedId: UserIdSchema,
  createdAt: z.string(),
  /** The pair's change counter in the blocks service (absent in events written before it existed). */
  version: z.number().int().min(0).optional(),
});
export type BlockCreatedEvent = z.infer<typeof BlockCreatedEvent>;

export const BlockRemovedEvent = z.object({
  eventId: z.string(),
  blockerId: UserIdSchema,
  blockedId: UserIdSchema,
  removedAt: z.string(),
  version: z.number().int().min(0).optional(),
});
export type BlockRemovedEvent = z.infer<typeof BlockRemovedEvent>;

/** Event types: each is the subject below `<prefix>.events.`. */
export const EventType = {
  messageCreated: 'message.created',
  messageRead: 'message.read',
  messageUpdated: 'message.updated',
  messageDeleted: 'message.deleted',
  messageReactions: 'message.reactions',
  conversationCreated: 'conversation.created',
  blockCreated: 'block.created',
  blockRemoved: 'block.removed',
} as const;
export type EventType = (typeof EventType)[keyof typeof EventType];
