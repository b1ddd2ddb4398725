import { BlockByUsernameRequest, BlockReplicaPageRequest, BlockStatusManyRequest, BlockStatusPairsRequest, BlockStatusRequest, ListBlocksRequest, type Subjects } from '@chat/contracts';
import { endpoint, type EndpointDef } from '@chat/platform';
import type { BlocksService } from './blocks.service';

export function blockEndpoints(s: Subjects['blocks'], service: BlocksService): EndpointDef[] {
  return [
    endpoint(s.create, BlockByUsernameRequest, (req, ctx) => service.block(req.actor, req.username, ctx)),
    endpoint(s.remove, BlockByUsernameRequest, (req, ctx) => service.unblock(req.actor, req.username, ctx)),
    endpoint(s.list, ListBlocksRequest, (req, ctx) => service.list(req.actor, req.cursor, req.limit, ctx)),
    endpoint(s.status, BlockStatusRequest, (req) => service.status(req.userId, req.otherId)),
    endpoint(s.statusByUsername, BlockByUsernameRequest, (req, ctx) => service.statusByUsername(req.actor, req.username, ctx)),
    endpoint(s.statusMany, BlockStatusManyRequest, (req) => service.statusMany(req.userId, req.otherIds)),
    endpoint(s.statusPairs, BlockStatusPairsRequest, (req) => service.statusPairs(req.pairs)),
    endpoint(s.replicaPage, BlockReplicaPageRequest, (req) => service.replicaPage(req.after, req.limit)),
  ];
}
