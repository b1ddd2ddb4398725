import type { Conversation } from '@chat/client';
import { nameOf } from './format';

type Person = Pick<Conversation['participant'], 'displayName' | 'username' | 'avatarUrl'>;

/** The picture when it is an https URL (the CSP allows those), else the initial. */
export function Avatar({ user, size = 'md' }: { user: Person; size?: 'md' | 'sm' }) {
  const url = user.avatarUrl && /^https:\/\//i.test(user.avatarUrl) ? user.avatarUrl : null;
  return url ? (
    <img className={`avatar ${size}`} src={url} alt="" referrerPolicy="no-referrer" />
  ) : (
    <span className={`avatar ${size}`} aria-hidden="true">
      {nameOf(user).charAt(0).toUpperCase()}
    </span>
  );
}

export function OnlineDot({ online }: { online: boolean }) {
  return <span className={`online-dot${online ? ' online' : ''}`} data-testid="online-dot" data-online={String(online)} title={online ? 'Online' : 'Offline'} />;
}

/** A clock: the message is on its way. */
export function ClockIcon() {
  return (
    <svg className="icon clock" viewBox="0 0 16 16" width="12" height="12" aria-label="Sending" role="img">
      <circle cx="8" cy="8" r="6.5" fill="none" stroke="currentColor" strokeWidth="1.5" />
      <path d="M8 4.5V8l2.5 1.5" fill="none" stroke="currentColor" strokeWidth="1.5" strokeLinecap="round" />
    </svg>
  );
}
