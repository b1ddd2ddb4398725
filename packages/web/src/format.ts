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
