import { z } from 'zod';
import type { Registry } from 'prom-client';
import { BlockStatusSchema, idRecord, MessageCreatedEvent, PresenceSchema, UserSchema, subjects, type Subjects } from '@chat/contracts';
import { newId, PoisonEventError, runConsumer, type BusClient, type Logger, type NatsConnection, type Queryable } from '@chat/platform';
import { Decision, type NotificationMetrics } from './notification-metrics';
import { NotificationsRepository, type NotificationPayload } from './notifications.repository';
import { PreferencesRepository } from './preferences.repository';

const PresenceMap = idRecord(PresenceSchema);
const Users = z.array(UserSchema);
const PREVIEW_CODE_POINTS = 100;
/**
 * A failing event (presence or blocks not answering) is redelivered with a
 * delay growing to 30 s; 64 deliveries span about the default give-up window
 * (30 min), past which the event counts as stale anyway; runConsumer then
 * parks it on the dead-letter stream.
 */
const MAX_DELIVER = 64;

export interface NotifierOptions {
  /** An event about a message older than this makes no notification (see decide). */
  staleAfterMs: number;
  /** Called after a notification is stored, to wake the delivery worker. */
  onStored: () => void;
}

/** The first `n` characters, counted in code points as message content is, so no surrogate pair is cut in half. */
export const previewOf = (content: string, n = PREVIEW_CODE_POINTS): string => Array.from(content).slice(0, n).join('');

/**
 * Turns each message.created event into at most one notification for its
 * receiver. Safe to replay: the (message, receiver) key makes a repeat a no-op.
 */
export class MessageNotifier {
  private readonly prefs: PreferencesRepository;
  private readonly notifications: NotificationsRepository;

  constructor(
    db: Queryable,
    private readonly bus: BusClient,
    private readonly s: Subjects,
    private readonly metrics: NotificationMetrics,
    private readonly log: Logger,
    private readonly opts: NotifierOptions,
  ) {
    this.prefs = new PreferencesRepository(db);
    this.notifications = new NotificationsRepository(db);
  }

  async handle(event: MessageCreatedEvent): Promise<Decision> {
    const decision = await this.decide(event);
    this.metrics.decisions.inc({ decision });
    this.log.debug({ conversationId: event.conversationId, messageId: event.message.id, decision }, 'message.created handled');
    return decision;
  }

  /**
   * Every condition of SPEC section 7 must hold. A bus call that fails
   * throws, so the event is redelivered: no notification is ever made on a
   * guess about presence or blocks.
   */
  private async decide(event: MessageCreatedEvent): Promise<Decision> {
    const { message, conversationId } = event;
    const receiverId = event.unread.find((u) => u.userId !== message.senderId)?.userId;
    if (receiverId === undefined) return Decision.noReceiver;
    const sentAt = Date.parse(message.createdAt);
    // A new durable consumer starts at the head of the stream (7 days); a late
    // replay of old messages must not flood receivers with notifications.
    if (Date.now() - sentAt > this.opts.staleAfterMs) return Decision.stale;

    const prefs = await this.prefs.get(receiverId);
    if (!prefs.enabled) return Decision.disabled;
    if (prefs.mutedConversationIds.includes(conversationId)) return Decision.muted;

    const [block, presence] = await Promise.all([
      this.bus.request(this.s.blocks.status, { userId: receiverId, otherId: message.senderId }, BlockStatusSchema),
      this.bus.request(this.s.presence.query, { userIds: [receiverId] }, PresenceMap),
    ]);
    if (block.blockedByMe || block.blockedByThem) return Decision.blocked;
    const seen = presence[receiverId];
    if (!seen) throw new Error('presence.query answered without the receiver');
    // Online now, or seen since the message was sent (the event came late or
    // again): either way they were online after it arrived and their client
    // got it, and SPEC forbids notifying a receiver online at its arrival.
    if (seen.isOnline || (seen.lastSeenAt !== null && Date.parse(seen.lastSeenAt) >= sentAt)) return Decision.online;
    return this.store(event, receiverId);
  }

  /** Stores the notification once per (message, receiver) and wakes the delivery worker. */
  private async store({ message, conversationId }: MessageCreatedEvent, receiverId: string): Promise<Decision> {
    const [sender] = await this.bus.request(this.s.conversations.getUsers, { ids: [message.senderId] }, Users);
    if (!sender) throw new Error('the sender is not in the users directory');
    const payload: NotificationPayload = {
      type: 'chat.message',
      notificationId: newId(),
      receiverId,
      senderId: message.senderId,
      senderUsername: sender.username,
      conversationId,
      messageId: message.id,
      preview: previewOf(message.content),
      createdAt: new Date().toISOString(),
    };
    if (!(await this.notifications.insert(payload))) return Decision.duplicate;
    this.log.info({ userId: receiverId, conversationId, messageId: message.id, notificationId: payload.notificationId }, 'notification stored');
    this.opts.onStored();
    return Decision.stored;
  }
}

/** The durable consumer `notifications` on `<prefix>.events.message.created`. */
export function startNotificationConsumer(nc: NatsConnection, prefix: string, notifier: MessageNotifier, log: Logger, registry?: Registry, replicas?: number) {
  return runConsumer(nc, {
    prefix,
    durable: 'notifications',
    filterSubject: subjects(prefix).events.messageCreated,
    maxDeliver: MAX_DELIVER,
    log,
    registry,
    replicas,
    service: 'notifications',
    handle: async (subject, data) => {
      const event = MessageCreatedEvent.safeParse(data);
      // It will never parse: dead-letter it now rather than redeliver it for half an hour.
      if (!event.success) throw new PoisonEventError(`${subject} does not match its contract`);
      await notifier.handle(event.data);
    },
  });
}
