import type { InfiniteData } from '@tanstack/react-query';
import type { Conversation, Message, MessageDeleted, MessageRead, Page, Reaction, SearchResult } from '../types';

/**
 * Pure edits of the cached pages, one per live event. Each returns the same
 * object when nothing changed (so no observer re-renders), and each can be
 * applied twice with the same result: the provider applies an edit again
 * after a fetch that was in flight when the event came.
 */
export type Pages<T> = InfiniteData<Page<T>, unknown>;

/** The server's order of messages and conversations: time, then id (UUIDv7 ids sort by time as strings). */
function compareTimeId(aTime: string, aId: string, bTime: string, bId: string): number {
  if (aTime !== bTime) return aTime < bTime ? -1 : 1;
  return aId < bId ? -1 : aId > bId ? 1 : 0;
}
/** < 0: `a` is older than `b`. */
export const compareMessages = (a: Message, b: Message): number => compareTimeId(a.createdAt, a.id, b.createdAt, b.id);
const compareActivity = (a: Conversation, b: Conversation): number => compareTimeId(a.updatedAt, a.id, b.updatedAt, b.id);

function replacePage<T>(data: Pages<T>, index: number, items: T[]): Pages<T> {
  const pages = data.pages.slice();
  pages[index] = { ...pages[index]!, data: items };
  return { ...data, pages };
}

/**
 * The stored message over what the cache had, never going back: a read mark
 * the cache already saw stays, a tombstone stays a tombstone, and a later
 * edit is not undone by an older copy of the message (a send's ack, a fetch
 * answered before the edit).
 */
function mergeMessage(current: Message, incoming: Message): Message {
  if (current.deletedAt) return current;
  const olderEdit = current.editedAt !== null && (incoming.editedAt === null || incoming.editedAt < current.editedAt);
  const merged: Message = {
    ...current,
    ...incoming,
    readAt: incoming.readAt ?? current.readAt,
    ...(olderEdit ? { content: current.content, editedAt: current.editedAt } : {}),
  };
  // Each answer brings its own (equal) arrays: compared by value, so an unchanged message stays the same object.
  if (sameReactions(merged.reactions, current.reactions)) merged.reactions = current.reactions;
  const same = (Object.keys(merged) as Array<keyof Message>).every((k) => merged[k] === current[k]);
  return same ? current : merged;
}

/** A message's edit (content and `editedAt`), unless it is deleted or already shows a later edit. */
export function withEdit(current: Message, edited: Message): Message {
  if (current.deletedAt || edited.editedAt === null) return current;
  if (current.editedAt !== null && current.editedAt >= edited.editedAt) return current;
  return { ...current, content: edited.content, editedAt: edited.editedAt };
}

/** A message as a tombstone: its content and reactions gone (SPEC 10), the other fields kept. */
export function asTombstone(current: Message, deletedAt: string): Message {
  if (current.deletedAt && current.content === '' && current.reactions.length === 0) return current;
  return { ...current, content: '', deletedAt: current.deletedAt ?? deletedAt, reactions: [] };
}

/** A message's reactions as they are now; a tombstone has none. */
export function withReactions(current: Message, reactions: Reaction[]): Message {
  if (current.deletedAt || sameReactions(current.reactions, reactions)) return current;
  return { ...current, reactions };
}

function sameReactions(a: readonly Reaction[], b: readonly Reaction[]): boolean {
  return (
    a.length === b.length &&
    a.every((r, i) => r.emoji === b[i]!.emoji && r.userIds.length === b[i]!.userIds.length && r.userIds.every((u, j) => u === b[i]!.userIds[j]))
  );
}

/** One loaded message through `edit` (same object back: unchanged); a message not loaded is left for the page that brings it. */
export function updateMessage(data: Pages<Message>, messageId: string, edit: (m: Message) => Message): Pages<Message> {
  for (let p = 0; p < data.pages.length; p++) {
    const items = data.pages[p]!.data;
    const i = items.findIndex((m) => m.id === messageId);
    if (i < 0) continue;
    const next = edit(items[i]!);
    if (next === items[i]) return data;
    const copy = items.slice();
    copy[i] = next;
    return replacePage(data, p, copy);
  }
  return data;
}

/** A deletion in loaded pages: the tombstone in place of the message. */
export const deleteMessage = (data: Pages<Message>, deleted: MessageDeleted): Pages<Message> =>
  updateMessage(data, deleted.messageId, (m) => asTombstone(m, deleted.deletedAt));

/** The conversation's `lastMessage` through `edit` when it is that message. */
export function withLastMessage(conversation: Conversation, messageId: string, edit: (m: Message) => Message): Conversation {
  const last = conversation.lastMessage;
  if (!last || last.id !== messageId) return conversation;
  const next = edit(last);
  return next === last ? conversation : { ...conversation, lastMessage: next };
}

/** Search hits through `edit`; a hit whose message `edit` returns `null` for is dropped (deleted messages are never found). */
export function updateSearchHits(data: Pages<SearchResult>, messageId: string, edit: (m: Message) => Message | null): Pages<SearchResult> {
  let changed = false;
  const pages = data.pages.map((page) => {
    if (!page.data.some((h) => h.message.id === messageId)) return page;
    const items: SearchResult[] = [];
    for (const hit of page.data) {
      if (hit.message.id !== messageId) {
        items.push(hit);
        continue;
      }
      const next = edit(hit.message);
      if (next === hit.message) items.push(hit);
      else {
        changed = true;
        if (next) items.push({ ...hit, message: next });
      }
    }
    return items.length === page.data.length && items.every((h, i) => h === page.data[i]) ? page : { ...page, data: items };
  });
  return changed ? { ...data, pages } : data;
}

/**
 * Adds a message to a conversation's pages (newest first), or updates it in
 * place when it is there: never twice. It goes into the loaded page whose
 * range it falls in; one older than everything loaded, with more pages on
 * the server, is left for the page that will bring it.
 */
export function upsertMessage(data: Pages<Message>, message: Message): Pages<Message> {
  for (let p = 0; p < data.pages.length; p++) {
    const items = data.pages[p]!.data;
    const i = items.findIndex((m) => m.id === message.id);
    if (i < 0) continue;
    const merged = mergeMessage(items[i]!, message);
    if (merged === items[i]) return data;
    const next = items.slice();
    next[i] = merged;
    return replacePage(data, p, next);
  }
  for (let p = 0; p < data.pages.length; p++) {
    const page = data.pages[p]!;
    const oldest = page.data[page.data.length - 1];
    const isLast = p === data.pages.length - 1;
    if (oldest && compareMessages(message, oldest) < 0 && !(isLast && !page.meta.hasMore)) continue;
    const next = page.data.slice();
    let at = next.findIndex((m) => compareMessages(m, message) < 0);
    if (at < 0) at = next.length;
    next.splice(at, 0, message);
    return replacePage(data, p, next);
  }
  return data;
}

/**
 * A read marker: the messages the reader received, up to and including
 * `lastReadMessageId`, are read at `readAt` (those already read keep their time).
 */
export function markMessagesRead(data: Pages<Message>, read: MessageRead): Pages<Message> {
  let changed = false;
  const pages = data.pages.map((page) => {
    let pageChanged = false;
    const items = page.data.map((m) => {
      if (m.readAt !== null || m.senderId === read.readerId || m.id > read.lastReadMessageId) return m;
      pageChanged = true;
      return { ...m, readAt: read.readAt };
    });
    if (!pageChanged) return page;
    changed = true;
    return { ...page, data: items };
  });
  return changed ? { ...data, pages } : data;
}

export function findConversation(data: Pages<Conversation> | undefined, conversationId: string): Conversation | undefined {
  for (const page of data?.pages ?? []) {
    const found = page.data.find((c) => c.id === conversationId);
    if (found) return found;
  }
  return undefined;
}

/** Every conversation that matches, through `update` (same object back: unchanged). */
export function updateConversations(
  data: Pages<Conversation>,
  match: (c: Conversation) => boolean,
  update: (c: Conversation) => Conversation,
): Pages<Conversation> {
  let changed = false;
  const pages = data.pages.map((page) => {
    let pageChanged = false;
    const items = page.data.map((c) => {
      if (!match(c)) return c;
      const next = update(c);
      if (next !== c) pageChanged = true;
      return next;
    });
    if (!pageChanged) return page;
    changed = true;
    return { ...page, data: items };
  });
  return changed ? { ...data, pages } : data;
}

/** Removes a conversation wherever it is and puts it into the first page at its place by activity. */
function moveToItsPlace(data: Pages<Conversation>, conversation: Conversation): Pages<Conversation> {
  const pages = data.pages.map((page) =>
    page.data.some((c) => c.id === conversation.id) ? { ...page, data: page.data.filter((c) => c.id !== conversation.id) } : page,
  );
  const first = pages[0];
  if (!first) return data;
  const items = first.data.slice();
  let at = items.findIndex((c) => compareActivity(c, conversation) < 0);
  if (at < 0) at = items.length;
  items.splice(at, 0, conversation);
  pages[0] = { ...first, data: items };
  return { ...data, pages };
}

/** Inserts a conversation (just opened or created) or replaces it, in its place by activity. */
export function upsertConversation(data: Pages<Conversation>, conversation: Conversation): Pages<Conversation> {
  return moveToItsPlace(data, conversation);
}

/** Applies a conversation-level edit to one conversation's object (`undefined` and unchanged pass through). */
export function withNewMessage(conversation: Conversation, message: Message): Conversation {
  const last = conversation.lastMessage;
  if (last && last.id === message.id) {
    const merged = mergeMessage(last, message);
    return merged === last ? conversation : { ...conversation, lastMessage: merged };
  }
  if (last && compareMessages(message, last) <= 0) return conversation; // an older message: the list already has newer
  return {
    ...conversation,
    lastMessage: message,
    updatedAt: message.createdAt > conversation.updatedAt ? message.createdAt : conversation.updatedAt,
  };
}

/**
 * A new message in the list: its conversation's last message and activity,
 * moved to the top. `found: false` when the conversation is not loaded.
 */
export function applyNewMessage(data: Pages<Conversation>, message: Message): { data: Pages<Conversation>; found: boolean } {
  const current = findConversation(data, message.conversationId);
  if (!current) return { data, found: false };
  const next = withNewMessage(current, message);
  if (next === current) return { data, found: true };
  if (next.updatedAt === current.updatedAt && next.lastMessage?.id === current.lastMessage?.id)
    return { data: updateConversations(data, (c) => c.id === current.id, () => next), found: true };
  return { data: moveToItsPlace(data, next), found: true };
}

/** Flattens pages, first occurrence kept (a conversation moved up by activity can be on two pages). */
export function flattenUnique<T extends { id: string }>(data: Pages<T> | undefined): T[] {
  return flattenUniqueBy(data, (item) => item.id);
}

export function flattenUniqueBy<T>(data: Pages<T> | undefined, idOf: (item: T) => string): T[] {
  if (!data) return [];
  const seen = new Set<string>();
  const out: T[] = [];
  for (const page of data.pages)
    for (const item of page.data) {
      const id = idOf(item);
      if (seen.has(id)) continue;
      seen.add(id);
      out.push(item);
    }
  return out;
}
