import type { KeyValueStorage, Message, PendingSend } from './types';

const STORAGE_VERSION = 1;

/**
 * The sends the server has not confirmed, in the order the user made them.
 * Kept in storage per user, so a page reload resumes them with the same
 * clientMessageId (the server stores each id once, so resending is safe).
 */
export class SendQueue {
  private readonly entries = new Map<string, PendingSend>();
  private key: string | undefined;

  constructor(
    private readonly storage: KeyValueStorage | null,
    private readonly namespace: string,
  ) {}

  /** Binds the queue to a user: loads what an earlier page left and saves what this one holds. */
  bindUser(userId: string): void {
    const key = `${this.namespace}:pending:v${STORAGE_VERSION}:${userId}`;
    if (this.key === key) return;
    if (this.key !== undefined) this.entries.clear(); // another user signed in: never send their queue as this one
    this.key = key;
    for (const entry of this.load()) if (!this.entries.has(entry.clientMessageId)) this.entries.set(entry.clientMessageId, entry);
    this.save();
  }

  add(entry: PendingSend): void {
    this.entries.set(entry.clientMessageId, entry);
    this.save();
  }

  get(clientMessageId: string): PendingSend | undefined {
    return this.entries.get(clientMessageId);
  }

  update(clientMessageId: string, patch: Partial<PendingSend>): PendingSend | undefined {
    const entry = this.entries.get(clientMessageId);
    if (!entry) return undefined;
    const next = { ...entry, ...patch };
    this.entries.set(clientMessageId, next);
    this.save();
    return next;
  }

  remove(clientMessageId: string): PendingSend | undefined {
    const entry = this.entries.get(clientMessageId);
    if (entry) {
      this.entries.delete(clientMessageId);
      this.save();
    }
    return entry;
  }

  /** Oldest first. */
  list(conversationId?: string): PendingSend[] {
    const all = [...this.entries.values()].sort((a, b) => (a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : 0));
    return conversationId === undefined ? all : all.filter((e) => e.conversationId === conversationId);
  }

  /** A confirmed send: gone from the queue, returned with its stored message. */
  confirm(clientMessageId: string, message: Message): (PendingSend & { state: 'sent'; message: Message }) | undefined {
    const entry = this.remove(clientMessageId);
    return entry ? { ...entry, state: 'sent', message } : undefined;
  }

  private load(): PendingSend[] {
    if (!this.storage || !this.key) return [];
    try {
      const raw = this.storage.getItem(this.key);
      const parsed: unknown = raw ? JSON.parse(raw) : [];
      return Array.isArray(parsed) ? parsed.filter(isPendingSend) : [];
    } catch {
      return []; // unreadable (another version, a full disk): start empty rather than break the page
    }
  }

  private save(): void {
    if (!this.storage || !this.key) return;
    try {
      const kept = [...this.entries.values()];
      if (kept.length === 0) this.storage.removeItem(this.key);
      else this.storage.setItem(this.key, JSON.stringify(kept));
    } catch {
      /* quota or private mode: the queue still lives in memory */
    }
  }
}

function isPendingSend(v: unknown): v is PendingSend {
  if (typeof v !== 'object' || v === null) return false;
  const e = v as Record<string, unknown>;
  return (
    typeof e.clientMessageId === 'string' &&
    typeof e.conversationId === 'string' &&
    typeof e.content === 'string' &&
    typeof e.createdAt === 'string' &&
    (e.state === 'pending' || e.state === 'failed')
  );
}
