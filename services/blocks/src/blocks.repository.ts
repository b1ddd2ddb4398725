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
}
