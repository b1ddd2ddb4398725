import { useQueryClient } from '@tanstack/react-query';
import { createContext, useContext, useEffect, useMemo, type ReactNode } from 'react';
import type { ChatClient } from '../client';
import { ChatStore } from './store';

const ChatContext = createContext<ChatStore | null>(null);

export interface ChatProviderProps {
  /** One client per signed-in user, made outside React. */
  client: ChatClient;
  children?: ReactNode;
}

/**
 * Holds the client's connection open while mounted (`retain`, released on
 * unmount: StrictMode's mount, unmount, mount keeps one connection), and
 * keeps the TanStack Query cache live from its events. Must sit inside a
 * `QueryClientProvider`.
 */
export function ChatProvider({ client, children }: ChatProviderProps) {
  const queryClient = useQueryClient();
  const store = useMemo(() => new ChatStore(client, queryClient), [client, queryClient]);
  // Listening first, then connecting: no event can come before the cache listens.
  useEffect(() => store.attach(), [store]);
  useEffect(() => client.retain(), [client]);
  return <ChatContext.Provider value={store}>{children}</ChatContext.Provider>;
}

/** @internal The provider's store; throws outside a ChatProvider. */
export function useChatStore(): ChatStore {
  const store = useContext(ChatContext);
  if (!store) throw new Error('@chat/client/react: this hook must be used inside <ChatProvider>');
  return store;
}
