import { z } from './zod';
import { ClientMessageIdSchema, ContentSchema, EmojiSchema } from './content';
import { MessageSchema, ReactionSchema } from './dto';

/**
 * Server → client frames. Durable events carry `seq` (per user, +1 each, never
 * reused); ephemeral ones do not and are never replayed. The same object is
 * what a gateway receives on a user's delivery subject, what it writes to the
 * socket, and what `GET /events` lists.
 */
export const DurableEventType = {
  messageNew: 'message.new',
  messageRead: 'message.read',
  unreadUpdated: 'unread.updated',
  messageUpdated: 'message.updated',
  messageDeleted: 'message.deleted',
  reactionUpdated: 'reaction.updated',
} as const;
export type DurableEventType = (typeof DurableEventType)[keyof typeof DurableEventType];

export const EphemeralEventType = {
  typing: 'typing',
  userOnline: 'user.online',
  userOffline: 'user.offline',
} as const;
export type EphemeralEventType = (typeof EphemeralEventType)[keyof typeof EphemeralEventType];

export const MessageNewPayload = z.object({ message: MessageSchema });
export const MessageReadPayload = z.object({
  conversationId: z.string(),
  readerId: z.string(),
  lastReadMessageId: z.string(),
  readAt: z.string(),
});
export const UnreadUpdatedPayload = z.object({ total: z.number().int(), conversationId: z.string(), conversationUnread: z.number().int() });
export const MessageUpdatedPayload = z.object({ message: MessageSchema });
export const MessageDeletedPayload = z.object({ conversationId: z.string(), messageId: z.string(), deletedAt: z.string() });
export const ReactionUpdatedPayload = z.object({ conversationId: z.string(), messageId: z.string(), reactions: z.array(ReactionSchema) });
export const TypingPayload = z.object({ conversationId: z.string(), userId: z.string(), isTyping: z.boolean() });
export const UserOnlinePayload = z.object({ userId: z.string() });
export const UserOfflinePayload = z.object({ userId: z.string(), lastSeenAt: z.string().nullable() });

const Seq = z.number().int().positive();
const durable = <T extends DurableEventType, P extends z.ZodType>(type: T, payload: P) => z.object({ seq: Seq, type: z.literal(type), payload });
const ephemeral = <T extends EphemeralEventType, P extends z.ZodType>(type: T, payload: P) => z.object({ type: z.literal(type), payload });

/** A durable event, typed by its `type`: what a socket receives, what `GET /events` lists. */
export const DurableEventSchema = z.discriminatedUnion('type', [
  durable(DurableEventType.messageNew, MessageNewPayload),
  durable(DurableEventType.messageRead, MessageReadPayload),
  durable(DurableEventType.unreadUpdated, UnreadUpdatedPayload),
  durable(DurableEventType.messageUpdated, MessageUpdatedPayload),
  durable(DurableEventType.messageDeleted, MessageDeletedPayload),
  durable(DurableEventType.reactionUpdated, ReactionUpdatedPayload),
]);
export type DurableEvent = z.infer<typeof DurableEventSchema>;

export const EphemeralEventSchema = z.discriminatedUnion('type', [
  ephemeral(EphemeralEventType.typing, TypingPayload),
  ephemeral(EphemeralEventType.userOnline, UserOnlinePayload),
  ephemeral(EphemeralEventType.userOffline, UserOfflinePayload),
]);
export type EphemeralEvent = z.infer<typeof EphemeralEventSchema>;

/** What arrives on `<prefix>.deliver.<user>`: a durable event (with seq) or an ephemeral one. */
export const DeliverySchema = z.union([DurableEventSchema, EphemeralEventSchema]);
export type Delivery = z.infer<typeof DeliverySchema>;

/**
 * The envelope of a delivery as the gateway routes it: seq and type checked,
 * the payload passed through as the messages or presence service rendered it
 * (from the same contract). Checking every payload field again here would
 * cost the send path's hottest loop for nothing a client could not already
 * trust; tests check deliveries against DeliverySchema.
 */
export const DeliveryEnvelopeSchema = z.union([
  z.object({ seq: Seq, type: z.enum(Object.values(DurableEventType) as [DurableEventType, ...DurableEventType[]]), payload: z.record(z.string(), z.unknown()) }),
  z.object({ type: z.enum(Object.values(EphemeralEventType) as [EphemeralEventType, ...EphemeralEventType[]]), payload: z.record(z.string(), z.unknown()) }),
]) as unknown as z.ZodType<Delivery>;

export const EventsReply = z.object({
  events: z.array(DurableEventSchema),
  latestSeq: z.number().int().min(0),
  hasMore: z.boolean(),
});
export type EventsReply = z.infer<typeof EventsReply>;

/** Client → server frames. */
const FrameId = z.string().min(1).max(64);
const ConversationId = z.string().min(1).max(128);
const MessageId = z.string().min(1).max(128);
export const ClientFrameSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('message.send'),
    id: FrameId.optional(),
    payload: z.strictObject({ conversationId: ConversationId, content: z.string().pipe(ContentSchema), clientMessageId: ClientMessageIdSchema.optional() }),
  }),
  z.strictObject({
    type: z.literal('message.read'),
    id: FrameId.optional(),
    payload: z.strictObject({ conversationId: ConversationId, messageId: MessageId.optional() }),
  }),
  z.strictObject({
    type: z.literal('message.edit'),
    id: FrameId.optional(),
    payload: z.strictObject({ conversationId: ConversationId, messageId: MessageId, content: z.string().pipe(ContentSchema) }),
  }),
  z.strictObject({ type: z.literal('message.delete'), id: FrameId.optional(), payload: z.strictObject({ conversationId: ConversationId, messageId: MessageId }) }),
  z.strictObject({
    type: z.literal('reaction.add'),
    id: FrameId.optional(),
    payload: z.strictObject({ conversationId: ConversationId, messageId: MessageId, emoji: EmojiSchema }),
  }),
  z.strictObject({
    type: z.literal('reaction.remove'),
    id: FrameId.optional(),
    payload: z.strictObject({ conversationId: ConversationId, messageId: MessageId, emoji: EmojiSchema }),
  }),
  z.strictObject({ type: z.literal('typing.start'), id: FrameId.optional(), payload: z.strictObject({ conversationId: ConversationId }) }),
  z.strictObject({ type: z.literal('typing.stop'), id: FrameId.optional(), payload: z.strictObject({ conversationId: ConversationId }) }),
  z.strictObject({ type: z.literal('ping'), id: FrameId.optional(), payload: z.object({}).optional() }),
]);
export type ClientFrame = z.infer<typeof ClientFrameSchema>;

export const TYPING_TIMEOUT_MS = 5_000;
export const MAX_FRAME_BYTES = 16 * 1024;
