import { isApiError, type Message, type Reaction } from '@chat/client';
import type { MessageItem } from '@chat/client/react';
import { useEffect, useRef, useState, type KeyboardEvent } from 'react';
import { ClockIcon } from './bits';
import { changeErrorText, clockTime, errorText, fullTime } from './format';

/** SPEC 4: content is 1–5000 code points after trimming; an edit keeps to the same rule. */
export const MAX_CONTENT = 5000;
/** The picker's emoji: the few people reach for most; a reaction already on the message is one click too. */
export const QUICK_REACTIONS = ['👍', '❤️', '😂', '😮', '😢', '🙏'] as const;

/** What a row can ask of the conversation: the changes of SPEC 10 (see useMessageActions) and the send queue's. */
export interface RowActions {
  edit(messageId: string, content: string): Promise<Message>;
  remove(messageId: string): Promise<Message>;
  toggleReaction(message: { id: string | null; reactions: Reaction[] }, emoji: string): Promise<Message>;
  retry(clientMessageId: string): void;
  discard(clientMessageId: string): void;
}

type Mode = 'idle' | 'editing' | 'confirm-delete' | 'picking';

export function MessageRow({
  message: m,
  receipt,
  meId,
  otherName,
  blocked,
  actions,
}: {
  message: MessageItem;
  receipt: boolean;
  /** The signed-in user's id: which reactions are theirs. */
  meId: string | undefined;
  /** The other participant's name, for who reacted. */
  otherName: string;
  /** Either user blocks the other: no edits or new reactions (the server would refuse them); deleting stays. */
  blocked: boolean;
  actions: RowActions;
}) {
  const [mode, setMode] = useState<Mode>('idle');
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<{ code?: string; text: string } | null>(null);
  const deleted = m.deletedAt !== null;
  const stored = m.state === 'sent' && m.id !== null;
  const changeable = stored && !deleted;

  // Deleted meanwhile (by the other tab, or for good): nothing is left to edit or react to.
  useEffect(() => {
    if (deleted) setMode('idle');
  }, [deleted]);

  /** Runs one change; a refusal is shown under the message in plain words, with its code. */
  const run = async (change: () => Promise<unknown>, after?: Mode): Promise<boolean> => {
    setBusy(true);
    setProblem(null);
    try {
      await change();
      if (after) setMode(after);
      return true;
    } catch (err) {
      const code = isApiError(err) ? err.code : undefined;
      setProblem({ ...(code ? { code } : {}), text: changeErrorText(code) });
      // Refusals a retry cannot change close the editor; anything else leaves it open to try again.
      if (code === 'EDIT_WINDOW_PASSED' || code === 'MESSAGE_DELETED' || code === 'NOT_SENDER' || code === 'MESSAGE_NOT_FOUND') setMode('idle');
      return false;
    } finally {
      setBusy(false);
    }
  };
  const react = (emoji: string) => void run(() => actions.toggleReaction(m, emoji));

  return (
    <li
      className={`message ${m.mine ? 'mine' : 'theirs'} ${m.state}${deleted ? ' deleted' : ''}${mode !== 'idle' ? ' active' : ''}`}
      data-testid="message"
      data-message-id={m.id ?? undefined}
      data-client-message-id={m.clientMessageId ?? undefined}
      data-state={m.state}
      data-mine={String(m.mine)}
      data-error-code={m.error?.code}
      data-edited={String(m.editedAt !== null && !deleted)}
      data-deleted={String(deleted)}
    >
      <div className="message-line">
        <div className={`bubble${deleted ? ' tombstone' : ''}`}>
          {deleted ? (
            <p className="content deleted-text" data-testid="message-deleted">
              Message deleted
            </p>
          ) : mode === 'editing' ? (
            <MessageEditor
              initial={m.content}
              busy={busy}
              onCancel={() => {
                setMode('idle');
                setProblem(null);
              }}
              onSave={(text) => {
                if (text.trim() === m.content) return setMode('idle'); // nothing changed: nothing to ask
                void run(() => actions.edit(m.id!, text), 'idle');
              }}
            />
          ) : (
            <p className="content" data-testid="message-content">
              {m.content}
            </p>
          )}
          <span className="meta">
            {m.editedAt && !deleted && (
              <span className="edited-mark" data-testid="edited-mark" title={`Edited ${fullTime(m.editedAt)}`}>
                edited
              </span>
            )}
            <time dateTime={m.createdAt} title={fullTime(m.createdAt)}>
              {clockTime(m.createdAt)}
            </time>
            {m.state === 'pending' && <ClockIcon />}
            {receipt && (
              <span className="read-receipt" data-testid="read-receipt" title={m.readAt ? `Read ${fullTime(m.readAt)}` : undefined}>
                Read
              </span>
            )}
          </span>
        </div>
        {changeable && mode !== 'editing' && (
          <div className="message-actions">
            {!blocked && (
              <button
                type="button"
                className="button action"
                data-testid="react-button"
                aria-label="Add reaction"
                aria-expanded={mode === 'picking'}
                title="React"
                onClick={() => setMode(mode === 'picking' ? 'idle' : 'picking')}
              >
                <SmileIcon />
              </button>
            )}
            {m.mine && !blocked && (
              <button
                type="button"
                className="button action"
                data-testid="edit-message"
                aria-label="Edit message"
                title="Edit"
                onClick={() => {
                  setProblem(null);
                  setMode('editing');
                }}
              >
                <PencilIcon />
              </button>
            )}
            {m.mine && (
              <button
                type="button"
                className="button action"
                data-testid="delete-message"
                aria-label="Delete message"
                title="Delete for everyone"
                onClick={() => {
                  setProblem(null);
                  setMode('confirm-delete');
                }}
              >
                <TrashIcon />
              </button>
            )}
          </div>
        )}
      </div>
      {mode === 'picking' && changeable && (
        <ReactionPicker
          chosen={(e) => Boolean(meId && m.reactions.some((r) => r.emoji === e && r.userIds.includes(meId)))}
          onPick={(e) => {
            setMode('idle');
            react(e);
          }}
          onClose={() => setMode('idle')}
        />
      )}
      {!deleted && m.reactions.length > 0 && (
        <ul className="reactions" aria-label="Reactions" data-testid="reactions">
          {m.reactions.map((r) => {
            const mine = meId !== undefined && r.userIds.includes(meId);
            const who = r.userIds.map((id) => (id === meId ? 'You' : otherName)).join(' and ');
            return (
              <li key={r.emoji}>
                <button
                  type="button"
                  className={`reaction${mine ? ' mine' : ''}`}
                  data-testid="reaction"
                  data-emoji={r.emoji}
                  data-mine={String(mine)}
                  aria-pressed={mine}
                  aria-label={`${r.emoji} ${r.userIds.length}: ${who}`}
                  title={`${who}${mine ? ' (click to take yours back)' : ''}`}
                  disabled={!changeable || busy || (blocked && !mine)}
                  onClick={() => react(r.emoji)}
                >
                  <span aria-hidden="true">{r.emoji}</span>
                  <span className="count" aria-hidden="true">
                    {r.userIds.length}
                  </span>
                </button>
              </li>
            );
          })}
        </ul>
      )}
      {mode === 'confirm-delete' && changeable && (
        <div className="confirm-line" role="group" aria-label="Delete this message for everyone?" data-testid="confirm-delete">
          <span className="small">Delete for everyone?</span>
          <button type="button" className="button small danger" data-testid="confirm-delete-yes" disabled={busy} onClick={() => void run(() => actions.remove(m.id!), 'idle')}>
            Delete
          </button>
          <button type="button" className="button small subtle" data-testid="confirm-delete-no" disabled={busy} onClick={() => setMode('idle')}>
            Cancel
          </button>
        </div>
      )}
      {problem && (
        <div className="failed-line" role="alert" data-testid="message-error" data-error-code={problem.code}>
          <span className="error small">
            {problem.text}
            {problem.code && <span className="code"> {problem.code}</span>}
          </span>
          <button type="button" className="button small subtle" aria-label="Dismiss" onClick={() => setProblem(null)}>
            OK
          </button>
        </div>
      )}
      {m.state === 'failed' && m.clientMessageId && (
        <div className="failed-line" role="alert">
          <span className="error small">
            {errorText(m.error?.code, 'Not sent.')}
            {m.error?.code && <span className="code"> {m.error.code}</span>}
          </span>
          <button type="button" className="button small" data-testid="retry-send" onClick={() => actions.retry(m.clientMessageId!)}>
            Retry
          </button>
          <button type="button" className="button small subtle" data-testid="discard-send" onClick={() => actions.discard(m.clientMessageId!)}>
            Discard
          </button>
        </div>
      )}
    </li>
  );
}

/** The inline editor: Enter saves, Shift+Enter is a new line, Esc cancels. */
function MessageEditor({ initial, busy, onSave, onCancel }: { initial: string; busy: boolean; onSave: (text: string) => void; onCancel: () => void }) {
  const [text, setText] = useState(initial);
  const input = useRef<HTMLTextAreaElement>(null);
  const length = [...text.trim()].length;
  const invalid = length === 0 || length > MAX_CONTENT;

  useEffect(() => {
    const el = input.current;
    if (!el) return;
    el.focus();
    el.setSelectionRange(el.value.length, el.value.length);
  }, []);

  const save = () => {
    if (!busy && !invalid) onSave(text);
  };
  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.nativeEvent.isComposing) return;
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      save();
    } else if (e.key === 'Escape') {
      e.preventDefault();
      onCancel();
    }
  };

  return (
    <form
      className="editor"
      onSubmit={(e) => {
        e.preventDefault();
        save();
      }}
    >
      <textarea
        ref={input}
        data-testid="edit-input"
        aria-label="Edit message"
        rows={1}
        value={text}
        disabled={busy}
        onChange={(e) => setText(e.target.value)}
        onKeyDown={onKeyDown}
        enterKeyHint="done"
      />
      <span className="editor-line">
        <span className={`small ${length > MAX_CONTENT ? 'error' : 'muted'}`} aria-live="polite">
          {length === 0 ? 'A message cannot be empty: delete it instead.' : length > MAX_CONTENT ? `${length}/${MAX_CONTENT}` : 'Enter to save, Esc to cancel'}
        </span>
        <button type="button" className="button small subtle" data-testid="edit-cancel" onClick={onCancel}>
          Cancel
        </button>
        <button type="submit" className="button small primary" data-testid="edit-save" disabled={busy || invalid}>
          Save
        </button>
      </span>
    </form>
  );
}

function ReactionPicker({ chosen, onPick, onClose }: { chosen: (emoji: string) => boolean; onPick: (emoji: string) => void; onClose: () => void }) {
  const first = useRef<HTMLButtonElement>(null);
  useEffect(() => first.current?.focus(), []);
  return (
    <div
      className="reaction-picker"
      role="group"
      aria-label="Pick a reaction"
      data-testid="reaction-picker"
      onKeyDown={(e) => {
        if (e.key === 'Escape') onClose();
      }}
    >
      {QUICK_REACTIONS.map((emoji, i) => (
        <button
          key={emoji}
          ref={i === 0 ? first : undefined}
          type="button"
          className={`button pick${chosen(emoji) ? ' mine' : ''}`}
          data-testid="pick-reaction"
          data-emoji={emoji}
          aria-label={chosen(emoji) ? `Take back ${emoji}` : `React with ${emoji}`}
          aria-pressed={chosen(emoji)}
          onClick={() => onPick(emoji)}
        >
          {emoji}
        </button>
      ))}
    </div>
  );
}

const iconProps = { viewBox: '0 0 16 16', width: 16, height: 16, 'aria-hidden': true, focusable: false } as const;
const stroke = { fill: 'none', stroke: 'currentColor', strokeWidth: 1.4, strokeLinecap: 'round', strokeLinejoin: 'round' } as const;

function SmileIcon() {
  return (
    <svg className="icon" {...iconProps}>
      <circle cx="8" cy="8" r="6.3" {...stroke} />
      <path d="M5.4 9.6c.7.9 1.6 1.3 2.6 1.3s1.9-.4 2.6-1.3" {...stroke} />
      <circle cx="6" cy="6.4" r=".8" fill="currentColor" />
      <circle cx="10" cy="6.4" r=".8" fill="currentColor" />
    </svg>
  );
}

function PencilIcon() {
  return (
    <svg className="icon" {...iconProps}>
      <path d="M10.8 2.7l2.5 2.5-7.6 7.6-3.1.6.6-3.1z" {...stroke} />
      <path d="M9.4 4.1l2.5 2.5" {...stroke} />
    </svg>
  );
}

function TrashIcon() {
  return (
    <svg className="icon" {...iconProps}>
      <path d="M2.8 4.3h10.4M6.3 4.3V2.8h3.4v1.5M4.2 4.3l.7 8.9h6.2l.7-8.9" {...stroke} />
    </svg>
  );
}
