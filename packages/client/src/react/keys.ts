import type { QueryKey } from '@tanstack/react-query';

/**
 * The query keys of the chat's cache. Everything lives under `['chat']`, so
 * a resync invalidates it all with one prefix, and the app's own queries
 * (under other keys) are left alone.
 */
export const chatKeys = {
  all: ['chat'] as const,
  conversations: () => ['chat', 'conversations'] as const,
  /** One conversation, when it was opened by id (a deep link) rather than from the list. */
  conversation: (conversationId: string) => ['chat', 'conversation', conversationId] as const,
  messages: (conversationId: string) => ['chat', 'messages', conversationId] as const,
  unread: () => ['chat', 'unread'] as const,
  presence: (userId: string) => ['chat', 'presence', userId] as const,
  blocks: () => ['chat', 'block'] as const,
  blockStatus: (username: string) => ['chat', 'block', username.toLowerCase()] as const,
  /** Every search's results (the prefix of `search`). */
  searches: () => ['chat', 'search'] as const,
  /** One search: the trimmed query, in one conversation or all. */
  search: (q: string, conversationId?: string) => ['chat', 'search', q.trim(), conversationId ?? null] as const,
} satisfies Record<string, QueryKey | ((...args: string[]) => QueryKey)>;
