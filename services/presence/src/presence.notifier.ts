import { BlockStatusSchema, ContactsReply, idRecord, EphemeralEventType, type EphemeralEvent, type Subjects } from '@chat/contracts';
import { injectTrace, replyBudget, type BusClient, type Logger, type NatsConnection } from '@chat/platform';
import { z } from 'zod';
import pLimit from 'p-limit';

const StatusMap = idRecord(BlockStatusSchema);
/** `blocks.status-many` takes at most this many ids per request. */
const STATUS_BATCH = 200;
/** What one id adds to a `blocks.status-many` reply besides itself: `,"<id>":{"blockedByMe":false,"blockedByThem":false,"canMessage":true}` is 64. */
const STATUS_ENTRY_BYTES = 70;
/**
 * Users whose contacts are being told at once. A gateway restart or a sweep
 * can make thousands of users go on- or offline together; each costs a
 * contacts lookup and block checks, and all at once they would time out.
 */
const CONCURRENCY = 32;

/**
 * Tells a user's contacts (everyone who shares a conversation with them, less
 * anyone in a block with them either way) that the user came online or went
 * offline: one core-NATS publish per contact on `<prefix>.deliver.<contact>`,
 * which the gateway holding that contact's sockets forwards as is.
 *
 * Runs in the background: the connect/disconnect or sweep that caused it never
 * waits for it and never fails because of it (a failure is logged). The events
 * of one user are sent in the order this replica decided them.
 */
export class PresenceNotifier {
  private readonly queues = new Map<string, Promise<void>>();
  private readonly limit = pLimit(CONCURRENCY);

  constructor(
    private readonly nc: NatsConnection,
    private readonly bus: BusClient,
    private readonly subjects: Subjects,
    private readonly log: Logger,
  ) {}

  online(userId: string, requestId?: string): void {
    this.enqueue(userId, { type: EphemeralEventType.userOnline, payload: { userId } }, requestId);
  }

  offline(userId: string, lastSeenAt: string | null, requestId?: string): void {
    this.enqueue(userId, { type: EphemeralEventType.userOffline, payload: { userId, lastSeenAt } }, requestId);
  }

  /** Resolves once every event decided so far has been sent (or given up); for shutdown. */
  async idle(): Promise<void> {
    while (this.queues.size > 0) await Promise.all(this.queues.values());
  }

  private enqueue(userId: string, event: EphemeralEvent, requestId: string | undefined): void {
    const previous = this.queues.get(userId) ?? Promise.resolve();
    const next = previous
      .then(() => this.limit(() => this.send(userId, event, requestId)))
      .catch((err: unknown) => {
        this.log.warn({ err: (err as Error).message, userId, type: event.type, requestId }, 'presence: could not notify contacts');
      });
    this.queues.set(userId, next);
    void next.then(() => {
      if (this.queues.get(userId) === next) this.queues.delete(userId);
    });
  }

  private async send(userId: string, event: EphemeralEvent, requestId: string | undefined): Promise<void> {
    const data = JSON.stringify(event);
    // Contacts come a page at a time (a user may have more than one reply holds); each page is told before the next is read.
    let after: string | undefined;
    do {
      const page = await this.bus.request(this.subjects.conversations.contacts, { userId, ...(after === undefined ? {} : { after }) }, ContactsReply, { requestId, idempotent: true, hedge: true });
      const recipients = await this.unblocked(userId, [...new Set(page.userIds)], requestId);
      for (const contactId of recipients) this.nc.publish(this.subjects.deliver(contactId), data, { headers: injectTrace() });
      after = page.next ?? undefined;
    } while (after !== undefined);
  }

  /** The contacts not in a block with `userId`, either way. */
  private async unblocked(userId: string, contacts: string[], requestId: string | undefined): Promise<string[]> {
    // Each reply must fit NATS too: long ids make fewer per request.
    const budget = replyBudget(this.nc);
    const batches: string[][] = [];
    let batch: string[] = [];
    let bytes = 0;
    for (const id of contacts) {
      const size = Buffer.byteLength(JSON.stringify(id)) + STATUS_ENTRY_BYTES;
      if (batch.length > 0 && (batch.length >= STATUS_BATCH || bytes + size > budget)) {
        batches.push(batch);
        batch = [];
        bytes = 0;
      }
      batch.push(id);
      bytes += size;
    }
    if (batch.length > 0) batches.push(batch);
    const statuses = await Promise.all(
      batches.map((otherIds) => this.bus.request(this.subjects.blocks.statusMany, { userId, otherIds }, StatusMap, { requestId, idempotent: true, hedge: true })),
    );
    const status = Object.assign({}, ...statuses) as z.infer<typeof StatusMap>;
    return contacts.filter((id) => {
      const s = status[id];
      return s !== undefined && !s.blockedByMe && !s.blockedByThem;
    });
  }
}
