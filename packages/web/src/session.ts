import { QueryClient } from '@tanstack/react-query';
import { ChatClient, isApiError } from '@chat/client';
import { useSyncExternalStore } from 'react';

/**
 * Who is signed in, kept in localStorage (`chat.session`) so a reload stays
 * signed in. `source: 'dev'` is a token from the gateway's development
 * sign-in, asked for again when the API refuses it; `'token'` was pasted.
 */
export interface Session {
  token: string;
  username: string;
  displayName?: string | null;
  source?: 'dev' | 'token';
}

export interface DevUser {
  id: string;
  username: string;
  displayName: string;
}

const SESSION_KEY = 'chat.session';
const API = '/api/chat';

export function loadSession(): Session | null {
  try {
    const raw = localStorage.getItem(SESSION_KEY);
    const parsed = raw ? (JSON.parse(raw) as Partial<Session>) : null;
    if (!parsed || typeof parsed.token !== 'string' || !parsed.token || typeof parsed.username !== 'string') return null;
    return {
      token: parsed.token,
      username: parsed.username,
      displayName: typeof parsed.displayName === 'string' ? parsed.displayName : null,
      source: parsed.source === 'dev' ? 'dev' : 'token',
    };
  } catch {
    return null;
  }
}

function saveSession(session: Session): void {
  try {
    localStorage.setItem(SESSION_KEY, JSON.stringify(session));
  } catch {
    /* private mode: signed in until the page closes */
  }
}

function clearSession(): void {
  try {
    localStorage.removeItem(SESSION_KEY);
  } catch {
    /* nothing stored */
  }
}

/**
 * The development sign-in's users; `null` when the server offers none: 404,
 * or 401 where the route is not mounted and the API asks for a token like
 * for any unknown path.
 */
export async function listDevUsers(): Promise<DevUser[] | null> {
  const res = await fetch(`${API}/dev/users`, { headers: { accept: 'application/json' } });
  if (res.status === 404 || res.status === 401 || res.status === 403) return null;
  if (!res.ok) throw new Error(`the server answered ${res.status}`);
  return ((await res.json()) as { data: DevUser[] }).data;
}

export async function devToken(username: string): Promise<{ token: string; expiresAt: string }> {
  const res = await fetch(`${API}/dev/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ username }),
  });
  if (!res.ok) throw new Error(res.status === 404 ? 'development sign-in is off' : `the server answered ${res.status}`);
  return ((await res.json()) as { data: { token: string; expiresAt: string } }).data;
}

/** The claims the chat reads from a token (SPEC 3), without checking it: the server does that. */
export function tokenClaims(token: string): { username?: string; name?: string; sub?: string } {
  try {
    const part = token.split('.')[1];
    if (!part) return {};
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '='));
    const claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(json, (c) => c.charCodeAt(0)))) as Record<string, unknown>;
    const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
    const username = str(claims.username) ?? str(claims.preferred_username);
    return { ...(username ? { username } : {}), ...(str(claims.name) ? { name: str(claims.name)! } : {}), ...(str(claims.sub) ? { sub: str(claims.sub)! } : {}) };
  } catch {
    return {};
  }
}

/** Asks the API whether it takes the token (a pasted one, before switching to it). */
export async function checkToken(token: string): Promise<'ok' | 'refused' | 'unreachable'> {
  try {
    const res = await fetch(`${API}/conversations?limit=1`, { headers: { authorization: `Bearer ${token}`, accept: 'application/json' } });
    return res.ok ? 'ok' : res.status === 401 ? 'refused' : 'unreachable';
  } catch {
    return 'unreachable';
  }
}

// ---- the signed-in state, outside React ---------------------------------------

/** One for the page; cleared on sign-out so nothing of one user is shown to the next. */
export const queryClient = new QueryClient({
  defaultOptions: {
    queries: {
      // 4xx answers are final; a few retries for the network and 5xx.
      retry: (count, err) => count < 2 && !(isApiError(err) && err.status >= 400 && err.status < 500),
      refetchOnWindowFocus: false,
    },
  },
});

export type Auth =
  | { status: 'signed-out'; notice?: string }
  | { status: 'signed-in'; session: Session; client: ChatClient; id: number };

let auth: Auth = { status: 'signed-out' };
let ids = 0;
const listeners = new Set<() => void>();
const emit = () => listeners.forEach((l) => l());

/** The client of one signed-in session: same origin, tokens from the session (refreshed when it came from dev sign-in). */
function makeClient(): ChatClient {
  return new ChatClient({
    baseUrl: '',
    getToken: async ({ forceRefresh }) => {
      if (auth.status !== 'signed-in') throw new Error('signed out');
      const session = auth.session;
      if (forceRefresh && session.source === 'dev') {
        try {
          const { token } = await devToken(session.username);
          session.token = token;
          saveSession(session);
        } catch {
          /* the old token: refused again, which signs out */
        }
      }
      return session.token;
    },
  });
}

export function signIn(session: Session): void {
  if (auth.status === 'signed-in') signOut();
  saveSession(session);
  // The client reads the session through `auth`: set it before the client asks for a token.
  const next = { status: 'signed-in' as const, session: { ...session }, client: undefined as unknown as ChatClient, id: ++ids };
  auth = next;
  next.client = makeClient();
  emit();
}

export function signOut(notice?: string): void {
  if (auth.status === 'signed-in') auth.client.close();
  clearSession();
  queryClient.clear();
  auth = notice ? { status: 'signed-out', notice } : { status: 'signed-out' };
  emit();
}

const stored = loadSession();
if (stored) signIn(stored);

export function useAuth(): Auth {
  return useSyncExternalStore(
    (l) => {
      listeners.add(l);
      return () => void listeners.delete(l);
    },
    () => auth,
  );
}
