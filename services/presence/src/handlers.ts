import {
  BlockStatusSchema,
  PresenceConnectRequest,
  PresenceDisconnectRequest,
  PresenceHeartbeatRequest,
  PresenceQueryForRequest,
  PresenceQueryRequest,
  type Presence,
  type Subjects,
  idMap,
  idRecord,
} from '@chat/contracts';
import { endpoint, type BusClient, type EndpointDef } from '@chat/platform';
import type { PresenceNotifier } from './presence.notifier';
import type { PresenceRepository } from './presence.repository';

const StatusMap = idRecord(BlockStatusSchema);
const HIDDEN: Presence = { isOnline: false, lastSeenAt: null };

/**
 * The presence subjects. Replies: connect `{ wentOnline }`, disconnect
 * `{ wentOffline, lastSeenAt }`, heartbeat `{ refreshed }` (how many of the
 * listed connections still existed), query / query-for `{ <userId>: Presence }`.
 */
export function presenceEndpoints(s: Subjects, repo: PresenceRepository, notifier: PresenceNotifier, bus: BusClient): EndpointDef[] {
  return [
    endpoint(s.presence.connect, PresenceConnectRequest, async (req, ctx) => {
      const wentOnline = await repo.connect(req, Date.now());
      if (wentOnline) notifier.online(req.userId, ctx.requestId);
      return { wentOnline };
    }),
    endpoint(s.presence.disconnect, PresenceDisconnectRequest, async (req, ctx) => {
      const result = await repo.disconnect(req, Date.now());
      if (result.wentOffline) notifier.offline(req.userId, result.lastSeenAt, ctx.requestId);
      return result;
    }),
    endpoint(s.presence.heartbeat, PresenceHeartbeatRequest, async (req) => ({ refreshed: await repo.heartbeat(req.connections, Date.now()) })),
    endpoint(s.presence.query, PresenceQueryRequest, (req) => repo.query(req.userIds, Date.now())),
    endpoint(s.presence.queryFor, PresenceQueryForRequest, async (req, ctx) => {
      const ids = [...new Set(req.userIds)];
      const [presence, blocks] = await Promise.all([
        repo.query(ids, Date.now()),
        bus.request(s.blocks.statusMany, { userId: req.actor, otherIds: ids }, StatusMap, { requestId: ctx.requestId, idempotent: true, hedge: true }),
      ]);
      const out = idMap<Presence>();
      for (const id of ids) {
        const b = blocks[id];
        out[id] = b && (b.blockedByMe || b.blockedByThem) ? HIDDEN : (presence[id] ?? HIDDEN);
      }
      return out;
    }),
  ];
}
