import { isApiError, type Conversation } from '@chat/client';
import {
  isAtBottom,
  useBlock,
  useChatClient,
  useConversation,
  useKeepScrollPosition,
  useMarkRead,
  useMessageActions,
  useMessages,
  usePresence,
  useSendMessage,
  useTyping,
} from '@chat/client/react';
import { useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState, type KeyboardEvent } from 'react';
import { Avatar, OnlineDot } from './bits';
import { lastSeen, nameOf } from './format';
import { MAX_CONTENT, MessageRow, type RowActions } from './MessageRow';
import { navigate } from './router';
/** Older messages are asked for this close to the top (px). */
const LOAD_OLDER_PX = 150;

export function ConversationPane({ conversationId }: { conversationId: string }) {
  const { conversation, isLoading, error } = useConversation(conversationId);
  if (conversation) return <OpenConversation conversation={conversation} />;
  const missing = isApiError(error) && (error.status === 404 || error.status === 400);
  return (
    <section className="conversation">
      <header className="conversation-header" data-testid="conversation-header">
        <BackButton />
      </header>
      <div className="empty-pane">
        {isLoading ? <p className="muted">Loading…</p> : <p className={missing ? 'muted' : 'error'}>{missing ? 'No such conversation.' : 'Could not load this conversation.'}</p>}
      </div>
    </section>
  );
}

function BackButton() {
  return (
    <button type="button" className="button icon-button back" data-testid="back" aria-label="Back to conversations" onClick={() => navigate('/')}>
      ‹
    </button>
  );
}

/** True while the page is shown and has the focus: only then does reading mark read. */
function useWindowFocused(): boolean {
  const read = () => document.visibilityState === 'visible' && document.hasFocus();
  const [focused, setFocused] = useState(read);
  useEffect(() => {
    const update = () => setFocused(read());
    window.addEventListener('focus', update);
    window.addEventListener('blur', update);
    document.addEventListener('visibilitychange', update);
    update();
    return () => {
      window.removeEventListener('focus', update);
      window.removeEventListener('blur', update);
      document.removeEventListener('visibilitychange', update);
    };
  }, []);
  return focused;
}

function OpenConversation({ conversation }: { conversation: Conversation }) {
  const { id: conversationId, participant } = conversation;
  const presence = usePresence(participant.id, participant);
  const block = useBlock(participant.username, conversation.blockStatus);
  const status = block.status ?? conversation.blockStatus;
  const blocked = status.blockedByMe || status.blockedByThem;
  const online = presence.isOnline && !blocked;
  const { messages, fetchOlder, hasOlder, isFetchingOlder, isLoading, error } = useMessages(conversationId);
  const { send, retry, discard } = useSendMessage(conversationId);
  const changes = useMessageActions(conversationId);
  const me = useChatClient().userId;
  const rowActions = useMemo<RowActions>(
    () => ({ edit: changes.edit, remove: changes.remove, toggleReaction: changes.toggleReaction, retry, discard }),
    [changes, retry, discard],
  );
  const typing = useTyping(conversationId);
  const { markRead } = useMarkRead(conversationId);
  const focused = useWindowFocused();

  const list = useRef<HTMLDivElement>(null);
  const first = messages[0]?.key;
  const last = messages[messages.length - 1]?.key;
  const { stickToBottom } = useKeepScrollPosition(list, { first, last });
  const [atBottom, setAtBottom] = useState(true);

  // After each change of the list (the hook above has placed the scroll): where is the user, and is more needed above?
  useLayoutEffect(() => {
    const el = list.current;
    if (!el) return;
    setAtBottom(isAtBottom(el));
    if (el.scrollTop < LOAD_OLDER_PX && !isLoading) fetchOlder();
  }, [first, last, isLoading, fetchOlder]);

  const onScroll = useCallback(() => {
    const el = list.current;
    if (!el) return;
    setAtBottom(isAtBottom(el));
    if (el.scrollTop < LOAD_OLDER_PX) fetchOlder();
  }, [fetchOlder]);

  // The newest message is in view (and the page in front): mark read. Does nothing when nothing is unread.
  useEffect(() => {
    if (!isLoading && atBottom && focused) markRead();
  }, [isLoading, atBottom, focused, last, markRead]);

  const receiptKey = useMemo(() => {
    for (let i = messages.length - 1; i >= 0; i--) {
      const m = messages[i]!;
      if (m.mine && m.state === 'sent' && m.readAt) return m.key;
    }
    return undefined;
  }, [messages]);

  const name = nameOf(participant);
  return (
    <section className="conversation" aria-label={`Conversation with ${name}`}>
      <header className="conversation-header" data-testid="conversation-header">
        <BackButton />
        <span className="avatar-wrap">
          <Avatar user={participant} />
          <OnlineDot online={online} />
        </span>
        <span className="conversation-title">
          <span className="conversation-name">
            {name} {participant.displayName && <span className="muted">@{participant.username}</span>}
          </span>
          <span className="muted small">{blocked ? 'blocked' : online ? 'online' : lastSeen(presence.lastSeenAt)}</span>
        </span>
        <button
          type="button"
          className={`button ${status.blockedByMe ? 'subtle' : 'danger-subtle'}`}
          data-testid="block-toggle"
          disabled={block.isPending}
          onClick={() => void (status.blockedByMe ? block.unblock() : block.block()).catch(() => undefined)}
        >
          {status.blockedByMe ? 'Unblock' : 'Block'}
        </button>
      </header>
      {blocked && (
        <p className="blocked-notice" data-testid="blocked-notice" role="status">
          {status.blockedByMe ? `You blocked ${name}. Neither of you can send messages until you unblock.` : `You can't message ${name} right now.`}
        </p>
      )}
      <div className="message-list" data-testid="message-list" ref={list} onScroll={onScroll}>
        {isFetchingOlder && <p className="muted small center">Loading older messages…</p>}
        {!isLoading && !hasOlder && messages.length > 0 && <p className="muted small center">This is the start of your conversation with {name}.</p>}
        {isLoading && <p className="muted center">Loading messages…</p>}
        {error && !isLoading && <p className="error center">Could not load the messages.</p>}
        {!isLoading && !error && messages.length === 0 && <p className="muted center">No messages yet. Say hello.</p>}
        <ol className="messages">
          {messages.map((m) => (
            <MessageRow key={m.key} message={m} receipt={m.key === receiptKey} meId={me} otherName={name} blocked={blocked} actions={rowActions} />
          ))}
        </ol>
      </div>
      {!atBottom && messages.length > 0 && (
        <button
          type="button"
          className="button jump-to-newest"
          aria-label="Jump to the newest message"
          onClick={() => {
            const el = list.current;
            if (el) el.scrollTop = el.scrollHeight;
          }}
        >
          ↓
        </button>
      )}
      <div className="typing-line" aria-live="polite">
        {typing.isOtherTyping && !blocked && (
          <span data-testid="typing-indicator">
            {name} is typing<span className="dots">…</span>
          </span>
        )}
      </div>
      <Composer
        disabled={status.blockedByMe}
        onSend={(text) => {
          const sent = send(text);
          typing.stopTyping();
          if (sent) stickToBottom();
          return Boolean(sent);
        }}
        onTyping={typing.notifyTyping}
        onStopTyping={typing.stopTyping}
      />
    </section>
  );
}

function Composer({
  disabled,
  onSend,
  onTyping,
  onStopTyping,
}: {
  disabled: boolean;
  onSend: (text: string) => boolean;
  onTyping: () => void;
  onStopTyping: () => void;
}) {
  const [text, setText] = useState('');
  const input = useRef<HTMLTextAreaElement>(null);
  const length = [...text.trim()].length;
  const tooLong = length > MAX_CONTENT;

  const submit = () => {
    if (disabled || !text.trim() || tooLong) return;
    if (onSend(text)) setText('');
    input.current?.focus();
  };
  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    // Enter sends, Shift+Enter is a new line; never while an input method is composing.
    if (e.key === 'Enter' && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      submit();
    }
  };

  return (
    <form
      className="composer"
      onSubmit={(e) => {
        e.preventDefault();
        submit();
      }}
    >
      <textarea
        ref={input}
        data-testid="composer-input"
        aria-label="Message"
        placeholder={disabled ? 'Unblock to send messages' : 'Write a message'}
        rows={1}
        value={text}
        disabled={disabled}
        onChange={(e) => {
          setText(e.target.value);
          if (e.target.value.trim()) onTyping();
          else onStopTyping();
        }}
        onKeyDown={onKeyDown}
        onBlur={onStopTyping}
        enterKeyHint="send"
      />
      {length > MAX_CONTENT - 500 && (
        <span className={`counter small ${tooLong ? 'error' : 'muted'}`} aria-live="polite">
          {length}/{MAX_CONTENT}
        </span>
      )}
      <button type="submit" className="button primary" data-testid="composer-send" disabled={disabled || !text.trim() || tooLong}>
        Send
      </button>
    </form>
  );
}
