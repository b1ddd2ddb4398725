import { createHash } from 'node:crypto';
import type { Queryable } from '@chat/platform';
import type { User } from '@chat/contracts';

interface UserRow {
  id: string;
  username: string;
  display_name: string | null;
  avatar_url: string | null;
  [k: string]: unknown;
}

export const toUser = (r: UserRow): User => ({
  id: r.id,
  username: r.username,
  displayName: r.display_name,
  avatarUrl: r.avatar_url,
});

/** Room for the claimed name in a derived one: 23 + '-' + 8 hex = 32, SPEC's maximum. */
const DERIVED_PREFIX = 23;
/** Past this many taken derivations something is wrong (they are 32-bit hashes): fail rather than spin. */
const MAX_DERIVATIONS = 16;

/**
 * The name an account is shown under while another account holds the name it
 * claims. It depends only on the claim and the account's own id, so it is the
 * same on every request; a later attempt is used only when an earlier
 * derivation is already someone's name. Migration 004 computes the same thing
 * in SQL: keep the two in step.
 */
export function derivedUsername(claim: string, userId: string, attempt = 0): string {
  const hash = createHash('sha256')
    .update(attempt === 0 ? userId : `${userId}\n${attempt}`)
    .digest('hex')
    .slice(0, 8);
  return `${claim.slice(0, DERIVED_PREFIX)}-${hash}`;
}

export interface ClaimResult {
  before: User | undefined;
  saved: User;
  /** An account that was waiting for the name this call released, and now holds it. */
  promoted: string | undefined;
}

export class UsersRepository {
  constructor(private readonly db: Queryable) {}

  /**
   * Records the claims of an account's latest token. Run inside a transaction
   * (with a retry on unique violations and deadlocks): the unique index on
   * lower(username), not the reads here, is what makes two concurrent claims
   * of one name end with exactly one holder.
   */
  async claim(u: User): Promise<ClaimResult> {
    const { rows: found } = await this.db.query<UserRow & { same_claim: boolean }>(
      `SELECT id, username, display_name, avatar_url, lower(claimed_username) = lower($2) AS same_claim
       FROM users WHERE id = $1 FOR UPDATE`,
      [u.id, u.username],
    );
    const current = found[0];
    const holder = await this.holderOf(u.username);
    let username: string;
    if (holder === undefined || holder === u.id) username = u.username;
    // Still waiting for the same name: keep the name contacts already know.
    else if (current?.same_claim) username = current.username;
    else username = await this.freeDerivation(u.username, u.id);

    const { rows } = await this.db.query<UserRow>(
      `INSERT INTO users (id, username, claimed_username, display_name, avatar_url)
       VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (id) DO UPDATE SET username = EXCLUDED.username, claimed_username = EXCLUDED.claimed_username,
         claimed_at = CASE WHEN lower(users.claimed_username) = lower(EXCLUDED.claimed_username) THEN users.claimed_at ELSE clock_timestamp() END,
         display_name = EXCLUDED.display_name, avatar_url = EXCLUDED.avatar_url, updated_at = clock_timestamp()
       RETURNING id, username, display_name, avatar_url`,
      [u.id, username, u.username, u.displayName, u.avatarUrl],
    );
    const saved = toUser(rows[0]!);
    const released = current && current.username.toLowerCase() !== saved.username.toLowerCase() ? current.username : undefined;
    return {
      before: current && toUser(current),
      saved,
      promoted: released === undefined ? undefined : await this.promoteWaiter(released),
    };
  }

  /** Whoever holds `name` (case-insensitively), if anyone. */
  private async holderOf(name: string): Promise<string | undefined> {
    const { rows } = await this.db.query<{ id: string }>('SELECT id FROM users WHERE lower(username) = lower($1)', [name]);
    return rows[0]?.id;
  }

  private async freeDerivation(claim: string, userId: string): Promise<string> {
    for (let attempt = 0; attempt < MAX_DERIVATIONS; attempt++) {
      const name = derivedUsername(claim, userId, attempt);
      const holder = await this.holderOf(name);
      if (holder === undefined || holder === userId) return name;
    }
    throw new Error(`no free derived username for ${userId}`);
  }

  /**
   * Gives a just-released name to the account that has been claiming it the
   * longest, at once: a name never sits free while someone's latest token
   * carries it, whether or not their next request reaches this service (the
   * gateway does not resend unchanged claims).
   */
  private async promoteWaiter(released: string): Promise<string | undefined> {
    const waiting = `lower(claimed_username) = lower($1) AND lower(username) <> lower($1)`;
    for (let tries = 0; tries < 5; tries++) {
      // FOR UPDATE re-checks a row another transaction just changed and may then
      // return nothing even though a later waiter matches: look again.
      const { rows } = await this.db.query<{ id: string }>(
        `SELECT id FROM users WHERE ${waiting} ORDER BY claimed_at, id LIMIT 1 FOR UPDATE`,
        [released],
      );
      if (rows[0]) {
        await this.db.query('UPDATE users SET username = claimed_username, updated_at = clock_timestamp() WHERE id = $1', [rows[0].id]);
        return rows[0].id;
      }
      const { rows: left } = await this.db.query(`SELECT 1 FROM users WHERE ${waiting} LIMIT 1`, [released]);
      if (left.length === 0) return undefined;
    }
    return undefined;
  }

  async findByUsername(username: string): Promise<User | undefined> {
    const { rows } = await this.db.query<UserRow>(
      'SELECT id, username, display_name, avatar_url FROM users WHERE lower(username) = lower($1)',
      [username],
    );
    return rows[0] ? toUser(rows[0]) : undefined;
  }

  async getMany(ids: readonly string[]): Promise<User[]> {
    if (ids.length === 0) return [];
    const { rows } = await this.db.query<UserRow>(
      'SELECT id, username, display_name, avatar_url FROM users WHERE id = ANY($1::text[])',
      [ids],
    );
    return rows.map(toUser);
  }
}
