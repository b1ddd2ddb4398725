import { ApplyBlockRequest, DeleteMessageRequest, EditMessageRequest, ReactRequest, EventsRequest, GetMessageRequest, ListMessagesRequest, ReadMessagesRequest, SearchMessagesRequest, SendMessageRequest, TypingRequest, UnreadCountRequest, type Subjects } from '@chat/contracts';
import { endpoint, type EndpointDef } from '@chat/platform';
import type { MessagesService } from './messages.service';
import type { EventLog } from './event-log';

export function messageEndpoints(s: Subjects['messages'], service: MessagesService, log: EventLog): EndpointDef[] {
  return [
    endpoint(s.send, SendMessageRequest, (req, ctx) => service.send(req, ctx)),
    endpoint(s.read, ReadMessagesRequest, (req, ctx) => service.read(req.actor, req.conversationId, req.messageId, ctx)),
    endpoint(s.edit, EditMessageRequest, (req, ctx) => service.changes.edit(req, ctx)),
    endpoint(s.delete, DeleteMessageRequest, (req, ctx) => service.changes.delete(req, ctx)),
    endpoint(s.react, ReactRequest, (req, ctx) => service.changes.react(req, ctx)),
    endpoint(s.list, ListMessagesRequest, (req, ctx) => service.list(req.actor, req.conversationId, req.cursor, req.limit, ctx)),
    endpoint(s.get, GetMessageRequest, (req) => service.get(req.actor, req.messageId)),
    endpoint(s.search, SearchMessagesRequest, (req) => service.search(req)),
    endpoint(s.unreadCount, UnreadCountRequest, (req) => service.unreadCount(req.actor)),
    endpoint(s.events, EventsRequest, (req) => log.after(req.actor, req.since, req.limit)),
    endpoint(s.typing, TypingRequest, (req, ctx) => service.typing(req.actor, req.conversationId, req.isTyping, ctx)),
    endpoint(s.applyBlock, ApplyBlockRequest, (req) => service.applyBlock(req)),
  ];
}
