import { z } from './zod';
import { unstorableText } from './content';

export const UserIdSchema = z
  .string()
  .min(1)
  .max(128)
  .refine((s) => unstorableText(s) === undefined, 'must be text without NUL or lone surrogates');
export const UsernameSchema = z
  .string()
  .min(3)
  .max(32)
  .regex(/^[A-Za-z0-9_.-]+$/, 'must be 3-32 of [A-Za-z0-9_.-]');
export const IsoTime = z.string();

export const UserSchema = z.object({
  id: UserIdSchema,
  username: z.string(),
  displayName: z.string().nullable(),
  avatarUrl: z.string().nullable(),
});
export type User = z.infer<typeof UserSchema>;

/** One emoji on a message and who reacted with it, in order of reacting (SPEC 10). */
export const ReactionSchema = z.object({ emoji: z.string(), userIds: z.array(UserIdSchema) });
export type Reaction = z.infer<typeof ReactionSchema>;

/**
 * A message as it is now. A deleted one is a tombstone: content "", deletedAt
 * set, no reactions. The section 10 fields default when absent, so a snapshot
 * stored before they existed still reads as a message.
 */
export const MessageSchema = z.object({
  id: z.string(),
  conversationId: z.string(),
  senderId: UserIdSchema,
  content: z.string(),
  clientMessageId: z.string().nullable(),
  createdAt: IsoTime,
  readAt: IsoTime.nullable(),
  editedAt: IsoTime.nullable().default(null),
  deletedAt: IsoTime.nullable().default(null),
  reactions: z.array(ReactionSchema).default([]),
});
export type Message = z.infer<typeof MessageSchema>;

/**
 * One answer of GET /search/messages (SPEC 10): the matching message and the
 * conversation it is in, with the caller's other participant.
 */
export const SearchResultSchema = z.object({
  message: MessageSchema,
  conversation: z.object({ id: z.string(), participant: UserSchema }),
});
export type SearchResult = z.infer<typeof SearchResultSchema>;

export const BlockStatusSchema = z.object({
  blockedByMe: z.boolean(),
  blockedByThem: z.boolean(),
  canMessage: z.boolean(),
});
export type BlockStatus = z.infer<typeof BlockStatusSchema>;

export const PresenceSchema = z.object({
  isOnline: z.boolean(),
  lastSeenAt: IsoTime.nullable(),
});
export type Presence = z.infer<typeof PresenceSchema>;

export const ConversationSchema = z.object({
  id: z.string(),
  participant: UserSchema.extend(PresenceSchema.shape),
  lastMessage: MessageSchema.nullable(),
  unreadCount: z.number().int(),
  blockStatus: BlockStatusSchema,
  createdAt: IsoTime,
  updatedAt: IsoTime,
});
export type Conversation = z.infer<typeof ConversationSchema>;

export const BlockSchema = z.object({
  id: z.string(),
  user: UserSchema,
  createdAt: IsoTime,
});
export type Block = z.infer<typeof BlockSchema>;

export const PageMetaSchema = z.object({
  nextCursor: z.string().nullable(),
  hasMore: z.boolean(),
});
export type PageMeta = z.infer<typeof PageMetaSchema>;

export interface Page<T> {
  items: T[];
  meta: PageMeta;
}
export const pageOf = <T extends z.ZodType>(item: T) =>
  z.object({ items: z.array(item), meta: PageMetaSchema });

export const UnreadCountSchema = z.object({
  total: z.number().int(),
  conversations: z.number().int(),
});
export type UnreadCount = z.infer<typeof UnreadCountSchema>;

export const ReadResultSchema = z.object({
  markedCount: z.number().int(),
  unreadCount: z.number().int(),
});
export type ReadResult = z.infer<typeof ReadResultSchema>;

export const NotificationPreferencesSchema = z.object({
  enabled: z.boolean(),
  mutedConversationIds: z.array(z.string().max(128)).max(1000),
});
export type NotificationPreferences = z.infer<typeof NotificationPreferencesSchema>;

/**
 * A map from user id to `value`, as it crosses the bus. Ids are opaque, so
 * one may be "__proto__": z.record drops that key on purpose, and assigning
 * it to a plain object would set the prototype instead. This keeps the
 * parsed object as JSON.parse made it (own properties, every key) and only
 * checks the values; producers build it on Object.create(null) (idMap()).
 */
export const idRecord = <T extends z.ZodType>(value: T) =>
  z.custom<Record<string, z.output<T>>>(
    (v) => typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every((x) => value.safeParse(x).success),
    'expected a map of user id to value',
  );

/** An empty map for idRecord(): no prototype, so every id is an ordinary key. */
export const idMap = <T>(): Record<string, T> => Object.create(null) as Record<string, T>;
