import type { Conversation } from '@chat/client';

type Person = Pick<Conversation['participant'], 'displayName' | 'username'>;

export const nameOf = (p: Person): string => p.displayName?.trim() || p.username;

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

const sameDay = (a: Date, b: Date) => a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();

/** 14:05 today, else Mar 3. */
export function shortTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return sameDay(d, new Date()) ? timeFmt.format(d) : dayFmt.format(d);
}

export const fullTime = (iso: string): string => {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : fullFmt.format(d);
};

export const clockTime = (iso: string): string => {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : timeFmt.format(d);
};

const rel = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

/** "last seen 5 minutes ago". */
export function lastSeen(iso: string | null): string {
  if (!iso) return 'offline';
  const seconds = (Date.parse(iso) - Date.now()) / 1000;
  if (!Number.isFinite(seconds)) return 'offline';
  const abs = Math.abs(seconds);
  if (abs < 60) return 'last seen just now';
  if (abs < 3600) return `last seen ${rel.format(Math.round(seconds / 60), 'minute')}`;
  if (abs < 86_400) return `last seen ${rel.format(Math.round(seconds / 3600), 'hour')}`;
  return `last seen ${dayFmt.format(new Date(iso))}`;
}

/** Friendly words for the API's error codes the UI meets. */
export function errorText(code: string | undefined, fallback = 'Something went wrong.'): string {
  switch (code) {
    case 'USER_NOT_FOUND':
      return 'No user with that name.';
    case 'CANNOT_CHAT_WITH_SELF':
      return "You can't start a chat with yourself.";
    case 'VALIDATION_FAILED':
      return 'That is not a valid username.';
    case 'RATE_LIMITED':
      return 'Too many at once; try again in a minute.';
    case 'BLOCKED':
      return 'Not sent: one of you blocked the other.';
    case 'ACK_TIMEOUT':
      return 'Not sent: no answer from the server.';
    case 'IDEMPOTENCY_CONFLICT':
      return 'Not sent: conflicts with an earlier message.';
    case 'PAYLOAD_TOO_LARGE':
      return 'Not sent: too long.';
    case 'SERVICE_UNAVAILABLE':
      return 'The server is busy; try again.';
    default:
      return fallback;
  }
}

/** Friendly words for why an edit, a delete or a reaction was refused (SPEC 10's codes first). */
export function changeErrorText(code: string | undefined): string {
  switch (code) {
    case 'EDIT_WINDOW_PASSED':
      return 'Too late to edit: this message can no longer be changed.';
    case 'MESSAGE_DELETED':
      return 'This message was deleted.';
    case 'NOT_SENDER':
      return 'Only the sender can change this message.';
    case 'TOO_MANY_REACTIONS':
      return 'You can add at most 10 different reactions to a message.';
    case 'MESSAGE_NOT_FOUND':
    case 'NOT_FOUND':
      return 'This message is no longer there.';
    case 'BLOCKED':
      return 'Not possible while one of you blocks the other.';
    case 'VALIDATION_FAILED':
      return 'That is not a valid message.';
    case undefined:
      return 'No answer from the server; try again.';
    default:
      return errorText(code, 'Something went wrong; try again.');
  }
}

/** A piece of text, and whether it matches a searched word. */
export interface TextPart {
  text: string;
  match: boolean;
}

const WORD_CHAR = /[\p{L}\p{N}]/u;
/** Case and accents folded away, as the search compares (Café → cafe). */
const fold = (ch: string) => ch.normalize('NFD').replace(/\p{M}+/gu, '').toLowerCase();

/**
 * `text` cut into parts where each searched word matches as a word or the
 * start of one, ignoring case and accents, as the server's search does: what
 * the results list highlights. Plain strings, rendered as text.
 */
export function highlightWords(text: string, query: string): TextPart[] {
  const words = query.split(/\s+/).map((w) => [...w].map(fold).join('')).filter(Boolean);
  if (words.length === 0 || text === '') return [{ text, match: false }];
  // The folded text, and for each of its code units the code unit of `text` it came from.
  let folded = '';
  const origin: number[] = [];
  for (let i = 0; i < text.length; ) {
    const ch = String.fromCodePoint(text.codePointAt(i)!);
    const f = fold(ch);
    for (let k = 0; k < f.length; k++) origin.push(i);
    folded += f;
    i += ch.length;
  }
  const marked = new Array<boolean>(text.length).fill(false);
  for (const word of words)
    for (let at = folded.indexOf(word); at >= 0; at = folded.indexOf(word, at + 1)) {
      if (at > 0 && WORD_CHAR.test(folded[at - 1]!)) continue; // inside a word, not at its start
      const start = origin[at]!;
      const lastOrigin = origin[at + word.length - 1]!;
      const end = lastOrigin + String.fromCodePoint(text.codePointAt(lastOrigin)!).length;
      for (let i = start; i < end; i++) marked[i] = true;
    }
  const parts: TextPart[] = [];
  for (let i = 0; i < text.length; i++) {
    const last = parts[parts.length - 1];
    if (last && last.match === marked[i]) last.text += text[i];
    else parts.push({ text: text[i]!, match: marked[i]! });
  }
  return parts;
}

/** A long text cut to start a little before its first match, so the match shows in a one-line snippet. */
export function snippetParts(parts: TextPart[], lead = 40): TextPart[] {
  let offset = 0;
  for (const p of parts) {
    if (p.match) break;
    offset += p.text.length;
  }
  if (offset === parts.reduce((n, p) => n + p.text.length, 0) || offset <= lead) return parts;
  let skip = offset - lead;
  const out: TextPart[] = [];
  for (const p of parts) {
    if (skip >= p.text.length) {
      skip -= p.text.length;
      continue;
    }
    // Cut on a whole code point (an emoji is two code units).
    let cut = skip;
    if (cut > 0 && /[\uDC00-\uDFFF]/.test(p.text[cut]!)) cut++;
    out.push({ text: (out.length === 0 ? '…' : '') + p.text.slice(cut), match: p.match });
    skip = 0;
  }
  return out;
}
