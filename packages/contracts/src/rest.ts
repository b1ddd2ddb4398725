import { z } from './zod';
import { ClientMessageIdSchema, ContentSchema } from './content';
import { NotificationPreferencesSchema } from './dto';

/** REST request bodies and queries as the gateway validates them. */
export const SendMessageBody = z.strictObject({
  content: z.string({ error: 'must be a string' }).pipe(ContentSchema),
  clientMessageId: ClientMessageIdSchema.optional(),
});
export const EditMessageBody = z.strictObject({ content: z.string({ error: 'must be a string' }).pipe(ContentSchema) });
export const ReadBody = z.strictObject({ messageId: z.string().min(1).max(128).optional() });
export const CreateBlockBody = z.strictObject({ username: z.string().min(1).max(64) });
export const PreferencesBody = NotificationPreferencesSchema.strict();

const LimitParam = z
  .string()
  .regex(/^\d{1,4}$/, 'must be an integer from 1 to 100')
  .transform(Number)
  .pipe(z.number().int().min(1, 'must be at least 1').max(100, 'must be at most 100'));

export const PageQuery = z.object({
  limit: LimitParam.optional().default(20),
  // Not bounded here: any string that is not a cursor the API issued is 400 INVALID_CURSOR (decodeCursor), never VALIDATION_FAILED.
  cursor: z.string().optional(),
});
export const PresenceQuery = z.object({
  userIds: z
    .string()
    .transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean))
    .pipe(z.array(z.string().min(1).max(128)).min(1, 'needs 1-100 ids').max(100, 'needs 1-100 ids')),
});

export const EventsQuery = z.object({
  since: z
    .string()
    .regex(/^\d{1,15}$/, 'must be a non-negative integer')
    .transform(Number)
    .optional()
    .default(0),
  limit: LimitParam.optional().default(20),
});

/** POST /ws-ticket's answer: a single-use ticket for `?ticket=` on the upgrade. */
export const WsTicketSchema = z.object({
  ticket: z.string(),
  expiresAt: z.string(),
});

/** GET /search/messages: q is 1-200 characters after trimming; limit 1-50 (default 20). */
export const SearchQuery = z.object({
  q: z
    .string()
    .transform((s) => s.trim())
    .pipe(z.string().min(1, 'must not be empty after trimming').max(200, 'must be at most 200 characters')),
  conversationId: z.string().min(1).max(128).optional(),
  limit: z
    .string()
    .regex(/^\d{1,4}$/, 'must be an integer from 1 to 50')
    .transform(Number)
    .pipe(z.number().int().min(1, 'must be at least 1').max(50, 'must be at most 50'))
    .optional()
    .default(20),
  cursor: z.string().optional(),
});
