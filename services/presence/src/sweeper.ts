import type { Logger } from '@chat/platform';
import type { PresenceRepository } from './presence.repository';

/** Users looked at per batch, and batches per sweep; the rest wait for the next sweep. */
const BATCH = 200;
const MAX_BATCHES = 50;

export type OfflineHandler = (userId: string, lastSeenAt: string) => void;

/**
 * One pass: every user whose latest connection expired by `now` has their
 * expired connections dropped; those left with none went offline and are
 * handed to `onOffline`. Several replicas may sweep at once: the script
 * decides each transition atomically, so each is handed to exactly one of them.
 * Returns how many went offline in this pass.
 */
export async function sweepOnce(repo: PresenceRepository, onOffline: OfflineHandler, now = Date.now()): Promise<number> {
  let wentOffline = 0;
  for (let batch = 0; batch < MAX_BATCHES; batch++) {
    const candidates = await repo.expiredUsers(now, BATCH);
    // Sent together, so they share round trips; each user's outcome is handled even if another's failed.
    const outcomes = await Promise.allSettled(candidates.map((c) => repo.expire(c.userId, c.expiry, now)));
    let failure: unknown;
    outcomes.forEach((o, i) => {
      if (o.status === 'rejected') failure ??= o.reason;
      else if (o.value.wentOffline) {
        wentOffline++;
        onOffline(candidates[i]!.userId, o.value.lastSeenAt);
      }
    });
    if (failure !== undefined) throw failure;
    // Each candidate has left the index or moved past `now` (or changed score: looked at again next batch).
    if (candidates.length < BATCH) break;
  }
  return wentOffline;
}

/**
 * Runs `sweepOnce` every `intervalMs` (a connection whose gateway stopped
 * refreshing it, because the gateway died, goes away within TTL + interval).
 * `stop()` lets a running pass finish.
 */
export function startSweeper(repo: PresenceRepository, onOffline: OfflineHandler, intervalMs: number, log: Logger) {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopped = false;
  let failing = false;

  const tick = () => {
    running = sweepOnce(repo, onOffline)
      .then(() => {
        if (failing) log.info('presence sweep: working again');
        failing = false;
      })
      .catch((err: unknown) => {
        if (!failing) log.warn({ err: (err as Error).message }, 'presence sweep failed; retrying every interval');
        failing = true;
      })
      .finally(() => {
        running = undefined;
        if (!stopped) timer = setTimeout(tick, intervalMs);
      });
  };
  timer = setTimeout(tick, intervalMs);

  return {
    async stop(): Promise<void> {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
