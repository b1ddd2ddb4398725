import { GetMessageRequest, ListMessagesRequest, ReadMessagesRequest, SendMessageRequest, UnreadCountRequest, type Subjects } from '@chat/contracts';
import { endpoint, type EndpointDef } from '@chat/platform';
import type { MessagesService } from './messages.service';

export function messageEndpoints(s: Subjects['messages'], service: MessagesService): EndpointDef[] {
  return [
    endpoint(s.send, SendMessageRequest, (req, ctx) => service.send(req, ctx)),
    endpoint(s.read, ReadMessagesRequest, (req, ctx) => service.read(req.actor, req.conversationId, req.messageId, ctx)),
    endpoint(s.list, ListMessagesRequest, (req, ctx) => service.list(req.actor, req.conversationId, req.cursor, req.limit, ctx)),
    endpoint(s.get, GetMessageRequest, (req) => service.get(req.actor, req.messageId)),
    endpoint(s.unreadCount, UnreadCountRequest, (req) => service.unreadCount(req.actor)),
  ];
}
