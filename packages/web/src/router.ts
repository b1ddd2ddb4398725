import { useSyncExternalStore, type MouseEvent } from 'react';

/** The app's two places: `/` (the list) and `/c/<conversationId>` (a conversation). */
export type Route = { name: 'list' } | { name: 'conversation'; conversationId: string };

const listeners = new Set<() => void>();
const emit = () => listeners.forEach((l) => l());
window.addEventListener('popstate', emit);

export function parseRoute(pathname: string): Route {
  const m = /^\/c\/([^/]+)\/?$/.exec(pathname);
  if (m) {
    try {
      return { name: 'conversation', conversationId: decodeURIComponent(m[1]!) };
    } catch {
      /* a malformed escape: the list */
    }
  }
  return { name: 'list' };
}

export const conversationPath = (conversationId: string) => `/c/${encodeURIComponent(conversationId)}`;

export function navigate(path: string, opts: { replace?: boolean } = {}): void {
  if (path === location.pathname) return;
  if (opts.replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  emit();
}

/** A link's click handled in the page (a plain left click), the browser's way otherwise (new tab, …). */
export function onLinkClick(path: string) {
  return (e: MouseEvent<HTMLAnchorElement>) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(path);
  };
}

let cached: { path: string; route: Route } | undefined;
function current(): Route {
  const path = location.pathname;
  if (cached?.path !== path) cached = { path, route: parseRoute(path) };
  return cached.route;
}

export function useRoute(): Route {
  return useSyncExternalStore(
    (l) => {
      listeners.add(l);
      return () => void listeners.delete(l);
    },
    current,
  );
}
