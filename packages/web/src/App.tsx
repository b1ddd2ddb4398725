import { ChatProvider, useChatConnection, useUnreadCount } from '@chat/client/react';
import { useEffect } from 'react';
import { ConnectionBanner } from './ConnectionBanner';
import { ConversationList } from './ConversationList';
import { ConversationPane } from './ConversationPane';
import { useRoute } from './router';
import { signOut, useAuth, type Session } from './session';
import { SignIn } from './SignIn';

export function App() {
  const auth = useAuth();
  if (auth.status === 'signed-out') return <SignIn {...(auth.notice ? { notice: auth.notice } : {})} />;
  return (
    <ChatProvider key={auth.id} client={auth.client}>
      <Chat session={auth.session} />
    </ChatProvider>
  );
}

/** The token was refused for good (and a fresh one too): back to sign-in. Apart, so events re-render only this. */
function SessionGuard() {
  const { state } = useChatConnection();
  useEffect(() => {
    if (state === 'unauthorized') signOut('Your session ended. Sign in again.');
  }, [state]);
  return null;
}

function Chat({ session }: { session: Session }) {
  const route = useRoute();
  const unread = useUnreadCount().data?.total ?? 0;

  useEffect(() => {
    document.title = unread > 0 ? `(${unread}) Chat` : 'Chat';
  }, [unread]);

  const open = route.name === 'conversation' ? route.conversationId : undefined;
  return (
    <div className="app" data-view={open ? 'pane' : 'list'}>
      <header className="topbar">
        <span className="brand">Chat</span>
        <span className={`total-unread${unread > 0 ? ' has-unread' : ''}`} data-testid="total-unread" aria-label={`${unread} unread`} title={`${unread} unread`}>
          {unread}
        </span>
        <span className="spacer" />
        <span className="me" data-testid="me">
          {session.displayName ? (
            <>
              {session.displayName} <span className="muted">@{session.username}</span>
            </>
          ) : (
            <>@{session.username}</>
          )}
        </span>
        <button type="button" className="button subtle" data-testid="signout" onClick={() => signOut()}>
          Sign out
        </button>
      </header>
      <SessionGuard />
      <ConnectionBanner />
      <div className="main">
        <aside className="sidebar" aria-label="Conversations">
          <ConversationList openId={open} />
        </aside>
        <main className="pane">
          {open ? (
            <ConversationPane key={open} conversationId={open} />
          ) : (
            <div className="empty-pane">
              <p>Pick a conversation, or start one with a username.</p>
            </div>
          )}
        </main>
      </div>
    </div>
  );
}
