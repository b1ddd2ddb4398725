import { useChatConnection } from '@chat/client/react';
import { useEffect, useState } from 'react';

const RESYNC_NOTICE_MS = 8000;

/**
 * Shown whenever the connection is not open once it has been: "Reconnecting…"
 * or "Offline". After a resync (too long away to replay), a short notice that
 * the view was reloaded.
 */
export function ConnectionBanner() {
  const { state, resyncedAt } = useChatConnection();
  const [hasOpened, setHasOpened] = useState(state === 'open');
  const [showResync, setShowResync] = useState(false);

  useEffect(() => {
    if (state === 'open') setHasOpened(true);
  }, [state]);
  useEffect(() => {
    if (resyncedAt === null) return;
    setShowResync(true);
    const timer = setTimeout(() => setShowResync(false), Math.max(0, resyncedAt + RESYNC_NOTICE_MS - Date.now()));
    return () => clearTimeout(timer);
  }, [resyncedAt]);

  const down = hasOpened && state !== 'open' && state !== 'idle' && state !== 'closed';
  return (
    <>
      {down && (
        <div className={`banner ${state === 'offline' ? 'offline' : 'reconnecting'}`} role="status" data-testid="connection-banner">
          {state === 'offline' ? 'Offline' : 'Reconnecting…'}
        </div>
      )}
      {showResync && (
        <div className="banner notice" role="status" data-testid="resync-notice">
          Reloaded after being away
        </div>
      )}
    </>
  );
}
