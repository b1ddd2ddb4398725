import { UserSchema, type Subjects } from '@chat/contracts';
import type { BusClient } from '@chat/platform';
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

  async ensure(p: Principal, requestId: string): Promise<void> {
    const fingerprint = JSON.stringify([p.username, p.displayName, p.avatarUrl]);
    if (this.written.get(p.id) === fingerprint) return;
    await this.bus.request(
      this.subjects.conversations.upsertUser,
      { id: p.id, username: p.username, displayName: p.displayName, avatarUrl: p.avatarUrl },
      UserSchema,
      { requestId },
    );
    this.written.delete(p.id);
    this.written.set(p.id, fingerprint);
    if (this.written.size > MAX_REMEMBERED) {
      const oldest = this.written.keys().next().value;
      if (oldest !== undefined) this.written.delete(oldest);
    }
  }
}
