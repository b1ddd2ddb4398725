import { z } from './zod';
import { ClientMessageIdSchema, ContentSchema } from './content';
import { MessageSchema } from './dto';

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
export const TypingPayload = z.object({ conversationId: z.string(), userId: z.string(), isTyping: z.boolean() });
export const UserOnlinePayload = z.object({ userId: z.string() });
export const UserOfflinePayload = z.object({ userId: z.string(), lastSeenAt: z.string().nullable() });

export const DurableEventSchema = z.object({
  seq: z.number().int().positive(),
  type: z.enum([DurableEventType.messageNew, DurableEventType.messageRead, DurableEventType.unreadUpdated]),
  payload: z.record(z.string(), z.unknown()),
});
export type DurableEvent = z.infer<typeof DurableEventSchema>;

export const EphemeralEventSchema = z.object({
  type: z.enum([EphemeralEventType.typing, EphemeralEventType.userOnline, EphemeralEventType.userOffline]),
  payload: z.record(z.string(), z.unknown()),
});
export type EphemeralEvent = z.infer<typeof EphemeralEventSchema>;

/** What arrives on `<prefix>.deliver.<user>`: a durable event (with seq) or an ephemeral one. */
export const DeliverySchema = z.union([DurableEventSchema, EphemeralEventSchema]);
export type Delivery = z.infer<typeof DeliverySchema>;

export const EventsReply = z.object({
  events: z.array(DurableEventSchema),
  latestSeq: z.number().int().min(0),
  hasMore: z.boolean(),
});
export type EventsReply = z.infer<typeof EventsReply>;

/** Client → server frames. */
const FrameId = z.string().min(1).max(64);
const ConversationId = z.string().min(1).max(128);
export const ClientFrameSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('message.send'),
    id: FrameId.optional(),
    payload: z.strictObject({ conversationId: ConversationId, content: z.string().pipe(ContentSchema), clientMessageId: ClientMessageIdSchema.optional() }),
  }),
  z.strictObject({
    type: z.literal('message.read'),
    id: FrameId.optional(),
    payload: z.strictObject({ conversationId: ConversationId, messageId: z.string().min(1).max(128).optional() }),
  }),
  z.strictObject({ type: z.literal('typing.start'), id: FrameId.optional(), payload: z.strictObject({ conversationId: ConversationId }) }),
  z.strictObject({ type: z.literal('typing.stop'), id: FrameId.optional(), payload: z.strictObject({ conversationId: ConversationId }) }),
  z.strictObject({ type: z.literal('ping'), id: FrameId.optional(), payload: z.object({}).optional() }),
]);
export type ClientFrame = z.infer<typeof ClientFrameSchema>;

export const TYPING_TIMEOUT_MS = 5_000;
export const MAX_FRAME_BYTES = 16 * 1024;
