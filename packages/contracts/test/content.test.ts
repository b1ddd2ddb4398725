import { describe, expect, it } from 'vitest';
import { ClientMessageIdSchema, ContentSchema, MAX_CONTENT_CODE_POINTS } from '../src/content';
import { ChatError, ErrorCode, errorStatus, issuesToDetails } from '../src/errors';
import { SendMessageBody } from '../src/rest';

const parse = (s: string) => ContentSchema.safeParse(s);

describe('ContentSchema', () => {
  it('trims leading and trailing white space as String.prototype.trim does, and keeps the inside', () => {
    expect(parse('  hi  ').data).toBe('hi');
    expect(parse('\n\t\r hi there \u00A0\u2003\uFEFF').data).toBe('hi there');
    expect(parse(' a\r\nb\tc ').data).toBe('a\r\nb\tc');
  });

  it('is empty after trimming: rejected', () => {
    for (const s of ['', '   ', '\n\t\r', '\u00A0\u2028\uFEFF']) {
      const r = parse(s);
      expect(r.success, JSON.stringify(s)).toBe(false);
      expect(r.error!.issues[0]!.message).toMatch(/empty/);
    }
  });

  it('counts Unicode code points, not UTF-16 units: 5000 emoji pass, 5001 fail', () => {
    expect(MAX_CONTENT_CODE_POINTS).toBe(5000);
    expect(parse('😀'.repeat(5000)).success).toBe(true);
    expect(parse('a'.repeat(5000)).success).toBe(true);
    expect(parse('a'.repeat(5001)).success).toBe(false);
    const r = parse('😀'.repeat(5001));
    expect(r.success).toBe(false);
    expect(r.error!.issues[0]!.message).toMatch(/5000/);
    // Surrounding white space does not count against the limit.
    expect(parse(`  ${'a'.repeat(5000)}  `).success).toBe(true);
  });

  it('rejects C0 controls other than \\t \\n \\r, DEL and C1 controls', () => {
    const bad = ['\u0000', '\u0001', '\u0007', '\u0008', '\u000B', '\u000C', '\u000E', '\u001B', '\u001F', '\u007F', '\u0080', '\u0085', '\u009F'];
    for (const ch of bad) {
      const r = parse(`a${ch}b`);
      expect(r.success, `U+${ch.codePointAt(0)!.toString(16)}`).toBe(false);
      expect(r.error!.issues[0]!.message).toMatch(/control/);
    }
    for (const ok of ['a\tb', 'a\nb', 'a\rb', 'a\u00A0b', 'a\u200Bb', 'a\u202Eb']) expect(parse(ok).success).toBe(true);
  });

  it('keeps HTML, SQL and RTL text unchanged (plain text, not escaped)', () => {
    for (const s of ['<img src=x onerror=alert(1)>', "' OR 1=1 --", 'שלום', 'a\u200Db']) expect(parse(s).data).toBe(s);
  });
});

describe('ClientMessageIdSchema and SendMessageBody', () => {
  it('clientMessageId is 1-64 of [A-Za-z0-9_-]', () => {
    for (const ok of ['a', 'A-b_9', 'k'.repeat(64)]) expect(ClientMessageIdSchema.safeParse(ok).success).toBe(true);
    for (const bad of ['', 'k'.repeat(65), 'has space', 'dot.id', 'ünï']) expect(ClientMessageIdSchema.safeParse(bad).success).toBe(false);
  });

  it('the send body refuses unknown fields and non-string content, naming each bad field', () => {
    const r = SendMessageBody.safeParse({ content: 5, extra: true });
    expect(r.success).toBe(false);
    const paths = issuesToDetails(r.error!.issues).map((d) => d.path);
    expect(paths).toEqual(expect.arrayContaining(['content', '(root)']));
  });
});

describe('errors', () => {
  it('errorStatus gives every ErrorCode exactly one HTTP status, as the SPEC table lists', () => {
    const codes = Object.values(ErrorCode);
    expect(Object.keys(errorStatus).sort()).toEqual([...codes].sort());
    for (const code of codes) expect(errorStatus[code], code).toBeGreaterThanOrEqual(400);
    expect(errorStatus).toMatchObject({
      VALIDATION_FAILED: 400, INVALID_FRAME: 400, INVALID_CURSOR: 400, CANNOT_CHAT_WITH_SELF: 400, CANNOT_BLOCK_SELF: 400,
      UNAUTHORIZED: 401, BLOCKED: 403, IP_BLOCKED: 403, ORIGIN_NOT_ALLOWED: 403,
      NOT_FOUND: 404, USER_NOT_FOUND: 404, CONVERSATION_NOT_FOUND: 404, MESSAGE_NOT_FOUND: 404, NOT_BLOCKED: 404,
      RESYNC_REQUIRED: 410, ALREADY_BLOCKED: 409, IDEMPOTENCY_CONFLICT: 409, PAYLOAD_TOO_LARGE: 413,
      RATE_LIMITED: 429, SERVICE_UNAVAILABLE: 503, INTERNAL: 500,
    });
  });

  it('every code is UPPER_SNAKE and named as itself', () => {
    for (const [key, value] of Object.entries(ErrorCode)) {
      expect(value).toBe(key);
      expect(value).toMatch(/^[A-Z]+(_[A-Z]+)*$/);
    }
  });

  it('ChatError.toBody carries code and message, and details only when given', () => {
    expect(new ChatError('NOT_FOUND', 'gone').toBody()).toEqual({ code: 'NOT_FOUND', message: 'gone' });
    const withDetails = new ChatError('VALIDATION_FAILED', 'bad', [{ path: 'content', message: 'x' }]);
    expect(withDetails.toBody()).toEqual({ code: 'VALIDATION_FAILED', message: 'bad', details: [{ path: 'content', message: 'x' }] });
    expect(withDetails).toBeInstanceOf(Error);
  });

  it('issuesToDetails joins nested paths and names the root', () => {
    expect(issuesToDetails([{ path: ['a', 0, 'b'], message: 'm' }, { path: [], message: 'r' }])).toEqual([
      { path: 'a.0.b', message: 'm' },
      { path: '(root)', message: 'r' },
    ]);
  });
});
