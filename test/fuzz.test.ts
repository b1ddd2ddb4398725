import fc from 'fast-check';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conversationPair, knownUser, type TestUser } from './helpers/client';
import { useStack } from './helpers/stack';
import { connect, type Frame, type WsClient } from './helpers/ws';

/**
 * Property-based fuzzing of every REST body, query, path parameter and
 * WebSocket client frame. Whatever arrives, the gateway answers a 2xx or a
 * 4xx in SPEC's error envelope, with a code from SPEC's closed set and the
 * status SPEC gives that code; never a 5xx, never a crash, never a request
 * that hangs. Each property carries an oracle written from SPEC (not from the
 * implementation's schemas) that narrows the allowed answers further.
 */

const ctx = useStack();

// ---------------------------------------------------------------------------
// SPEC 4's table: every code and its one status. UNSUPPORTED_MEDIA_TYPE (415)
// is the gateway's answer to a non-JSON body (SPEC 4: "JSON in and out").
const STATUS_OF: Record<string, number> = {
  VALIDATION_FAILED: 400,
  INVALID_CURSOR: 400,
  CANNOT_CHAT_WITH_SELF: 400,
  CANNOT_BLOCK_SELF: 400,
  UNAUTHORIZED: 401,
  BLOCKED: 403,
  IP_BLOCKED: 403,
  ORIGIN_NOT_ALLOWED: 403,
  NOT_FOUND: 404,
  USER_NOT_FOUND: 404,
  CONVERSATION_NOT_FOUND: 404,
  MESSAGE_NOT_FOUND: 404,
  NOT_BLOCKED: 404,
  RESYNC_REQUIRED: 410,
  ALREADY_BLOCKED: 409,
  IDEMPOTENCY_CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RATE_LIMITED: 429,
};
const BODY_LIMIT = 64 * 1024;
const FRAME_LIMIT = 16 * 1024;
const REQUEST_TIMEOUT_MS = 6000;

// ---------------------------------------------------------------------------
// A raw HTTP client: exact paths (no URL normalisation), exact bytes, any
// content type or none, and a hard timeout so that a hung request fails.

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  body: any;
}

interface RawOpts {
  token?: string;
  body?: string | Buffer;
  /** null: no Content-Type header at all. Default application/json when there is a body. */
  contentType?: string | null;
  /** Transfer-Encoding: chunked (no Content-Length). */
  chunked?: boolean;
}

function raw(method: string, path: string, opts: RawOpts = {}): Promise<Answer> {
  const base = new URL(ctx.stack.baseUrl);
  const headers: Record<string, string | number> = {};
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  const body = opts.body === undefined ? undefined : Buffer.isBuffer(opts.body) ? opts.body : Buffer.from(opts.body, 'utf8');
  if (body !== undefined) {
    if (opts.contentType !== null) headers['content-type'] = opts.contentType ?? 'application/json';
    if (!opts.chunked) headers['content-length'] = body.length;
  }
  const what = `${method} ${path.length > 200 ? `${path.slice(0, 200)}…(${path.length} chars)` : path}`;
  return new Promise<Answer>((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      settled = true;
      req.destroy();
      reject(new Error(`${what}: no answer within ${REQUEST_TIMEOUT_MS} ms (hung request)`));
    }, REQUEST_TIMEOUT_MS);
    const req = http.request(
      { host: base.hostname, port: Number(base.port), method, path: `/api/chat${path}`, headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          reject(new Error(`${what}: response failed: ${err.message}`));
        });
        res.on('end', () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: any = text;
          try {
            parsed = text ? JSON.parse(text) : null;
          } catch {
            /* keep the text */
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body: parsed });
        });
      },
    );
    req.on('error', (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`${what}: request failed: ${err.message}`));
    });
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** A 2xx status, or an error code: what an answer may be. */
type Allowed = Array<number | string>;

const short = (s: string, n = 300) => (s.length > n ? `${s.slice(0, n)}…(${s.length} chars)` : s);
const show = (v: unknown) => short(typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v) ?? String(v));

/**
 * The answer is a 2xx in SPEC's success envelope or a 4xx in its error
 * envelope with a known code whose status matches; and it is one of `allowed`.
 */
function check(res: Answer, allowed: Allowed, input: string): void {
  const fail = (why: string) => {
    throw new Error(`${why}\n  input: ${short(input, 500)}\n  answer: ${res.status} ${short(res.text, 500)}\n  allowed: ${JSON.stringify(allowed)}`);
  };
  if (res.status >= 500 || res.status < 200) fail(`status ${res.status}: never a 5xx`);
  if (!res.headers['x-request-id']) fail('no X-Request-Id header');
  if (res.status < 300) {
    if (res.status === 204) {
      if (res.text !== '') fail('204 with a body');
    } else {
      if (!String(res.headers['content-type']).startsWith('application/json')) fail('2xx that is not JSON');
      if (typeof res.body !== 'object' || res.body === null || !('data' in res.body)) fail('2xx without { data }');
    }
    if (!allowed.includes(res.status)) fail(`status ${res.status} not expected here`);
    return;
  }
  if (res.status >= 400 && res.status < 500) {
    if (!String(res.headers['content-type']).startsWith('application/json')) fail('4xx that is not JSON');
    const e = res.body?.error;
    if (typeof e !== 'object' || e === null) fail('4xx without { error }');
    const extra = Object.keys(res.body).filter((k) => k !== 'error');
    if (extra.length) fail(`4xx body has extra keys ${extra.join(',')}`);
    const keys = Object.keys(e).filter((k) => !['code', 'message', 'requestId', 'details'].includes(k));
    if (keys.length) fail(`error has extra keys ${keys.join(',')}`);
    if (typeof e.code !== 'string' || !(e.code in STATUS_OF)) fail(`code ${String(e.code)} is not in SPEC's closed set`);
    if (STATUS_OF[e.code] !== res.status) fail(`code ${e.code} must be status ${STATUS_OF[e.code]}`);
    if (typeof e.message !== 'string' || e.message.length === 0) fail('error without message');
    if (typeof e.requestId !== 'string' || e.requestId.length === 0) fail('error without requestId');
    if (res.headers['x-request-id'] !== e.requestId) fail('requestId differs from X-Request-Id');
    if (e.code === 'VALIDATION_FAILED' && e.details !== undefined && !Array.isArray(e.details)) fail('details is not a list');
    if (/\bat .+\.(ts|js):\d+|node_modules/.test(res.text)) fail('stack trace in the body');
    if (!allowed.includes(e.code)) fail(`code ${e.code} not expected here`);
    return;
  }
  fail(`status ${res.status} is neither 2xx nor 4xx`);
}

/** Logs the first counterexample of each property (before shrinking) so a report can name it. */
const firstFailures = new Map<string, string>();
function guarded<T>(name: string, fn: (x: T) => Promise<void>): (x: T) => Promise<void> {
  return async (x: T) => {
    try {
      await fn(x);
    } catch (err) {
      if (!firstFailures.has(name)) {
        firstFailures.set(name, (err as Error).message);
        console.error(`[fuzz] ${name}: first failure\n${(err as Error).message}`);
      }
      throw err;
    }
  };
}

// ---------------------------------------------------------------------------
// Independent oracles, from SPEC's words.

const CONTROL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]/;
const CMID = /^[A-Za-z0-9_-]{1,64}$/;
const USERNAME = /^[A-Za-z0-9_.-]{3,32}$/;
/** SPEC 4: content is 1–5000 code points after JS trim(), with no C0 (but \n \r \t), DEL or C1. */
const contentOk = (s: string) => {
  const t = s.trim();
  const n = [...t].length;
  return n >= 1 && n <= 5000 && !CONTROL.test(t);
};
const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const own = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);
/** What the server sees after decoding the body as UTF-8 (lone surrogates in our text become U+FFFD). */
const asSent = (s: string) => Buffer.from(s, 'utf8').toString('utf8');
/** The string with every lone surrogate replaced by U+FFFD: all that UTF-8 (and PostgreSQL) can hold. */
const wellFormed = asSent;
/** JSON.parse, or not ok for text that is not JSON. */
function parseJson(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false };
  }
}
const utf8Bytes = (s: string) => Buffer.byteLength(s, 'utf8');
/**
 * Text no column can hold as sent: NUL, or a lone surrogate (which JSON can
 * spell as an escape). Every body, frame and query value (cursor aside, which
 * is INVALID_CURSOR like any garbage) holding one anywhere is 400 VALIDATION_FAILED.
 */
const unstorableText = (t: string) => t.includes('\u0000') || /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(t);
const hasUnstorable = (v: unknown, depth = 0): boolean =>
  typeof v === 'string'
    ? unstorableText(v)
    : depth <= 64 && typeof v === 'object' && v !== null && Object.entries(v).some(([k, x]) => unstorableText(k) || hasUnstorable(x, depth + 1));
/** Body oracles: past the size limit the size decides; else unstorable text is refused before the route's own rules. */
const storableFirst = (oracle: (text: string) => Allowed) => (text: string): Allowed => {
  if (utf8Bytes(text) <= BODY_LIMIT) {
    const p = parseJson(asSent(text));
    if (p.ok && hasUnstorable(p.value)) return ['VALIDATION_FAILED'];
  }
  return oracle(text);
};
/** Query oracles: a NUL or lone surrogate in any value but the cursor is refused first. */
const storableQueryFirst = <A extends unknown[]>(oracle: (pairs: Pairs, ...rest: A) => Allowed) => (pairs: Pairs, ...rest: A): Allowed =>
  pairs.some(([k, v]) => k !== '' && k !== 'cursor' && unstorableText(v)) ? ['VALIDATION_FAILED'] : oracle(pairs, ...rest);

// ---------------------------------------------------------------------------
// Arbitraries.

/** Characters that break things: controls, NUL, BOM, bidi overrides, surrogates, quotes, URL syntax, astral. */
const nastyChar = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...'abcXYZ019_-.'.split('')) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '\u0000', '\u0001', '\u0007', '\u0008', '\u000b', '\u000c', '\u001b', '\u001f', '\u007f', '\u0080', '\u0085', '\u009f',
      '\n', '\r', '\t', ' ', '\u00a0', '\u2028', '\u2029', '\u200b', '\u200d', '\u202e', '\u2066', '\ufeff', '\ufffd', '\uffff',
      '\ud800', '\udfff', '😀', '👩‍👩‍👧', '\u0301', 'é', 'ש', 'م', '"', "'", '\\', '/', '%', '?', '#', '&', '=', ',', '+', ';',
      '<', '>', '{', '}', '[', ']', '`', '$', '*', '\u0000\u0000',
    ),
  },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
);
const nastyString = fc.string({ unit: nastyChar, maxLength: 40 });
const protoKey = fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf');
const bigNumberText = fc.constantFrom('1e400', '-1e400', '-0', '0.0000001', '123456789012345678901234567890', '9007199254740993', '1.5', '-1', '0', 'NaN', 'Infinity', '0x10', '1_000');

/** Deep nesting built as text: `levels` arrays or objects, up to 10,000. */
const deepText = (levels: number, kind: 'array' | 'object') =>
  kind === 'array' ? `${'['.repeat(levels)}${']'.repeat(levels)}` : `${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}`;
const deepArb = (max: number) => fc.tuple(fc.integer({ min: 1, max }), fc.constantFrom('array' as const, 'object' as const)).map(([n, k]) => deepText(n, k));

/** A JSON text for a value: any JSON, nasty strings, wrong types, edge numbers, deep nesting, long strings. */
const valueText = fc.oneof(
  { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)) },
  { weight: 4, arbitrary: nastyString.map((s) => JSON.stringify(s)) },
  { weight: 1, arbitrary: bigNumberText },
  { weight: 1, arbitrary: fc.constantFrom('null', 'true', 'false', '[]', '{}', '""', '" "', '[""]', '{"__proto__":{"polluted":1}}') },
  { weight: 1, arbitrary: deepArb(5000) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 40_000 }).map((n) => JSON.stringify('x'.repeat(n))) },
);
/** `{ … }` written as text, so that duplicate keys and an own `__proto__` key survive. */
const objectText = (entries: ReadonlyArray<readonly [string, string]>) => `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`;

/** A body for a route whose fields are `fields`: shaped, half-shaped, random, garbage, deep, huge. */
function bodyArb(fields: Record<string, fc.Arbitrary<string>>): fc.Arbitrary<string> {
  const names = Object.keys(fields);
  const key = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...names) }, { weight: 1, arbitrary: protoKey }, { weight: 1, arbitrary: nastyString });
  const shaped = fc.record(fields, { requiredKeys: [] }).map((r) => objectText(Object.entries(r) as Array<[string, string]>));
  const mixed = fc.array(fc.tuple(key, fc.oneof(valueText, ...Object.values(fields))), { maxLength: 4 }).map(objectText);
  return fc.oneof(
    { weight: 6, arbitrary: shaped },
    { weight: 4, arbitrary: mixed },
    { weight: 2, arbitrary: valueText },
    { weight: 1, arbitrary: fc.string({ unit: nastyChar, maxLength: 60 }) },
    { weight: 1, arbitrary: fc.constantFrom('', ' ', '\n', '{', '{"', '{"content":', '\ufeff{}', '{}garbage', '{} {}', 'null', '[{}]') },
    { weight: 1, arbitrary: fc.integer({ min: 60_000, max: 70_000 }).map((n) => `{"${names[0]}":"${'y'.repeat(n)}"}`) },
  );
}

/** Message content: random, valid-looking, whitespace-padded, around the 5000 code point limit. */
const contentArb = fc.oneof(
  { weight: 4, arbitrary: nastyString },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.integer({ min: 4998, max: 5002 }), fc.constantFrom('a', '😀', 'e\u0301', '\u200b', 'ש'), fc.constantFrom('', ' ', '\n\t \u00a0'))
      .map(([n, unit, pad]) => `${pad}${[...unit.repeat(n)].slice(0, n).join('')}${pad}`),
  },
);

const limitValue = fc.oneof(
  fc.constantFrom('1', '20', '99', '100', '0', '101', '-1', '+5', ' 5', '5 ', '05', '0100', '1.0', '1e2', '0x10', 'NaN', '', '99999999999999999999', '٣'),
  fc.integer({ min: -1000, max: 1000 }).map(String),
  nastyString,
);
const ts = fc
  .tuple(
    fc.integer({ min: 0, max: 10_000 }),
    fc.integer({ min: 0, max: 99 }),
    fc.integer({ min: 0, max: 99 }),
    fc.integer({ min: 0, max: 99 }),
    fc.integer({ min: 0, max: 99 }),
    fc.integer({ min: 0, max: 99 }),
    fc.constantFrom('', '.0', '.123', '.123456', '.999999'),
    fc.constantFrom('Z', '+00', '+00:00', '-23:59', '+99', '+14:00', '+2400', '-00'),
    fc.constantFrom('T', ' '),
  )
  .map(([y, mo, d, h, mi, s, frac, tz, sep]) => {
    const p = (n: number, w = 2) => String(n).padStart(w, '0');
    return `${p(y, 4)}-${p(mo)}-${p(d)}${sep}${p(h)}:${p(mi)}:${p(s)}${frac}${tz}`;
  });
const tsArb = fc.oneof(
  { weight: 3, arbitrary: ts },
  { weight: 1, arbitrary: fc.date({ noInvalidDate: true }).map((d) => d.toISOString()) },
  { weight: 1, arbitrary: fc.constantFrom('0000-01-01T00:00:00Z', '2026-02-30T00:00:00Z', '2026-02-31 00:00:00+00', '2026-01-01T24:00:00Z', '1999-12-31T23:59:60Z', '9999-12-31T23:59:59.999999+14:00') },
  { weight: 1, arbitrary: nastyString },
);
const b64url = (s: string) => Buffer.from(s, 'utf8').toString('base64url');
const cursorValue = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(tsArb, fc.oneof(fc.uuid(), fc.constant('00000000-0000-0000-0000-000000000000'), nastyString)).map(([a, b]) => b64url(JSON.stringify([a, b]))) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }).map((v) => b64url(JSON.stringify(v))) },
  { weight: 2, arbitrary: nastyString },
  { weight: 1, arbitrary: fc.base64String({ maxLength: 80 }) },
  { weight: 1, arbitrary: fc.integer({ min: 500, max: 3000 }).map((n) => 'A'.repeat(n)) },
);

/** Percent-encodes every byte of the UTF-8 form but the unreserved ones. */
const pctEncode = (s: string) =>
  [...Buffer.from(s, 'utf8')].map((b) => (/[A-Za-z0-9_~-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`)).join('');
/** What a server decoding %XX sees: the decoded text, or the raw text when it is not valid percent-encoding. */
const pctDecode = (s: string) => {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
};
const query = (pairs: ReadonlyArray<readonly [string, string]>) => (pairs.length ? `?${pairs.map(([k, v]) => `${pctEncode(k)}=${pctEncode(v)}`).join('&')}` : '');

// ---------------------------------------------------------------------------

let alice: TestUser;
let bob: TestUser;
let carol: TestUser; // blocks people in the blocks fuzz; never alice's or bob's partner in the pair used for sends
let targets: TestUser[];
let conv: string;
let messageId: string;
let realCursors: { conversations: string; messages: string; blocks: string };
let protoBefore: string[];

beforeAll(async () => {
  protoBefore = Object.getOwnPropertyNames(Object.prototype).sort();
  ({ alice, bob, conv } = await conversationPair(ctx.api));
  carol = await knownUser(ctx.api, 'carol');
  targets = await Promise.all([knownUser(ctx.api, 'tgt'), knownUser(ctx.api, 'tgt'), knownUser(ctx.api, 'tgt')]);
  // A few messages, conversations and blocks so that real cursors exist.
  for (let i = 0; i < 3; i++) {
    const r = await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: `seed ${i}` });
    expect(r.status).toBe(201);
    messageId = r.body.data.id;
  }
  for (const t of targets) {
    expect((await ctx.api.get(`/conversations/with/${t.username}`, alice.token)).status).toBe(201);
    expect((await ctx.api.post('/blocks', carol.token, { username: t.username })).status).toBe(201);
  }
  const cursorOf = async (path: string, token: string) => {
    const r = await ctx.api.get(path, token);
    expect(r.status).toBe(200);
    expect(typeof r.body.meta.nextCursor).toBe('string');
    return r.body.meta.nextCursor as string;
  };
  realCursors = {
    conversations: await cursorOf('/conversations?limit=1', alice.token),
    messages: await cursorOf(`/conversations/${conv}/messages?limit=1`, alice.token),
    blocks: await cursorOf('/blocks?limit=1', carol.token),
  };
});

afterAll(() => {
  if (firstFailures.size) console.error(`[fuzz] properties that failed: ${[...firstFailures.keys()].join(', ')}`);
});

const RUNS = { numRuns: 400 } as const;

describe('fuzz: REST bodies', () => {
  it('POST /conversations/:id/messages: any body is 2xx or a SPEC 4xx; the oracle decides which', { timeout: 120_000 }, async () => {
    const body = bodyArb({
      content: contentArb.map((s) => JSON.stringify(s)),
      clientMessageId: fc.oneof(fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/), fc.constantFrom('', 'a b', 'k'.repeat(65), 'ü', 'fixed-key'), nastyString).map((s) => JSON.stringify(s)),
    });
    await fc.assert(
      fc.asyncProperty(body, guarded('send body', async (text) => {
        const res = await raw('POST', `/conversations/${conv}/messages`, { token: alice.token, body: text });
        check(res, storableFirst(expectSend)(text), text);
        if (res.status === 201 || res.status === 200) {
          const sent = JSON.parse(asSent(text)) as { content: string };
          // A lone surrogate (a JSON escape such as \ud800) may come back as U+FFFD here; 'lone surrogates' below pins that.
          if (res.status === 201 && res.body.data.content !== wellFormed(sent.content.trim())) throw new Error(`content changed: sent ${show(sent.content)}, got ${show(res.body.data.content)}`);
        }
      })),
      { numRuns: 600 },
    );
  });

  it('POST /conversations/:id/read: any body', { timeout: 120_000 }, async () => {
    const body = bodyArb({ messageId: fc.oneof(fc.constant(messageId), fc.uuid(), nastyString, fc.constant('m'.repeat(129))).map((s) => JSON.stringify(s)) });
    await fc.assert(
      fc.asyncProperty(body, guarded('read body', async (text) => {
        const res = await raw('POST', `/conversations/${conv}/read`, { token: bob.token, body: text });
        check(res, storableFirst(expectRead)(text), text);
        if (res.status === 200) {
          const d = res.body.data;
          if (!Number.isInteger(d.markedCount) || !Number.isInteger(d.unreadCount) || d.markedCount < 0 || d.unreadCount < 0)
            throw new Error(`read answered ${res.text}`);
        }
      })),
      RUNS,
    );
  });

  it('POST /blocks: any body', { timeout: 120_000 }, async () => {
    const names = () => [...targets.map((t) => t.username), carol.username, targets[0]!.username.toUpperCase()];
    const body = bodyArb({ username: fc.oneof(fc.constantFrom(...names()), fc.stringMatching(/^[A-Za-z0-9_.-]{3,32}$/), nastyString, fc.constant('u'.repeat(65))).map((s) => JSON.stringify(s)) });
    await fc.assert(
      fc.asyncProperty(body, guarded('blocks body', async (text) => {
        const res = await raw('POST', '/blocks', { token: carol.token, body: text });
        check(res, storableFirst(expectBlock)(text), text);
        // Leave the targets unblocked half the time so that both 201 and 409 are reached.
        if (res.status === 201 && Math.random() < 0.5) await raw('DELETE', `/blocks/${res.body.data.user.username}`, { token: carol.token });
      })),
      RUNS,
    );
  });

  it('PUT /notifications/preferences: any body; a valid one is stored and returned', { timeout: 120_000 }, async () => {
    const ids = fc.array(fc.oneof(fc.constant(conv), fc.uuid(), nastyString, fc.constant('c'.repeat(129))), { maxLength: 6 }).map((a) => JSON.stringify(a));
    const body = bodyArb({
      enabled: fc.oneof(fc.boolean().map(String), fc.constantFrom('"true"', '0', '1', 'null')),
      mutedConversationIds: fc.oneof(ids, fc.constantFrom('"x"', '[1]', '[null]', '{}', '[[]]'), fc.integer({ min: 1001, max: 1100 }).map((n) => JSON.stringify(Array.from({ length: n }, (_, i) => `c${i}`)))),
    });
    await fc.assert(
      fc.asyncProperty(body, guarded('preferences body', async (text) => {
        const res = await raw('PUT', '/notifications/preferences', { token: alice.token, body: text });
        check(res, storableFirst(expectPreferences)(text), text);
        if (res.status === 200) {
          const sent = JSON.parse(asSent(text)) as { enabled: boolean; mutedConversationIds: string[] };
          const d = res.body.data;
          const same = d.enabled === sent.enabled && Array.isArray(d.mutedConversationIds) &&
            JSON.stringify([...new Set<string>(d.mutedConversationIds)].sort()) === JSON.stringify([...new Set(sent.mutedConversationIds.map(wellFormed))].sort());
          if (!same) throw new Error(`preferences not stored as sent\n  input: ${short(text)}\n  answer: ${short(res.text)}`);
          const again = await raw('GET', '/notifications/preferences', { token: alice.token });
          if (JSON.stringify(again.body.data) !== JSON.stringify(d)) throw new Error(`GET differs from PUT's answer: ${short(again.text)} vs ${short(res.text)}`);
        }
      })),
      RUNS,
    );
  });
});

/** SPEC: body { content, clientMessageId? } → 201 (200 / 409 on a repeated key); anything else 400; over 64 KiB 413. */
function expectSend(text: string): Allowed {
  if (utf8Bytes(text) > BODY_LIMIT) return ['PAYLOAD_TOO_LARGE'];
  const bomTolerance: Allowed = text.startsWith('\ufeff') ? expectSendParsed(parseJson(asSent(text).slice(1))) : [];
  return [...expectSendParsed(parseJson(asSent(text))), ...bomTolerance];
}
function expectSendParsed(p: ReturnType<typeof parseJson>): Allowed {
  if (!p.ok || !isPlainObject(p.value)) return ['VALIDATION_FAILED'];
  const v = p.value;
  if (Object.keys(v).some((k) => k !== 'content' && k !== 'clientMessageId')) return ['VALIDATION_FAILED'];
  if (typeof v.content !== 'string' || !contentOk(v.content)) return ['VALIDATION_FAILED'];
  if (own(v, 'clientMessageId') && !(typeof v.clientMessageId === 'string' && CMID.test(v.clientMessageId))) return ['VALIDATION_FAILED'];
  return own(v, 'clientMessageId') ? [201, 200, 'IDEMPOTENCY_CONFLICT'] : [201];
}

/** SPEC: body { messageId? } (empty allowed) → 200, an unknown id 404 MESSAGE_NOT_FOUND; anything else 400. */
function expectRead(text: string): Allowed {
  if (utf8Bytes(text) > BODY_LIMIT) return ['PAYLOAD_TOO_LARGE'];
  if (text.trim() === '') return text === '' || /^[ \t\n\r]*$/.test(text) ? [200] : [200, 'VALIDATION_FAILED'];
  const p = parseJson(asSent(text));
  const extra: Allowed = text.startsWith('\ufeff') ? [200, 'MESSAGE_NOT_FOUND'] : [];
  if (!p.ok || !isPlainObject(p.value)) return ['VALIDATION_FAILED', ...extra];
  const v = p.value;
  if (Object.keys(v).some((k) => k !== 'messageId')) return ['VALIDATION_FAILED'];
  if (!own(v, 'messageId')) return [200];
  if (typeof v.messageId !== 'string') return ['VALIDATION_FAILED'];
  if (v.messageId.length < 1 || v.messageId.length > 128) return ['MESSAGE_NOT_FOUND', 'VALIDATION_FAILED'];
  return [200, 'MESSAGE_NOT_FOUND'];
}

/** SPEC: body { username } → 201 / 409 ALREADY_BLOCKED / 404 USER_NOT_FOUND / 400 CANNOT_BLOCK_SELF; anything else 400. */
function expectBlock(text: string): Allowed {
  if (utf8Bytes(text) > BODY_LIMIT) return ['PAYLOAD_TOO_LARGE'];
  const p = parseJson(asSent(text));
  const extra: Allowed = text.startsWith('\ufeff') ? [201, 'ALREADY_BLOCKED', 'USER_NOT_FOUND', 'CANNOT_BLOCK_SELF'] : [];
  if (!p.ok || !isPlainObject(p.value)) return ['VALIDATION_FAILED', ...extra];
  const v = p.value;
  if (Object.keys(v).some((k) => k !== 'username') || typeof v.username !== 'string') return ['VALIDATION_FAILED'];
  const name = v.username.toLowerCase();
  if (name === carol.username.toLowerCase()) return ['CANNOT_BLOCK_SELF'];
  if (targets.some((t) => t.username.toLowerCase() === name)) return [201, 'ALREADY_BLOCKED'];
  return USERNAME.test(v.username) ? ['USER_NOT_FOUND'] : ['USER_NOT_FOUND', 'VALIDATION_FAILED'];
}

/** SPEC: body { enabled: boolean, mutedConversationIds: string[] } → 200 with the stored value; anything else 400. */
function expectPreferences(text: string): Allowed {
  if (utf8Bytes(text) > BODY_LIMIT) return ['PAYLOAD_TOO_LARGE'];
  const p = parseJson(asSent(text));
  const extra: Allowed = text.startsWith('\ufeff') ? [200] : [];
  if (!p.ok || !isPlainObject(p.value)) return ['VALIDATION_FAILED', ...extra];
  const v = p.value;
  const keys = Object.keys(v);
  if (keys.some((k) => k !== 'enabled' && k !== 'mutedConversationIds') || keys.length !== 2) return ['VALIDATION_FAILED'];
  if (typeof v.enabled !== 'boolean' || !Array.isArray(v.mutedConversationIds) || v.mutedConversationIds.some((x) => typeof x !== 'string'))
    return ['VALIDATION_FAILED'];
  const ids = v.mutedConversationIds as string[];
  // SPEC bounds neither the list nor the ids; a reasonable bound (an id is at most 128 characters) may refuse.
  if (ids.length > 1000 || ids.some((x) => x.length > 128)) return [200, 'VALIDATION_FAILED'];
  return [200];
}

// ---------------------------------------------------------------------------

type Pairs = ReadonlyArray<readonly [string, string]>;
const pairsArb = (keys: Record<string, fc.Arbitrary<string>>) => {
  const names = Object.keys(keys);
  return fc.oneof(
    { weight: 5, arbitrary: fc.record(keys, { requiredKeys: [] }).map((r) => Object.entries(r) as Pairs) },
    {
      weight: 2,
      arbitrary: fc.array(fc.tuple(fc.oneof(fc.constantFrom(...names), protoKey, fc.constantFrom(`${names[0]}[]`, `${names[0]}[0]`), nastyString), fc.oneof(...Object.values(keys), nastyString)), { maxLength: 4 }),
    },
  );
};

/** SPEC pagination: limit 1–100 (else 400 VALIDATION_FAILED); cursor an issued one (garbage: 400 INVALID_CURSOR). */
function expectPage(pairs: Pairs, real: string): Allowed {
  const keys = pairs.map(([k]) => k);
  const dup = new Set(keys).size !== keys.length;
  const unknown = keys.some((k) => k !== 'limit' && k !== 'cursor');
  if (dup) return [200, 'VALIDATION_FAILED', 'INVALID_CURSOR'];
  const get = (k: string) => pairs.find(([n]) => n === k)?.[1];
  const limit = get('limit');
  const cursor = get('cursor');
  let limitOk: boolean | 'either' = true;
  if (limit !== undefined) {
    if (/^(?:[1-9]\d?|100)$/.test(limit)) limitOk = true;
    else if (/^0+(?:[1-9]\d?|100)$/.test(limit)) limitOk = 'either';
    else limitOk = false;
  }
  let cursorOk: boolean | 'either' = true;
  if (cursor !== undefined) {
    if (cursor === real) cursorOk = true;
    else if (cursor === '') cursorOk = 'either';
    else {
      // A well-formed (timestamp, UUID) pair may be accepted as a position; anything else is garbage.
      let decoded: unknown;
      try {
        decoded = /^[A-Za-z0-9_-]+$/.test(cursor) ? JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) : undefined;
      } catch {
        decoded = undefined;
      }
      cursorOk = Array.isArray(decoded) && decoded.length === 2 && decoded.every((x) => typeof x === 'string') ? 'either' : false;
    }
  }
  const out: Allowed = [];
  if (limitOk === false || limitOk === 'either') out.push('VALIDATION_FAILED');
  if (cursorOk === false || cursorOk === 'either') out.push('INVALID_CURSOR');
  if (limitOk !== false && cursorOk !== false) out.push(200);
  if (unknown) out.push(200, 'VALIDATION_FAILED');
  return out;
}

describe('fuzz: REST queries', () => {
  const routes: Array<[string, () => string, () => string, () => string]> = [
    ['GET /conversations', () => '/conversations', () => alice.token, () => realCursors.conversations],
    ['GET /conversations/:id/messages', () => `/conversations/${conv}/messages`, () => alice.token, () => realCursors.messages],
    ['GET /blocks', () => '/blocks', () => carol.token, () => realCursors.blocks],
  ];
  for (const [name, path, token, real] of routes) {
    it(`${name}: any limit and cursor`, { timeout: 120_000 }, async () => {
      const pairs = pairsArb({ limit: limitValue, cursor: fc.oneof({ weight: 6, arbitrary: cursorValue }, { weight: 1, arbitrary: fc.constant(real()) }) });
      await fc.assert(
        fc.asyncProperty(pairs, guarded(`${name} query`, async (p) => {
          const q = query(p);
          const res = await raw('GET', `${path()}${q}`, { token: token() });
          const decoded = p.map(([k, v]) => [asSent(k), asSent(v)] as const);
          check(res, storableQueryFirst(expectPage)(decoded, real()), q);
          if (res.status === 200) {
            if (!Array.isArray(res.body.data) || typeof res.body.meta?.hasMore !== 'boolean') throw new Error(`not a page: ${short(res.text)}`);
          }
        })),
        { numRuns: 300 },
      );
    });
  }

  it('GET /events: any since and limit', { timeout: 120_000 }, async () => {
    const since = fc.oneof(fc.constantFrom('0', '1', '3', '999999999999999', '9999999999999999', '99999999999999999999', '-1', '1.5', '1e3', ' 1', '+1', '', '0x1', '00'), fc.bigInt({ min: -10n, max: 10n ** 20n }).map(String), nastyString);
    const pairs = pairsArb({ since, limit: limitValue });
    await fc.assert(
      fc.asyncProperty(pairs, guarded('events query', async (p) => {
        const q = query(p);
        const res = await raw('GET', `/events${q}`, { token: bob.token });
        check(res, storableQueryFirst(expectEvents)(p.map(([k, v]) => [asSent(k), asSent(v)] as const)), q);
        if (res.status === 200 && (!Array.isArray(res.body.data) || !Number.isInteger(res.body.meta?.latestSeq))) throw new Error(`not an events page: ${short(res.text)}`);
      })),
      { numRuns: 300 },
    );
  });

  it('GET /presence: any userIds', { timeout: 120_000 }, async () => {
    const id = fc.oneof(fc.constantFrom(alice.id, bob.id, carol.id, '__proto__', 'constructor', 'toString', 'hasOwnProperty'), nastyString, fc.constant('i'.repeat(129)));
    const userIds = fc.oneof(
      { weight: 4, arbitrary: fc.array(id, { maxLength: 8 }).map((a) => a.join(',')) },
      { weight: 1, arbitrary: fc.integer({ min: 95, max: 110 }).map((n) => Array.from({ length: n }, (_, i) => `p${i}`).join(',')) },
      { weight: 1, arbitrary: fc.constantFrom('', ',', ' , ,', ',,,a,,,') },
    );
    const pairs = pairsArb({ userIds });
    await fc.assert(
      fc.asyncProperty(pairs, guarded('presence query', async (p) => {
        const q = query(p);
        const res = await raw('GET', `/presence${q}`, { token: alice.token });
        const decoded = p.map(([k, v]) => [asSent(k), asSent(v)] as const);
        check(res, storableQueryFirst(expectPresence)(decoded), q);
        if (res.status === 200) {
          const value = decoded.find(([k]) => k === 'userIds')?.[1];
          const keys = decoded.map(([k]) => k);
          if (value !== undefined && new Set(keys).size === keys.length) {
            for (const u of new Set(value.split(',').map((x) => x.trim()).filter(Boolean))) {
              const entry = own(res.body.data, u) ? res.body.data[u] : undefined;
              if (typeof entry !== 'object' || entry === null || typeof entry.isOnline !== 'boolean' || !('lastSeenAt' in entry))
                throw new Error(`presence lacks an entry for ${show(u)}\n  input: ${q}\n  answer: ${short(res.text)}`);
            }
          }
        }
      })),
      { numRuns: 300 },
    );
  });
});

/** SPEC: since a non-negative integer (default 0; garbage 400 VALIDATION_FAILED), limit 1–100; 410 past the retention. */
function expectEvents(pairs: Pairs): Allowed {
  const keys = pairs.map(([k]) => k);
  if (new Set(keys).size !== keys.length) return [200, 'VALIDATION_FAILED', 'RESYNC_REQUIRED'];
  const unknown = keys.some((k) => k !== 'limit' && k !== 'since');
  const get = (k: string) => pairs.find(([n]) => n === k)?.[1];
  const since = get('since');
  const limit = get('limit');
  let ok: boolean | 'either' = true;
  if (since !== undefined) {
    if (/^\d{1,15}$/.test(since)) ok = true;
    else if (/^\d+$/.test(since)) ok = 'either'; // beyond 2^53: a bound may refuse it
    else ok = false;
  }
  if (limit !== undefined && ok !== false) {
    if (/^(?:[1-9]\d?|100)$/.test(limit)) ok = ok === 'either' ? 'either' : true;
    else if (/^0+(?:[1-9]\d?|100)$/.test(limit)) ok = 'either';
    else ok = false;
  }
  const out: Allowed = ok === true ? [200, 'RESYNC_REQUIRED'] : ok === false ? ['VALIDATION_FAILED'] : [200, 'RESYNC_REQUIRED', 'VALIDATION_FAILED'];
  if (unknown) out.push(200, 'VALIDATION_FAILED');
  return out;
}

/** SPEC: userIds=a,b,… 1–100 ids → 200; else 400 VALIDATION_FAILED. */
function expectPresence(pairs: Pairs): Allowed {
  const keys = pairs.map(([k]) => k);
  if (new Set(keys).size !== keys.length) return [200, 'VALIDATION_FAILED'];
  const unknown = keys.some((k) => k !== 'userIds');
  const value = pairs.find(([k]) => k === 'userIds')?.[1];
  const out: Allowed = [];
  if (value === undefined) out.push('VALIDATION_FAILED');
  else {
    const ids = value.split(',').map((x) => x.trim()).filter(Boolean);
    const unique = new Set(ids).size;
    if (ids.length === 0 || unique > 100) out.push('VALIDATION_FAILED');
    else if (ids.length > 100 || ids.some((x) => x.length > 128)) out.push(200, 'VALIDATION_FAILED');
    else out.push(200);
  }
  if (unknown) out.push(200, 'VALIDATION_FAILED');
  return out;
}

// ---------------------------------------------------------------------------

/** A path segment: encoded random text, raw text with malformed %-escapes, long, dot segments, real ids. */
const segmentArb = (real: string[]) =>
  fc.oneof(
    { weight: 4, arbitrary: nastyString.filter((s) => s.length > 0).map(pctEncode) },
    { weight: 2, arbitrary: fc.string({ unit: fc.constantFrom(...'aZ09-._~!$&\'()*+,;=:@%'.split(''), '%0', '%FF', '%C3', '%00', '%2F', '%2e', '%25'), minLength: 1, maxLength: 20 }) },
    { weight: 1, arbitrary: fc.constantFrom('.', '..', '%2e%2e', '...', '%00', '%ZZ', '%', '%E2%80%AE', '%EF%BB%BF', '%C0%AF', '%ED%A0%80', 'unread-count', 'with', 'status', '__proto__', 'constructor') },
    { weight: 1, arbitrary: fc.integer({ min: 100, max: 6000 }).map((n) => 'a'.repeat(n)) },
    { weight: 1, arbitrary: fc.uuid() },
    { weight: 1, arbitrary: fc.constantFrom(...real) },
  );

describe('fuzz: REST path parameters', () => {
  const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();
  const cases: Array<[string, string, (seg: string) => string, () => string[], () => string, (decoded: string) => Allowed]> = [
    ['GET', '/conversations/:id', (s) => `/conversations/${s}`, () => [conv, conv.toUpperCase()], () => alice.token,
      (d) => (same(d, conv) || d === 'unread-count' ? [200] : ['CONVERSATION_NOT_FOUND', 'NOT_FOUND'])],
    ['GET', '/messages/:id', (s) => `/messages/${s}`, () => [messageId, messageId.toUpperCase()], () => bob.token, (d) => (same(d, messageId) ? [200] : ['MESSAGE_NOT_FOUND', 'NOT_FOUND'])],
    ['GET', '/conversations/with/:username', (s) => `/conversations/with/${s}`, () => [bob.username, alice.username, targets[0]!.username.toUpperCase()], () => alice.token,
      (d) => (same(d, alice.username) ? ['CANNOT_CHAT_WITH_SELF'] : [bob, ...targets].some((u) => same(d, u.username)) ? [200, 201] : ['USER_NOT_FOUND', 'NOT_FOUND'])],
    ['GET', '/blocks/status/:username', (s) => `/blocks/status/${s}`, () => [bob.username, carol.username, targets[1]!.username], () => carol.token,
      (d) => (same(d, carol.username) ? [200, 'CANNOT_BLOCK_SELF'] : [alice, bob, ...targets].some((u) => same(d, u.username)) ? [200] : ['USER_NOT_FOUND', 'NOT_FOUND'])],
    ['DELETE', '/blocks/:username', (s) => `/blocks/${s}`, () => [targets[2]!.username, carol.username, alice.username], () => carol.token,
      (d) => (same(d, carol.username) ? ['NOT_BLOCKED', 'CANNOT_BLOCK_SELF'] : [alice, bob, ...targets].some((u) => same(d, u.username)) ? [204, 'NOT_BLOCKED'] : ['USER_NOT_FOUND', 'NOT_BLOCKED', 'NOT_FOUND'])],
  ];
  for (const [method, name, path, real, token, oracle] of cases) {
    it(`${method} ${name}: any path parameter`, { timeout: 120_000 }, async () => {
      await fc.assert(
        fc.asyncProperty(segmentArb(real()), guarded(`${method} ${name} path`, async (seg) => {
          const p = path(seg);
          const res = await raw(method, p, { token: token() });
          // A dot segment or an encoded slash may route elsewhere: only the envelope is SPEC's then.
          const decoded = pctDecode(seg);
          const routable = !/^\.{1,2}$/.test(seg) && !decoded.includes('/') && seg !== '';
          check(res, routable ? oracle(decoded) : [200, 201, 204, 'NOT_FOUND', 'CONVERSATION_NOT_FOUND', 'MESSAGE_NOT_FOUND', 'USER_NOT_FOUND', 'NOT_BLOCKED', 'CANNOT_CHAT_WITH_SELF', 'CANNOT_BLOCK_SELF'], `${method} ${p}`);
        })),
        { numRuns: 250 },
      );
    });
  }
});

// ---------------------------------------------------------------------------

describe('fuzz: WebSocket client frames', () => {
  const REPLY = new Set(['ack', 'pong', 'error']);
  const WS_CODES = new Set(['INVALID_FRAME', 'VALIDATION_FAILED', 'CONVERSATION_NOT_FOUND', 'MESSAGE_NOT_FOUND', 'IDEMPOTENCY_CONFLICT']);
  let socket: WsClient;

  beforeAll(async () => {
    socket = (await connect(ctx.stack.gateway.port, { token: alice.token })).client;
  });
  afterAll(async () => {
    await socket?.close();
  });

  /** Sends one frame and waits for its one reply (ack, pong or error); events in between are ignored. */
  async function roundTrip(frame: string | Buffer): Promise<Frame> {
    if (socket.ws.readyState !== socket.ws.OPEN) throw new Error(`socket is no longer open (closed with ${JSON.stringify(await socket.closed)})`);
    const reply = socket.next((f) => REPLY.has(f.type), 5000);
    socket.ws.send(frame, { binary: Buffer.isBuffer(frame) });
    return reply;
  }

  const TYPES = ['message.send', 'message.read', 'message.edit', 'message.delete', 'reaction.add', 'reaction.remove', 'typing.start', 'typing.stop', 'ping'];
  const idText = fc.oneof(
    { weight: 3, arbitrary: fc.constant(undefined) },
    { weight: 3, arbitrary: fc.string({ minLength: 1, maxLength: 64 }).map((s) => JSON.stringify(s)) },
    { weight: 1, arbitrary: fc.string({ unit: nastyChar, minLength: 1, maxLength: 64 }).map((s) => JSON.stringify(s)) },
    { weight: 1, arbitrary: fc.integer({ min: 65, max: 2000 }).map((n) => JSON.stringify('i'.repeat(n))) },
    { weight: 1, arbitrary: fc.constantFrom('""', '0', '12', 'null', 'true', '[]', '{}', '{"x":1}', '"\\u0000"', '"a"', JSON.stringify('i'.repeat(64)), JSON.stringify('😀'.repeat(32))) },
  );
  const payloadText = fc.oneof(
    { weight: 1, arbitrary: fc.constant(undefined) },
    {
      weight: 4,
      arbitrary: fc
        .record(
          {
            conversationId: fc.oneof(fc.constant(conv), fc.uuid(), nastyString, fc.constant('c'.repeat(129))).map((s) => JSON.stringify(s)),
            content: contentArb.map((s) => JSON.stringify(s)),
            messageId: fc.oneof(fc.uuid(), nastyString).map((s) => JSON.stringify(s)),
            clientMessageId: fc.oneof(fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/), nastyString).map((s) => JSON.stringify(s)),
            emoji: fc.oneof(fc.constantFrom('👍', '👩‍👩‍👧', '🇫🇷', 'a', '👍👍', '\u200d'), nastyString).map((s) => JSON.stringify(s)),
          },
          { requiredKeys: [] },
        )
        .map((r) => objectText(Object.entries(r) as Array<[string, string]>)),
    },
    { weight: 2, arbitrary: fc.array(fc.tuple(fc.oneof(fc.constantFrom('conversationId', 'content', 'messageId'), protoKey, nastyString), valueText), { maxLength: 3 }).map(objectText) },
    { weight: 1, arbitrary: valueText },
  );
  const frameText = fc.oneof(
    { weight: 6, arbitrary: fc
      .tuple(fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...TYPES).map((t) => JSON.stringify(t)) }, { weight: 1, arbitrary: valueText }), idText, payloadText, fc.option(fc.tuple(fc.oneof(protoKey, nastyString), valueText)))
      .map(([type, id, payload, extra]) => {
        const entries: Array<[string, string]> = [['type', type]];
        if (id !== undefined) entries.push(['id', id]);
        if (payload !== undefined) entries.push(['payload', payload]);
        if (extra) entries.push(extra);
        return objectText(entries);
      }) },
    { weight: 2, arbitrary: fc.string({ unit: nastyChar, maxLength: 80 }) },
    { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)) },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 5000 }).map((n) => `{"type":"ping","payload":${'['.repeat(n)}${']'.repeat(n)}}`) },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 8000 }).map((n) => `${'['.repeat(n)}${']'.repeat(n)}`) },
    { weight: 1, arbitrary: fc.constantFrom('', ' ', 'null', '{}', '[]', '{"type":null}', '{"type":"ping","__proto__":{"type":"message.send"}}', '{"__proto__":{"type":"ping"}}', '{"type":"ping","type":"nope"}', '{"type":"nope","type":"ping"}', '{"type":"constructor"}', '{"type":"__proto__"}', '{"type":"toString"}') },
  ).filter((t) => utf8Bytes(t) <= FRAME_LIMIT);

  function checkReply(text: string, reply: Frame): void {
    const fail = (why: string) => {
      throw new Error(`${why}\n  frame: ${short(text, 500)}\n  reply: ${short(JSON.stringify(reply), 500)}`);
    };
    const sent = parseJson(asSent(text));
    if (!sent.ok) {
      if (reply.type !== 'error' || reply.payload?.code !== 'INVALID_FRAME') fail('invalid JSON must get error INVALID_FRAME');
      if ('replyTo' in reply) fail('a frame without id got a replyTo');
      return;
    }
    const v = sent.value;
    const id = isPlainObject(v) ? v.id : undefined;
    if (reply.type === 'error') {
      const code = reply.payload?.code;
      if (!WS_CODES.has(code)) fail(`error code ${String(code)} is not expected for a frame`);
      if (code === 'INVALID_FRAME') fail('valid JSON must not get INVALID_FRAME (that is for text that is not JSON)');
      if (typeof reply.payload.message !== 'string') fail('error without message');
      if (code === 'VALIDATION_FAILED' && !Array.isArray(reply.payload.details)) fail('VALIDATION_FAILED without details');
    }
    if (id === undefined && 'replyTo' in reply) fail('a frame without id got a replyTo');
    if (typeof id === 'string' && id.length >= 1 && id.length <= 64 && reply.replyTo !== id) fail('replyTo is not the frame\u2019s id');
    if (reply.replyTo !== undefined && (typeof reply.replyTo !== 'string' || reply.replyTo.length === 0 || reply.replyTo.length > 64)) fail('replyTo is not a 1–64 character id');
    // What the frame must get, where SPEC decides.
    if (hasUnstorable(v)) {
      if (reply.type !== 'error' || reply.payload.code !== 'VALIDATION_FAILED') fail('NUL or a lone surrogate anywhere must get VALIDATION_FAILED');
      return;
    }
    if (!isPlainObject(v)) {
      if (reply.type !== 'error' || reply.payload.code !== 'VALIDATION_FAILED') fail('a non-object frame must get VALIDATION_FAILED');
      return;
    }
    const idOk = id === undefined || (typeof id === 'string' && id.length >= 1 && id.length <= 64);
    const keysOk = Object.keys(v).every((k) => k === 'type' || k === 'id' || k === 'payload');
    if (!TYPES.includes(v.type as string) || (typeof id === 'string' && id.length > 64) || (id !== undefined && typeof id !== 'string')) {
      if (reply.type !== 'error' || reply.payload.code !== 'VALIDATION_FAILED') fail('unknown type or bad id must get VALIDATION_FAILED');
      return;
    }
    if (!idOk || !keysOk) return;
    if (v.type === 'ping' && !own(v, 'payload') && reply.type !== 'pong') fail('ping must get pong');
    if (v.type === 'message.send' && isPlainObject(v.payload) && typeof v.payload.content === 'string' && Object.keys(v.payload).every((k) => k === 'conversationId' || k === 'content')) {
      const p = v.payload;
      const content = v.payload.content;
      if (p.conversationId === conv && contentOk(content)) {
        if (reply.type !== 'ack' || reply.payload?.message?.content !== wellFormed(content.trim())) fail('a valid message.send must be acked with the trimmed content');
      } else if (!contentOk(content)) {
        if (reply.type !== 'error' || reply.payload.code !== 'VALIDATION_FAILED') fail('bad content must get VALIDATION_FAILED');
      } else if (typeof p.conversationId === 'string' && p.conversationId !== conv && p.conversationId.length >= 1 && p.conversationId.length <= 128) {
        if (reply.type !== 'error' || reply.payload.code !== 'CONVERSATION_NOT_FOUND') fail('a conversation the caller is not in must get CONVERSATION_NOT_FOUND');
      }
    }
  }

  it('random frames each get one ack/pong/error; the socket stays open and a final ping gets its pong', { timeout: 120_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(frameText, guarded('ws frame', async (text) => {
        const reply = await roundTrip(text).catch((err: Error) => {
          throw new Error(`${err.message}\n  frame: ${short(text, 500)}`);
        });
        checkReply(text, reply);
      })),
      { numRuns: 1000 },
    );
    // Binary frames, and text that is not UTF-8.
    for (const b of [Buffer.from('{"type":"ping"}'), Buffer.from([0xff, 0xfe, 0x00])]) {
      const r = await roundTrip(b);
      expect(r).toMatchObject({ type: 'error', payload: { code: 'INVALID_FRAME' } });
    }
    expect(socket.ws.readyState).toBe(socket.ws.OPEN);
    expect(await socket.request('ping')).toEqual({ type: 'pong', replyTo: expect.stringMatching(/^req-/) });
  });

  it('a text frame that is not UTF-8 gets INVALID_FRAME or the protocol\u2019s close 1007, never a server failure', async () => {
    const { client } = await connect(ctx.stack.gateway.port, { token: alice.token });
    try {
      const answer = client.next((f) => REPLY.has(f.type), 3000).catch(() => undefined);
      client.ws.send(Buffer.concat([Buffer.from('{"type":"ping","id":"'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}')]), { binary: false });
      const frame = await answer;
      if (frame) expect(frame).toMatchObject({ type: 'error', payload: { code: 'INVALID_FRAME' } });
      else {
        const closed = await Promise.race([client.closed, new Promise<undefined>((r) => setTimeout(() => r(undefined), 3000))]);
        expect(closed?.code, 'neither an error frame nor a close').toBe(1007);
      }
    } finally {
      await client.close();
    }
  });

  it('message.send with any valid content is acked with the trimmed content', { timeout: 120_000 }, async () => {
    // SPEC 5 caps a frame at 16 KiB: 5000 code points of 4-byte UTF-8 do not fit, so such content goes over REST.
    const valid = contentArb.filter((c) => contentOk(c) && !unstorableText(c) && utf8Bytes(JSON.stringify({ type: 'message.send', id: 'x'.repeat(64), payload: { conversationId: conv, content: c } })) <= FRAME_LIMIT);
    await fc.assert(
      fc.asyncProperty(fc.tuple(valid, fc.option(fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/), { nil: undefined })), guarded('ws send', async ([content, id]: [string, string | undefined]) => {
        const frame = JSON.stringify({ type: 'message.send', ...(id === undefined ? {} : { id }), payload: { conversationId: conv, content } });
        const reply = await roundTrip(frame);
        if (reply.type !== 'ack' || reply.payload?.message?.content !== content.trim() || reply.payload.message.conversationId !== conv)
          throw new Error(`message.send not acked as sent\n  frame: ${short(frame)}\n  reply: ${short(JSON.stringify(reply))}`);
        if (id !== undefined && reply.replyTo !== id) throw new Error(`replyTo ${String(reply.replyTo)} is not ${id}`);
      })),
      { numRuns: 100 },
    );
    expect(await socket.request('ping')).toEqual({ type: 'pong', replyTo: expect.stringMatching(/^req-/) });
  });
});

// ---------------------------------------------------------------------------

describe('explicit hostile inputs', () => {
  const bodyRoutes = (): Array<[string, string, string]> => [
    ['POST', `/conversations/${conv}/messages`, alice.token],
    ['POST', `/conversations/${conv}/read`, bob.token],
    ['POST', '/blocks', carol.token],
    ['PUT', '/notifications/preferences', alice.token],
  ];

  it('__proto__, constructor and prototype keys are refused and pollute nothing', async () => {
    const send = (text: string) => raw('POST', `/conversations/${conv}/messages`, { token: alice.token, body: text });
    for (const text of [
      '{"__proto__": {"content": "x"}}',
      '{"content": "ok", "__proto__": {"admin": true}}',
      '{"constructor": {"prototype": {"content": "x"}}}',
      '{"content": "ok", "constructor": {"prototype": {"polluted": "yes"}}}',
      '{"__proto__": {"__proto__": {"polluted": "yes"}}, "content": "ok"}',
    ]) {
      const res = await send(text);
      check(res, ['VALIDATION_FAILED'], text);
    }
    for (const [method, path, token] of bodyRoutes()) {
      const text = '{"__proto__": {"polluted": "yes", "content": "x", "username": "x", "messageId": "x", "enabled": true, "mutedConversationIds": []}}';
      check(await raw(method, path, { token, body: text }), ['VALIDATION_FAILED'], `${method} ${path} ${text}`);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).content).toBeUndefined();
    expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(protoBefore);
  });

  it('GET /presence?userIds=__proto__,constructor answers an entry for each id asked', async () => {
    const res = await raw('GET', '/presence?userIds=__proto__,constructor,toString', { token: alice.token });
    check(res, [200], 'userIds=__proto__,constructor,toString');
    expect(Object.keys(res.body.data).sort()).toEqual(['__proto__', 'constructor', 'toString']);
    for (const v of Object.values(res.body.data)) expect(v).toEqual({ isOnline: false, lastSeenAt: null });
  });

  it('a NUL character in a string the services store or look up is a 4xx, never 500', async () => {
    const cases: Array<[string, string, string, string | undefined, Allowed]> = [
      ['POST', '/blocks', carol.token, '{"username":"\u0000"}', ['VALIDATION_FAILED']],
      ['POST', '/blocks', carol.token, '{"username":"abc\u0000def"}', ['VALIDATION_FAILED']],
      ['PUT', '/notifications/preferences', alice.token, '{"enabled":true,"mutedConversationIds":["\u0000"]}', ['VALIDATION_FAILED']],
      ['GET', '/presence?userIds=%00', alice.token, undefined, ['VALIDATION_FAILED']],
      ['GET', `/presence?userIds=a%00b,${bob.id}`, alice.token, undefined, ['VALIDATION_FAILED']],
      ['POST', `/conversations/${conv}/read`, bob.token, '{"messageId":"\u0000"}', ['VALIDATION_FAILED']],
      ['GET', `/conversations?cursor=%00`, alice.token, undefined, ['INVALID_CURSOR']],
      ['GET', '/conversations/%00', alice.token, undefined, ['CONVERSATION_NOT_FOUND']],
      ['GET', '/messages/%00', alice.token, undefined, ['MESSAGE_NOT_FOUND']],
      ['GET', '/conversations/with/%00', alice.token, undefined, ['USER_NOT_FOUND']],
      ['GET', '/blocks/status/%00', alice.token, undefined, ['USER_NOT_FOUND']],
      ['DELETE', '/blocks/%00', alice.token, undefined, ['USER_NOT_FOUND', 'NOT_BLOCKED']],
    ];
    const failures: string[] = [];
    for (const [method, path, token, body, allowed] of cases) {
      const res = await raw(method, path, { token, ...(body === undefined ? {} : { body }) });
      try {
        check(res, allowed, `${method} ${path} ${body ?? ''}`);
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
    expect(failures, failures.join('\n\n')).toEqual([]);
  });

  it('a cursor naming an impossible time (year 0, 31 February, offset -23:59) is 400 INVALID_CURSOR, never 500', async () => {
    const failures: string[] = [];
    for (const at of ['0000-01-01T00:00:00Z', '2026-02-31T00:00:00Z', '2026-02-30 12:00:00+00', '2025-02-29T00:00:00.000001Z', '2026-04-31T00:00:00Z', '2026-01-01T00:00:00-23:59']) {
      const cursor = b64url(JSON.stringify([at, '01a212ee-0fc6-7443-ae62-605e4f74e2e0']));
      for (const [path, token] of [['/conversations', alice.token], [`/conversations/${conv}/messages`, alice.token], ['/blocks', carol.token]] as const) {
        const res = await raw('GET', `${path}?cursor=${cursor}`, { token });
        try {
          check(res, ['INVALID_CURSOR'], `GET ${path}?cursor=${cursor} (${at})`);
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    }
    expect(failures, failures.join('\n\n')).toEqual([]);
  });

  it('content with a lone surrogate (the JSON escape \\ud800) is refused: it could not be stored exactly as sent', async () => {
    const text = '{"content":"half \\ud800 of a pair \\udfff"}';
    const res = await raw('POST', `/conversations/${conv}/messages`, { token: alice.token, body: text });
    check(res, ['VALIDATION_FAILED'], text);
    expect(res.body.error.details[0].path).toBe('content');
  });

  it('invalid UTF-8 in a JSON body is 400', async () => {
    for (const [method, path, token] of bodyRoutes()) {
      const res = await raw(method, path, { token, body: Buffer.from([0xff, 0xfe]) });
      check(res, ['VALIDATION_FAILED'], `${method} ${path} <ff fe>`);
    }
    // Inside a JSON string: not valid UTF-8, so not JSON (RFC 8259 8.1); the message must not be stored with U+FFFD in place of the bytes.
    const body = Buffer.concat([Buffer.from('{"content":"bad '), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from(' bytes"}')]);
    const res = await raw('POST', `/conversations/${conv}/messages`, { token: alice.token, body });
    check(res, ['VALIDATION_FAILED'], '{"content":"bad <ff fe c3> bytes"}');
  });

  it('a body that is not application/json is 415 UNSUPPORTED_MEDIA_TYPE', async () => {
    const types: Array<string | null> = ['text/plain', 'text/plain; charset=utf-8', 'multipart/form-data; boundary=xyz', 'application/x-www-form-urlencoded', 'application/xml', 'application/jsonp', null];
    for (const [method, path, token] of bodyRoutes()) {
      for (const contentType of types) {
        const res = await raw(method, path, { token, body: '{"content":"x","username":"x"}', contentType });
        check(res, ['UNSUPPORTED_MEDIA_TYPE'], `${method} ${path} content-type: ${String(contentType)}`);
      }
    }
    // The JSON media type is matched case-insensitively and with parameters.
    const ok = await raw('POST', `/conversations/${conv}/messages`, { token: alice.token, body: '{"content":"typed"}', contentType: 'Application/JSON; charset=UTF-8' });
    check(ok, [201], 'Application/JSON; charset=UTF-8');
  });

  it('a body over 64 KiB is 413 PAYLOAD_TOO_LARGE, with or without Content-Length', async () => {
    for (const [method, path, token] of bodyRoutes()) {
      const text = `{"content":"${'z'.repeat(BODY_LIMIT)}"}`;
      check(await raw(method, path, { token, body: text }), ['PAYLOAD_TOO_LARGE'], `${method} ${path} ${text.length} bytes`);
      check(await raw(method, path, { token, body: text, chunked: true }), ['PAYLOAD_TOO_LARGE'], `${method} ${path} ${text.length} bytes chunked`);
      const huge = `{"content":"${'z'.repeat(1024 * 1024)}"}`;
      check(await raw(method, path, { token, body: huge, chunked: true }), ['PAYLOAD_TOO_LARGE'], `${method} ${path} 1 MiB chunked`);
    }
  });

  it('10,000 levels of nesting is 400, not 500', async () => {
    const fieldOf: Record<string, string> = { messages: 'content', read: 'messageId', blocks: 'username', preferences: 'mutedConversationIds' };
    for (const [method, path, token] of bodyRoutes()) {
      const field = Object.entries(fieldOf).find(([k]) => path.includes(k))![1];
      for (const kind of ['array', 'object'] as const) {
        const deep = deepText(10_000, kind);
        for (const text of [deep, `{"${field}":${deep}}`]) {
          expect(utf8Bytes(text)).toBeLessThanOrEqual(BODY_LIMIT);
          check(await raw(method, path, { token, body: text }), ['VALIDATION_FAILED'], `${method} ${path} ${kind} nesting ${short(text, 60)}`);
        }
      }
    }
  });

  it('after all of it the server still answers GET /healthz 200', async () => {
    const res = await fetch(`${ctx.stack.baseUrl}/healthz`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    expect(res.status).toBe(200);
    expect((await ctx.api.get('/conversations', alice.token)).status).toBe(200);
  });
});
