import { z } from './zod';

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

// A lone surrogate (half of a UTF-16 pair): JSON can spell it (`"\ud800"`),
// UTF-8 cannot, so it would be silently replaced on the way to storage.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Why a string cannot be stored as sent (NUL or a lone surrogate), or undefined when it can. */
export function unstorableText(s: string): string | undefined {
  if (s.includes('\u0000')) return 'must not contain NUL characters';
  if (LONE_SURROGATE.test(s)) return 'must be well-formed Unicode (no lone surrogates)';
  return undefined;
}

/**
 * The first string (value or key) anywhere in a parsed JSON value that no
 * text column could hold exactly, with its path; undefined when all can.
 * Checked at the edge for every body and frame, so such input is a 400
 * naming the field, never a database error or a silently altered message.
 */
export function findUnstorableText(value: unknown, path: string[] = [], depth = 0): { path: string; message: string } | undefined {
  if (typeof value === 'string') {
    const message = unstorableText(value);
    return message ? { path: path.join('.') || '(root)', message } : undefined;
  }
  if (typeof value !== 'object' || value === null || depth > 64) return undefined;
  for (const [k, v] of Object.entries(value)) {
    const keyProblem = unstorableText(k);
    if (keyProblem) return { path: [...path, '(key)'].join('.'), message: keyProblem };
    const found = findUnstorableText(v, [...path, k], depth + 1);
    if (found) return found;
  }
  return undefined;
}

export const ClientMessageIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1-64 of [A-Za-z0-9_-]');

// Built at run time: the `v` flag (Unicode sets) is newer than the compiler's target, not than Node 20 or the browsers.
const ONE_EMOJI = new RegExp('^\\p{RGI_Emoji}$', 'v');
const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/**
 * A reaction: exactly one emoji grapheme as Unicode lists it (RGI: single
 * emoji, skin-tone and ZWJ sequences, flags, keycaps). Text, two emoji, or an
 * emoji with a stray joiner is refused rather than stored as a "reaction".
 */
export const EmojiSchema = z
  .string()
  .max(64, 'must be one emoji')
  .refine((s) => ONE_EMOJI.test(s) && [...graphemes.segment(s)].length === 1, 'must be exactly one emoji');

/** Reactions one user may have on one message: different emoji, at most this many (SPEC 10). */
export const MAX_REACTIONS_PER_USER = 10;
