import { isApiError, type Conversation } from '@chat/client';
import { useChatClient, useConversations, useOpenConversation } from '@chat/client/react';
import { useEffect, useRef, useState, type FormEvent } from 'react';
import { Avatar, OnlineDot } from './bits';
import { errorText, nameOf, shortTime } from './format';
import { conversationPath, navigate, onLinkClick } from './router';
import { SearchBox, SearchResults } from './Search';

export function ConversationList({ openId }: { openId: string | undefined }) {
  const [query, setQuery] = useState('');
  const searching = query.trim() !== '';
  return (
    <div className="conversations">
      <NewChat />
      <SearchBox value={query} onChange={setQuery} />
      {searching ? (
        <div className="conversation-scroll">
          <SearchResults query={query} openId={openId} />
        </div>
      ) : (
        <Conversations openId={openId} />
      )}
    </div>
  );
}

function Conversations({ openId }: { openId: string | undefined }) {
  const { conversations, fetchNextPage, hasNextPage, isFetchingNextPage, isPending, isError, refetch } = useConversations();
  const scroller = useRef<HTMLDivElement>(null);
  const sentinel = useRef<HTMLDivElement>(null);

  // Infinite scroll: the next page when the end of the list comes near.
  useEffect(() => {
    const target = sentinel.current;
    if (!target || !hasNextPage) return;
    const io = new IntersectionObserver(
      (entries) => {
        if (entries.some((e) => e.isIntersecting) && !isFetchingNextPage) void fetchNextPage();
      },
      { root: scroller.current, rootMargin: '0px 0px 300px 0px' },
    );
    io.observe(target);
    return () => io.disconnect();
  }, [hasNextPage, isFetchingNextPage, fetchNextPage, conversations.length]);

  return (
    <div className="conversation-scroll" ref={scroller}>
      {isPending && <p className="muted pad">Loading conversations…</p>}
      {isError && (
        <p className="error pad">
          Could not load the conversations.{' '}
          <button type="button" className="button link" onClick={() => void refetch()}>
            Retry
          </button>
        </p>
      )}
      {!isPending && !isError && conversations.length === 0 && <p className="muted pad">No conversations yet. Start one above.</p>}
      <ul className="conversation-list">
        {conversations.map((c) => (
          <ConversationItem key={c.id} conversation={c} active={c.id === openId} />
        ))}
      </ul>
      {hasNextPage && (
        <div ref={sentinel} className="muted pad small">
          {isFetchingNextPage ? 'Loading…' : ''}
        </div>
      )}
    </div>
  );
}

function ConversationItem({ conversation: c, active }: { conversation: Conversation; active: boolean }) {
  const client = useChatClient();
  const p = c.participant;
  const blocked = c.blockStatus.blockedByMe || c.blockStatus.blockedByThem;
  const online = p.isOnline && !blocked;
  const last = c.lastMessage;
  const path = conversationPath(c.id);
  return (
    <li>
      <a
        href={path}
        onClick={onLinkClick(path)}
        className={`conversation-item${active ? ' active' : ''}${c.unreadCount > 0 ? ' unread' : ''}`}
        aria-current={active ? 'page' : undefined}
        data-testid="conversation-item"
        data-username={p.username}
        data-conversation-id={c.id}
      >
        <span className="avatar-wrap">
          <Avatar user={p} />
          <OnlineDot online={online} />
        </span>
        <span className="conversation-text">
          <span className="conversation-top">
            <span className="conversation-name">{nameOf(p)}</span>
            <time className="conversation-time muted small" dateTime={c.updatedAt}>
              {shortTime(last?.createdAt ?? c.updatedAt)}
            </time>
          </span>
          <span className="conversation-bottom">
            <span className="last-message" data-testid="last-message">
              {last?.deletedAt ? (
                <span className="deleted-text">{last.senderId === client.userId ? 'You deleted a message' : 'Message deleted'}</span>
              ) : last ? (
                `${last.senderId === client.userId ? 'You: ' : ''}${last.content}`
              ) : (
                ''
              )}
            </span>
            {c.unreadCount > 0 && (
              <span className="unread-badge" data-testid="unread-badge" aria-label={`${c.unreadCount} unread`}>
                {c.unreadCount}
              </span>
            )}
          </span>
        </span>
      </a>
    </li>
  );
}

function NewChat() {
  const [username, setUsername] = useState('');
  const { open, isPending, reset } = useOpenConversation();
  const [shown, setShown] = useState<{ code?: string; text: string } | null>(null);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const name = username.trim().replace(/^@/, '');
    if (!name) return;
    setShown(null);
    try {
      const conversation = await open(name);
      setUsername('');
      reset();
      navigate(conversationPath(conversation.id));
    } catch (err) {
      const code = isApiError(err) ? err.code : undefined;
      setShown({ ...(code ? { code } : {}), text: errorText(code, 'Could not open the conversation; try again.') });
    }
  };

  return (
    <form className="new-chat" onSubmit={(e) => void submit(e)}>
      <input
        type="text"
        data-testid="new-chat-input"
        aria-label="Username to chat with"
        placeholder="Chat with a username"
        value={username}
        onChange={(e) => {
          setUsername(e.target.value);
          setShown(null);
        }}
        autoCapitalize="none"
        autoCorrect="off"
        spellCheck={false}
        enterKeyHint="go"
      />
      <button type="submit" className="button primary" data-testid="new-chat-submit" disabled={isPending || !username.trim()}>
        Open
      </button>
      {shown && (
        <p className="error new-chat-error" role="alert" data-testid="new-chat-error" data-error-code={shown.code}>
          {shown.text}
          {shown.code && <span className="code"> ({shown.code})</span>}
        </p>
      )}
    </form>
  );
}
