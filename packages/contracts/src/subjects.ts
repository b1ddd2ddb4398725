import { z } from './zod';

/** A NATS subject token: what NATS_PREFIX may be. */
export const PrefixSchema = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,32}$/, 'must be 1-32 of [A-Za-z0-9_-] (one NATS subject token)');

export const ServiceName = {
  conversations: 'conversations',
  messages: 'messages',
  blocks: 'blocks',
  presence: 'presence',
  notifications: 'notifications',
} as const;
export type ServiceName = (typeof ServiceName)[keyof typeof ServiceName];

/**
 * Every subject on the bus, built in one place from the prefix.
 * Request/reply: `<prefix>.<service>.<verb>`. Domain events: `<prefix>.events.<type>`.
 */
export function subjects(prefix: string) {
  const rr = (service: ServiceName, verb: string) => `${prefix}.${service}.${verb}`;
  return {
    conversations: {
      list: rr('conversations', 'list'),
      get: rr('conversations', 'get'),
      getOrCreate: rr('conversations', 'get-or-create'),
      participants: rr('conversations', 'participants'),
      contacts: rr('conversations', 'contacts'),
      upsertUser: rr('conversations', 'upsert-user'),
      findUser: rr('conversations', 'find-user'),
      getUsers: rr('conversations', 'get-users'),
      applySnapshot: rr('conversations', 'apply-snapshot'),
    },
    messages: {
      list: rr('messages', 'list'),
      get: rr('messages', 'get'),
      send: rr('messages', 'send'),
      read: rr('messages', 'read'),
      edit: rr('messages', 'edit'),
      delete: rr('messages', 'delete'),
      react: rr('messages', 'react'),
      search: rr('messages', 'search'),
      unreadCount: rr('messages', 'unread-count'),
      events: rr('messages', 'events'),
      typing: rr('messages', 'typing'),
      applyBlock: rr('messages', 'apply-block'),
    },
    blocks: {
      create: rr('blocks', 'create'),
      remove: rr('blocks', 'remove'),
      list: rr('blocks', 'list'),
      status: rr('blocks', 'status'),
      statusByUsername: rr('blocks', 'status-by-username'),
      statusMany: rr('blocks', 'status-many'),
      statusPairs: rr('blocks', 'status-pairs'),
      replicaPage: rr('blocks', 'replica-page'),
    },
    presence: {
      query: rr('presence', 'query'),
      queryFor: rr('presence', 'query-for'),
      connect: rr('presence', 'connect'),
      disconnect: rr('presence', 'disconnect'),
      heartbeat: rr('presence', 'heartbeat'),
    },
    notifications: {
      getPreferences: rr('notifications', 'get-preferences'),
      putPreferences: rr('notifications', 'put-preferences'),
    },
    /** Core-NATS subject a gateway subscribes to while it holds a connection of that user. */
    deliver: (userId: string) => `${prefix}.deliver.${Buffer.from(userId, 'utf8').toString('base64url')}`,
    events: {
      all: `${prefix}.events.>`,
      messageEvents: `${prefix}.events.message.>`,
      messageCreated: `${prefix}.events.message.created`,
      messageRead: `${prefix}.events.message.read`,
      messageUpdated: `${prefix}.events.message.updated`,
      messageDeleted: `${prefix}.events.message.deleted`,
      messageReactions: `${prefix}.events.message.reactions`,
      conversationCreated: `${prefix}.events.conversation.created`,
      blockEvents: `${prefix}.events.block.>`,
      /**
       * Message events go out as `<type>.<id>`, the id of the message whose
       * content they carry (their lastMessage; `none` when there is none or
       * it is a tombstone). Deleting a message erases every stored copy of
       * its content from the stream by subject (contentOf), without knowing
       * where each landed, and leaves the delete's own event alone.
       */
      messageEvent: (type: string, lastMessage: { id: string; deletedAt?: string | null } | null | undefined) =>
        `${type}.${lastMessage && !lastMessage.deletedAt ? lastMessage.id : 'none'}`,
      contentOf: (messageId: string) => `${prefix}.events.message.*.${messageId}`,
      /** A message event's subject without its message token (`<prefix>.events.message.<kind>`): the prefix is one token. */
      messageEventBase: (subject: string) => subject.split('.', 4).join('.'),
      /** Events a consumer gave up on (poison, or failing past MaxDeliver), by consumer: stream `<PREFIX>_DEAD`. */
      deadLetter: (consumer: string) => `${prefix}.dead.${consumer}`,
      deadLetterAll: `${prefix}.dead.>`,
    },
  } as const;
}
export type Subjects = ReturnType<typeof subjects>;

/** JetStream stream and durable names may not contain dots. */
export const eventStreamName = (prefix: string) => `${prefix.toUpperCase()}_EVENTS`;

/** Name under which a service registers with the NATS services API (`$SRV.PING.<name>`). */
export const microServiceName = (prefix: string, service: ServiceName) => `${prefix}-${service}`;
