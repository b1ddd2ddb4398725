import { ChatError, UserSchema, type Subjects } from '@chat/contracts';
import type { BusClient, Logger } from '@chat/platform';
import type { Principal } from './auth';

const MAX_REMEMBERED = 50_000;

/**
 * Keeps the users directory in step with token claims. The directory is
 * written when a caller's claims differ from what this process last wrote,
 * not on every request; a bounded memory of (user → claims) makes repeat
 * callers free.
 */
export class UserSync {
  private readonly written = new Map<string, string>();

  constructor(
    private readonly bus: BusClient,
    private readonly subjects: Subjects,
  ) {}

  /**
   * While the directory's service is down, requests that do not need it go on
   * (the write is retried on the caller's next request); those that do need
   * it answer 503 from their own call.
   */
  async ensure(p: Principal, requestId: string, log: Logger): Promise<void> {
    const fingerprint = JSON.stringify([p.username, p.displayName, p.avatarUrl]);
    if (this.written.get(p.id) === fingerprint) return;
    try {
      await this.bus.request(
        this.subjects.conversations.upsertUser,
        { id: p.id, username: p.username, displayName: p.displayName, avatarUrl: p.avatarUrl },
        UserSchema,
        // An upsert: asking twice writes the same row.
        { requestId, idempotent: true },
      );
    } catch (err) {
      if (err instanceof ChatError && err.code === 'SERVICE_UNAVAILABLE') {
        log.warn({ requestId, userId: p.id }, 'users directory unavailable: profile not refreshed');
        return;
      }
      throw err;
    }
    this.written.delete(p.id);
    this.written.set(p.id, fingerprint);
    if (this.written.size > MAX_REMEMBERED) {
      const oldest = this.written.keys().next().value;
      if (oldest !== undefined) this.written.delete(oldest);
    }
  }
}
