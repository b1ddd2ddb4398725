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
  if (Number.isNaN(Date.parse(toIsoLike(at)))) throw invalid();
  return { at, id };
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

/** PostgreSQL's "2026-01-02 03:04:05.123456+00" as something Date.parse accepts. */
function toIsoLike(pgText: string): string {
  return pgText.replace(' ', 'T').replace(/([+-]\d{2})$/, '$1:00').replace(/(\.\d{3})\d+/, '$1');
}
