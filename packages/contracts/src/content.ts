import { z } from 'zod';

export const MAX_CONTENT_CODE_POINTS = 5000;

// C0 controls other than \t \n \r, DEL, and C1 controls.
const FORBIDDEN_CONTROL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]/u;

/**
 * Message content: trimmed as String.prototype.trim does, then 1-5000 code
 * points with no control characters. Everything else is kept byte for byte.
 */
export const ContentSchema = z
  .string()
  .transform((s) => s.trim())
  .superRefine((s, ctx) => {
    const length = [...s].length;
    if (length < 1) ctx.addIssue({ code: 'custom', message: 'must not be empty after trimming' });
    if (length > MAX_CONTENT_CODE_POINTS)
      ctx.addIssue({ code: 'custom', message: `must be at most ${MAX_CONTENT_CODE_POINTS} characters` });
    if (FORBIDDEN_CONTROL.test(s)) ctx.addIssue({ code: 'custom', message: 'must not contain control characters' });
  });

export const ClientMessageIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1-64 of [A-Za-z0-9_-]');
