import { z } from 'zod';
import type { Registry } from 'prom-client';
import { BlockStatusPairsReply, GetUsersReply, usersById, idRecord, MessageCreatedEvent, MessageDeletedEvent, PresenceSchema, subjects, type Subjects } from '@chat/contracts';
import { newId, PoisonEventError, runConsumer, type BatchResults, type BusClient, type Logger, type NatsConnection, type Queryable } from '@chat/platform';
import { Decision, type NotificationMetrics } from './notification-metrics';
import { NotificationsRepository, type NotificationPayload } from './notifications.repository';
import { PreferencesRepository } from './preferences.repository';

const PresenceMap = idRecord(PresenceSchema);
const PREVIEW_CODE_POINTS = 100;
/**
 * Deliveries for an event failing with an unknown error (a reply that does
 * not add up, a bug): redelivered with a delay growing to 30 s, 64 deliveries
 * span about the default give-up window (30 min), past which the event counts
 * as stale anyway; runConsumer then parks it on the dead-letter stream.
 * Presence, blocks or PostgreSQL not answering is transient and never counts
 * against this: runConsumer retries such an event until they are back, so an
 * outage loses no notification (one past the window is decided stale then).
 */
const MAX_DELIVER = 64;
/**
 * Events decided together. presence.query, conversations.get-users and
 * blocks.status-pairs each take at most 200 ids (or pairs), so a batch of
 * this size needs exactly one request of each, whatever it holds.
 */
const BATCH = 200;

/** SQLSTATE class 22: PostgreSQL refuses a value itself; the same notification would be refused forever. */
const isDataException = (err: unknown) => typeof (err as { code?: unknown })?.code === 'string' && (err as { code: string }).code.startsWith('22');
const toError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)));

export interface NotifierOptions {
  /** An event about a message older than this makes no notification (see decide). */
  staleAfterMs: number;
  /** Called after a notification is stored, to wake the delivery worker. */
  onStored: () => void;
}

/** What became of one event: a decision, or the error that leaves it undecided (it is redelivered). */
export type Outcome = Decision | Error;

/** An event still being decided: its receiver and when its message was sent. */
interface Candidate {
  index: number;
  event: MessageCreatedEvent;
  receiverId: string;
  sentAt: number;
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

  /**
   * Decides a batch of events together: one preferences query, one
   * blocks.status-pairs, one presence.query, one users lookup and one insert,
   * whatever the batch holds. Returns each event's outcome, in order.
   */
  async handleBatch(events: readonly MessageCreatedEvent[]): Promise<Outcome[]> {
    const outcomes = await this.decide(events);
    outcomes.forEach((o, i) => {
      if (o instanceof Error) return;
      this.metrics.decisions.inc({ decision: o });
      this.log.debug({ conversationId: events[i]!.conversationId, messageId: events[i]!.message.id, decision: o }, 'message.created handled');
    });
    return outcomes;
  }

  /**
   * Every condition of SPEC section 7 must hold for each event. A bus call
   * that fails leaves every event that needed it undecided, so they are
   * redelivered: no notification is ever made on a guess about presence or
   * blocks. Events decided before that call keep their decision.
   */
  private async decide(events: readonly MessageCreatedEvent[]): Promise<Outcome[]> {
    // Every event is decided below; one that somehow was not is redelivered rather than acked.
    const undecided = new Error('event left undecided');
    const out: Outcome[] = events.map(() => undecided);
    let open: Candidate[] = [];
    events.forEach((event, index) => {
      const { message } = event;
      const receiverId = event.unread.find((u) => u.userId !== message.senderId)?.userId;
      const sentAt = Date.parse(message.createdAt);
      if (receiverId === undefined) out[index] = Decision.noReceiver;
      // A new durable consumer starts at the head of the stream (7 days); a late
      // replay of old messages must not flood receivers with notifications.
      else if (Date.now() - sentAt > this.opts.staleAfterMs) out[index] = Decision.stale;
      else open.push({ index, event, receiverId, sentAt });
    });
    const fail = (list: Candidate[], err: unknown) => {
      const error = toError(err);
      for (const c of list) out[c.index] = error;
    };
    if (open.length === 0) return out;

    try {
      const prefs = await this.prefs.getMany(open.map((c) => c.receiverId));
      open = open.filter((c) => {
        const p = prefs.get(c.receiverId)!;
        if (!p.enabled) out[c.index] = Decision.disabled;
        else if (p.mutedConversationIds.includes(c.event.conversationId)) out[c.index] = Decision.muted;
        else return true;
        return false;
      });
    } catch (err) {
      fail(open, err);
      return out;
    }
    if (open.length === 0) return out;

    const pairKey = (c: Candidate) => JSON.stringify([c.receiverId, c.event.message.senderId]);
    const pairs = new Map<string, { userId: string; otherId: string }>();
    for (const c of open) pairs.set(pairKey(c), { userId: c.receiverId, otherId: c.event.message.senderId });
    let blocked: Map<string, boolean>;
    let presence: z.output<typeof PresenceMap>;
    try {
      const [statuses, seen] = await Promise.all([
        this.bus.request(this.s.blocks.statusPairs, { pairs: [...pairs.values()] }, BlockStatusPairsReply, { idempotent: true, hedge: true }),
        this.bus.request(this.s.presence.query, { userIds: [...new Set(open.map((c) => c.receiverId))] }, PresenceMap, { idempotent: true, hedge: true }),
      ]);
      if (statuses.length !== pairs.size) throw new Error(`blocks.status-pairs answered ${statuses.length} statuses for ${pairs.size} pairs`);
      blocked = new Map([...pairs.keys()].map((k, n) => [k, statuses[n]!.blockedByMe || statuses[n]!.blockedByThem]));
      presence = seen;
    } catch (err) {
      fail(open, err);
      return out;
    }

    const toStore: Candidate[] = [];
    for (const c of open) {
      const seen = presence[c.receiverId];
      if (blocked.get(pairKey(c))) out[c.index] = Decision.blocked;
      else if (!seen) out[c.index] = new Error('presence.query answered without the receiver');
      // Online now, or seen since the message was sent (the event came late or
      // again): either way they were online after it arrived and their client
      // got it, and SPEC forbids notifying a receiver online at its arrival.
      else if (seen.isOnline || (seen.lastSeenAt !== null && Date.parse(seen.lastSeenAt) >= c.sentAt)) out[c.index] = Decision.online;
      else toStore.push(c);
    }
    if (toStore.length > 0) await this.store(toStore, out, fail);
    return out;
  }

  /** Messages deleted for everyone: their notifications not yet delivered are not delivered, and none keeps a preview. */
  async withdraw(messageIds: readonly string[]): Promise<void> {
    const withdrawn = await this.notifications.withdraw(messageIds);
    if (withdrawn > 0) this.log.info({ withdrawn, messages: messageIds.length }, 'notifications of deleted messages withdrawn');
  }

  /** Stores the notifications, once per (message, receiver), and wakes the delivery worker. */
  private async store(list: Candidate[], out: Outcome[], fail: (list: Candidate[], err: unknown) => void): Promise<void> {
    let senders: Map<string, string>;
    try {
      const users = await usersById(
        (ids) => this.bus.request(this.s.conversations.getUsers, { ids }, GetUsersReply, { idempotent: true, hedge: true }),
        list.map((c) => c.event.message.senderId),
      );
      senders = new Map([...users.values()].map((u) => [u.id, u.username]));
    } catch (err) {
      fail(list, err);
      return;
    }
    const made: Array<{ candidate: Candidate; payload: NotificationPayload }> = [];
    for (const c of list) {
      const { message, conversationId } = c.event;
      const senderUsername = senders.get(message.senderId);
      if (senderUsername === undefined) {
        out[c.index] = new Error('the sender is not in the users directory');
        continue;
      }
      const payload: NotificationPayload = {
        type: 'chat.message',
        notificationId: newId(),
        receiverId: c.receiverId,
        senderId: message.senderId,
        senderUsername,
        conversationId,
        messageId: message.id,
        preview: previewOf(message.content),
        createdAt: new Date().toISOString(),
      };
      made.push({ candidate: c, payload });
    }
    if (made.length === 0) return;

    let stored: Set<string>;
    const refused = new Map<number, Error>();
    try {
      stored = await this.notifications.insertMany(made.map((m) => m.payload));
    } catch (err) {
      if (!isDataException(err)) {
        fail(made.map((m) => m.candidate), err);
        return;
      }
      // One value PostgreSQL refuses must not hold back the rest: each goes alone, the refused one is dead-lettered.
      stored = new Set();
      for (const { candidate, payload } of made) {
        try {
          if (await this.notifications.insert(payload)) stored.add(payload.notificationId);
        } catch (one) {
          refused.set(candidate.index, isDataException(one) ? new PoisonEventError(`PostgreSQL refuses the notification: ${(one as Error).message}`) : toError(one));
        }
      }
    }
    for (const { candidate, payload } of made) {
      const error = refused.get(candidate.index);
      if (error) {
        out[candidate.index] = error;
        continue;
      }
      if (!stored.has(payload.notificationId)) {
        out[candidate.index] = Decision.duplicate;
        continue;
      }
      out[candidate.index] = Decision.stored;
      this.log.info({ userId: payload.receiverId, conversationId: payload.conversationId, messageId: payload.messageId, notificationId: payload.notificationId }, 'notification stored');
    }
    if (stored.size > 0) this.opts.onStored();
  }
}

/** The durable consumer `notifications` on `<prefix>.events.message.created`, deciding up to BATCH events at a time. */
export function startNotificationConsumer(nc: NatsConnection, prefix: string, notifier: MessageNotifier, log: Logger, registry?: Registry, replicas?: number) {
  const s = subjects(prefix).events;
  return runConsumer(nc, {
    prefix,
    durable: 'notifications',
    // All message events, in stream order: a message.deleted is then handled after its message.created.
    filterSubject: s.messageEvents,
    maxDeliver: MAX_DELIVER,
    maxBatch: BATCH,
    // A push notification tolerates 100 ms more; a batch of many costs what a batch of one does.
    lingerMs: 100,
    log,
    registry,
    replicas,
    service: 'notifications',
    handleBatch: async (events): Promise<BatchResults> => {
      const results: Array<Error | undefined> = events.map(() => undefined);
      const valid: Array<{ index: number; event: MessageCreatedEvent }> = [];
      const deleted: Array<{ index: number; messageId: string }> = [];
      events.forEach(({ subject, data }, index) => {
        const base = s.messageEventBase(subject);
        if (base === s.messageDeleted) {
          const event = MessageDeletedEvent.safeParse(data);
          if (!event.success) results[index] = new PoisonEventError(`${subject} does not match its contract`);
          else deleted.push({ index, messageId: event.data.messageId });
          return;
        }
        if (base !== s.messageCreated) return;
        const event = MessageCreatedEvent.safeParse(data);
        // It will never parse: dead-letter it now rather than redeliver it for half an hour.
        if (!event.success) results[index] = new PoisonEventError(`${subject} does not match its contract`);
        else valid.push({ index, event: event.data });
      });
      if (valid.length > 0) {
        const outcomes = await notifier.handleBatch(valid.map((v) => v.event));
        valid.forEach(({ index }, n) => {
          const o = outcomes[n];
          if (o instanceof Error) results[index] = o;
        });
      }
      // After the batch's sends are decided, so a message sent and deleted within one batch is withdrawn too.
      if (deleted.length > 0) {
        try {
          await notifier.withdraw(deleted.map((d) => d.messageId));
        } catch (err) {
          for (const { index } of deleted) results[index] = toError(err);
        }
      }
      return results;
    },
  });
}
