import { ChatError } from '@chat/contracts';
import { isUuid } from './ids';

/**
 * Keyset cursors: (timestamp, id) of the last item of a page, opaque to clients.
 * The timestamp travels as PostgreSQL's own text with microseconds, so the
 * next page starts exactly after the last row, never a rounded neighbour.
 */
export interface Cursor {
  at: string;
  id: string;
}

const TIMESTAMP = /^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}(:?\d{2})?)$/;

export function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify([c.at, c.id]), 'utf8').toString('base64url');
}

export function decodeCursor(raw: string): Cursor {
  const invalid = () => new ChatError('INVALID_CURSOR', 'cursor is not one this API returned');
  if (!/^[A-Za-z0-9_-]{1,512}$/.test(raw)) throw invalid();
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'));
  } catch {
    throw invalid();
  }
  if (!Array.isArray(value) || value.length !== 2) throw invalid();
  const [at, id] = value as unknown[];
  if (typeof at !== 'string' || typeof id !== 'string' || !TIMESTAMP.test(at) || !isUuid(id)) throw invalid();
  if (!isRealInstant(at)) throw invalid();
  return { at, id };
}

/**
 * The regex admits shapes, not dates: `2026-02-31` or an offset of `-23:59`
 * parse in JavaScript but PostgreSQL refuses them. Every field is checked,
 * so a forged cursor is INVALID_CURSOR, never a database error.
 */
function isRealInstant(at: string): boolean {
  const m = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:Z|[+-](\d{2}):?(\d{2})?)$/.exec(at);
  if (!m) return false;
  const [y, mo, d, h, mi, s, oh, om] = m.slice(1).map((x) => Number(x ?? 0)) as [number, number, number, number, number, number, number, number];
  if (y < 1 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 59 || oh > 15 || om > 59) return false;
  const date = new Date(Date.UTC(y, mo - 1, d));
  date.setUTCFullYear(y); // Date.UTC maps years 0-99 to 1900-1999
  return date.getUTCMonth() === mo - 1 && date.getUTCDate() === d;
}

/** Fetch limit+1 rows; this trims the extra one and builds the page meta. */
export function toPage<R, T>(rows: R[], limit: number, map: (r: R) => T, cursorOf: (r: R) => Cursor) {
  const hasMore = rows.length > limit;
  const pageRows = hasMore ? rows.slice(0, limit) : rows;
  const last = pageRows[pageRows.length - 1];
  return {
    items: pageRows.map(map),
    meta: { nextCursor: hasMore && last !== undefined ? encodeCursor(cursorOf(last)) : null, hasMore },
  };
}
