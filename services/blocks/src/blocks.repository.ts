import { isUniqueViolation, type Cursor, type Queryable } from '@chat/platform';
import { ChatError } from '@chat/contracts';

export interface BlockRow {
  id: string;
  blocked_id: string;
  created_at: Date;
  created_key: string;
  [k: string]: unknown;
}

const COLUMNS = 'id, blocked_id, created_at, created_at::text AS created_key';

export class BlocksRepository {
  constructor(private readonly db: Queryable) {}

  async insert(id: string, blockerId: string, blockedId: string): Promise<BlockRow> {
    try {
      const { rows } = await this.db.query<BlockRow>(
        `INSERT INTO blocks (id, blocker_id, blocked_id) VALUES ($1, $2, $3) RETURNING ${COLUMNS}`,
        [id, blockerId, blockedId],
      );
      return rows[0]!;
    } catch (err) {
      if (isUniqueViolation(err, 'blocks_pair_unique')) throw new ChatError('ALREADY_BLOCKED', 'this user is already blocked');
      throw err;
    }
  }

  /** Counts one more change of the pair and locks its row to the end of the transaction. */
  async bumpVersion(blockerId: string, blockedId: string): Promise<number> {
    const { rows } = await this.db.query<{ version: string }>(
      `INSERT INTO pair_versions (blocker_id, blocked_id, version) VALUES ($1, $2, 1)
       ON CONFLICT (blocker_id, blocked_id) DO UPDATE SET version = pair_versions.version + 1 RETURNING version`,
      [blockerId, blockedId],
    );
    return Number(rows[0]!.version);
  }

  async pairState(blockerId: string, blockedId: string): Promise<{ blocked: boolean; version: number } | undefined> {
    const { rows } = await this.db.query<{ version: string; blocked: boolean }>(
      `SELECT v.version, EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = v.blocker_id AND b.blocked_id = v.blocked_id) AS blocked
       FROM pair_versions v WHERE v.blocker_id = $1 AND v.blocked_id = $2`,
      [blockerId, blockedId],
    );
    return rows[0] ? { blocked: rows[0].blocked, version: Number(rows[0].version) } : undefined;
  }

  async pairStates(after: { blockerId: string; blockedId: string } | undefined, limit: number) {
    const { rows } = await this.db.query<{ blocker_id: string; blocked_id: string; version: string; blocked: boolean }>(
      `SELECT v.blocker_id, v.blocked_id, v.version, b.id IS NOT NULL AS blocked
       FROM pair_versions v LEFT JOIN blocks b ON b.blocker_id = v.blocker_id AND b.blocked_id = v.blocked_id
       WHERE $1::text IS NULL OR (v.blocker_id, v.blocked_id) > ($1::text, $2::text)
       ORDER BY v.blocker_id, v.blocked_id LIMIT $3`,
      [after?.blockerId ?? null, after?.blockedId ?? null, limit],
    );
    return rows.map((r) => ({ blockerId: r.blocker_id, blockedId: r.blocked_id, blocked: r.blocked, version: Number(r.version) }));
  }

  async delete(blockerId: string, blockedId: string): Promise<boolean> {
    const { rowCount } = await this.db.query('DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2', [blockerId, blockedId]);
    return (rowCount ?? 0) > 0;
  }

  async page(blockerId: string, before: Cursor | undefined, limit: number): Promise<BlockRow[]> {
    const { rows } = before
      ? await this.db.query<BlockRow>(
          `SELECT ${COLUMNS} FROM blocks WHERE blocker_id = $1 AND (created_at, id) < ($2::timestamptz, $3::uuid)
           ORDER BY created_at DESC, id DESC LIMIT $4`,
          [blockerId, before.at, before.id, limit],
        )
      : await this.db.query<BlockRow>(`SELECT ${COLUMNS} FROM blocks WHERE blocker_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2`, [
          blockerId,
          limit,
        ]);
    return rows;
  }

  /** Both directions between `userId` and each of `otherIds`, in one statement. */
  async between(userId: string, otherIds: readonly string[]): Promise<Array<{ blocker_id: string; blocked_id: string }>> {
    if (otherIds.length === 0) return [];
    const { rows } = await this.db.query<{ blocker_id: string; blocked_id: string }>(
      `SELECT blocker_id, blocked_id FROM blocks
       WHERE (blocker_id = $1 AND blocked_id = ANY($2::text[])) OR (blocked_id = $1 AND blocker_id = ANY($2::text[]))`,
      [userId, otherIds],
    );
    return rows;
  }

  /** Both directions of each (userId, otherId) pair, in the order given, in one statement (two index probes per pair). */
  async betweenPairs(pairs: ReadonlyArray<{ userId: string; otherId: string }>): Promise<Array<{ by_me: boolean; by_them: boolean }>> {
    if (pairs.length === 0) return [];
    const { rows } = await this.db.query<{ by_me: boolean; by_them: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = p.user_id AND b.blocked_id = p.other_id) AS by_me,
              EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = p.other_id AND b.blocked_id = p.user_id) AS by_them
       FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS p(user_id, other_id, n)
       ORDER BY p.n`,
      [pairs.map((p) => p.userId), pairs.map((p) => p.otherId)],
    );
    return rows;
  }
}
