import { isApiError, type SearchResult } from '@chat/client';
import { useChatClient, useSearchMessages } from '@chat/client/react';
import { useEffect, useState } from 'react';
import { Avatar } from './bits';
import { errorText, fullTime, highlightWords, nameOf, shortTime, snippetParts } from './format';
import { conversationPath, onLinkClick } from './router';

/** Typing pauses this long before the server is asked: a search per word, not per keystroke. */
const SEARCH_DELAY_MS = 250;

function useDebounced(value: string, ms: number): string {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    // Clearing the box is shown at once; only asking the server waits.
    if (value.trim() === '') return setSettled(value);
    const timer = setTimeout(() => setSettled(value), ms);
    return () => clearTimeout(timer);
  }, [value, ms]);
  return settled;
}

export function SearchBox({ value, onChange }: { value: string; onChange: (q: string) => void }) {
  return (
    <div className="search-box" role="search">
      <input
        type="search"
        data-testid="search-input"
        aria-label="Search messages"
        placeholder="Search messages"
        value={value}
        maxLength={200}
        onChange={(e) => onChange(e.target.value)}
        onKeyDown={(e) => {
          if (e.key === 'Escape') onChange('');
        }}
        autoCapitalize="none"
        spellCheck={false}
        enterKeyHint="search"
      />
    </div>
  );
}

/** The results of a search, newest first, in place of the conversation list while the box holds a query. */
export function SearchResults({ query, openId }: { query: string; openId: string | undefined }) {
  const settled = useDebounced(query, SEARCH_DELAY_MS);
  const { results, isFetching, isPending, isPlaceholderData, error, hasNextPage, fetchNextPage, isFetchingNextPage } = useSearchMessages(settled);
  const waiting = settled.trim() !== query.trim() || (isFetching && !isFetchingNextPage);
  const code = isApiError(error) ? error.code : undefined;

  let status: string;
  if (error) status = code === 'VALIDATION_FAILED' ? 'Search for 1 to 200 characters.' : `Search failed: ${errorText(code, 'try again.')}`;
  else if (isPending || (waiting && results.length === 0)) status = 'Searching…';
  else if (results.length === 0) status = `No messages match “${settled.trim()}”.`;
  else status = `${results.length}${hasNextPage ? '+' : ''} ${results.length === 1 ? 'message' : 'messages'}`;

  return (
    <div className="search-results-wrap" aria-busy={waiting}>
      <p className={`search-status small ${error ? 'error' : 'muted'}`} role="status" data-testid="search-status" data-error-code={code}>
        {status}
        {code && code !== 'VALIDATION_FAILED' && <span className="code"> ({code})</span>}
      </p>
      <ul className={`search-results${isPlaceholderData ? ' stale' : ''}`} aria-label="Search results" data-testid="search-results">
        {results.map((hit) => (
          <SearchHit key={hit.message.id} hit={hit} query={settled} active={hit.conversation.id === openId} />
        ))}
      </ul>
      {hasNextPage && !error && (
        <div className="pad">
          <button type="button" className="button small" data-testid="search-more" disabled={isFetchingNextPage} onClick={() => void fetchNextPage()}>
            {isFetchingNextPage ? 'Loading…' : 'More results'}
          </button>
        </div>
      )}
    </div>
  );
}

function SearchHit({ hit, query, active }: { hit: SearchResult; query: string; active: boolean }) {
  const client = useChatClient();
  const { message, conversation } = hit;
  const who = nameOf(conversation.participant);
  const path = conversationPath(conversation.id);
  const parts = snippetParts(highlightWords(message.content, query));
  return (
    <li>
      <a
        href={path}
        onClick={onLinkClick(path)}
        className={`conversation-item search-result${active ? ' active' : ''}`}
        data-testid="search-result"
        data-message-id={message.id}
        data-conversation-id={conversation.id}
        data-username={conversation.participant.username}
        aria-label={`Message in the conversation with ${who}, ${fullTime(message.createdAt)}`}
      >
        <span className="avatar-wrap">
          <Avatar user={conversation.participant} />
        </span>
        <span className="conversation-text">
          <span className="conversation-top">
            <span className="conversation-name">{who}</span>
            <time className="conversation-time muted small" dateTime={message.createdAt} title={fullTime(message.createdAt)}>
              {shortTime(message.createdAt)}
            </time>
          </span>
          <span className="search-snippet" data-testid="search-snippet">
            {message.senderId === client.userId && <span className="muted">You: </span>}
            {parts.map((p, i) => (p.match ? <mark key={i}>{p.text}</mark> : <span key={i}>{p.text}</span>))}
          </span>
        </span>
      </a>
    </li>
  );
}
