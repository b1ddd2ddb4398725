/**
 * React bindings of the chat client (`@chat/client/react`): a provider that
 * holds one connection and keeps a TanStack Query cache live from events,
 * and hooks for each part of a chat screen.
 */
export { ChatProvider, type ChatProviderProps } from './provider';
export {
  useBlock,
  useChatClient,
  useChatConnection,
  useConversation,
  useConversations,
  useMarkRead,
  useMessageActions,
  useMessages,
  useOpenConversation,
  usePresence,
  useSearchMessages,
  useSendMessage,
  useTyping,
  useUnreadCount,
  type MessageItem,
} from './hooks';
export { useKeepScrollPosition, isAtBottom, type ScrollBox, type ScrollEdges } from './scroll';
export { chatKeys } from './keys';
export type { ChatConnection } from './store';
