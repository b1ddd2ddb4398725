import { describe, expect, it } from 'vitest';
import { ChatError } from '@chat/contracts';
import { decodeCursor, encodeCursor, toPage, type Cursor } from '../src/cursor';

const ID = '0190f5a2-7b3c-7d4e-8f01-23456789abcd';

function expectInvalid(raw: string) {
  let thrown: unknown;
  try {
    decodeCursor(raw);
  } catch (err) {
    thrown = err;
  }
  expect(thrown, raw).toBeInstanceOf(ChatError);
  expect((thrown as ChatError).code).toBe('INVALID_CURSOR');
}

describe('encodeCursor / decodeCursor', () => {
  it('round-trips PostgreSQL timestamps with microseconds, unchanged', () => {
    for (const at of ['2026-01-02 03:04:05.123456+00', '2026-01-02T03:04:05Z', '2026-12-31 23:59:59.9+05:30', '2026-06-01 00:00:00-07']) {
      const c: Cursor = { at, id: ID };
      expect(decodeCursor(encodeCursor(c))).toEqual(c);
    }
  });

  it('is opaque and URL-safe: base64url only', () => {
    const raw = encodeCursor({ at: '2026-01-02 03:04:05.123456+00', id: ID });
    expect(raw).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(raw).not.toContain(ID);
  });

  it('garbage of every kind is a ChatError INVALID_CURSOR', () => {
    const enc = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const cases = [
      '',
      'not a cursor!',
      '%%%',
      'a'.repeat(513),
      Buffer.from('not json').toString('base64url'),
      enc({ at: '2026-01-02 03:04:05+00', id: ID }),
      enc(['2026-01-02 03:04:05+00']),
      enc(['2026-01-02 03:04:05+00', ID, 'extra']),
      enc([12345, ID]),
      enc(['yesterday', ID]),
      enc(['2026-01-02 03:04:05+00', 'not-a-uuid']),
      enc(['2026-13-45 99:99:99+00', ID]),
      enc(["2026-01-02 03:04:05+00'; DROP TABLE messages; --", ID]),
    ];
    for (const raw of cases) expectInvalid(raw);
  });
});

describe('toPage', () => {
  const rows = [1, 2, 3, 4].map((n) => ({ n, at: `2026-01-0${n} 00:00:00+00`, id: ID }));
  const map = (r: (typeof rows)[number]) => r.n;
  const cursorOf = (r: (typeof rows)[number]) => ({ at: r.at, id: r.id });

  it('with limit+1 rows: drops the extra row, hasMore, and the cursor points at the last row kept', () => {
    const page = toPage(rows, 3, map, cursorOf);
    expect(page.items).toEqual([1, 2, 3]);
    expect(page.meta.hasMore).toBe(true);
    expect(decodeCursor(page.meta.nextCursor!)).toEqual({ at: rows[2]!.at, id: ID });
  });

  it('with at most limit rows: all kept, no more, nextCursor null', () => {
    expect(toPage(rows.slice(0, 3), 3, map, cursorOf)).toEqual({ items: [1, 2, 3], meta: { nextCursor: null, hasMore: false } });
    expect(toPage([], 20, map, cursorOf)).toEqual({ items: [], meta: { nextCursor: null, hasMore: false } });
  });
});
