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

export class UsersRepository {
  constructor(private readonly db: Queryable) {}

  /** Releases the name from any other user who held it (a rename upstream), then upserts. */
  async releaseUsername(id: string, username: string): Promise<void> {
    await this.db.query('UPDATE users SET username_key = NULL WHERE username_key = lower($2) AND id <> $1', [id, username]);
  }

  async upsert(u: User): Promise<User> {
    const { rows } = await this.db.query<UserRow>(
      `INSERT INTO users (id, username, username_key, display_name, avatar_url)
       VALUES ($1, $2, lower($2), $3, $4)
       ON CONFLICT (id) DO UPDATE SET username = EXCLUDED.username, username_key = EXCLUDED.username_key,
         display_name = EXCLUDED.display_name, avatar_url = EXCLUDED.avatar_url, updated_at = clock_timestamp()
       RETURNING id, username, display_name, avatar_url`,
      [u.id, u.username, u.displayName, u.avatarUrl],
    );
    return toUser(rows[0]!);
  }

  async findByUsername(username: string): Promise<User | undefined> {
    const { rows } = await this.db.query<UserRow>(
      'SELECT id, username, display_name, avatar_url FROM users WHERE username_key = lower($1)',
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
