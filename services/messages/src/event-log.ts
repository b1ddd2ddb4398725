import { ChatError, type EventsReply, type Subjects } from '@chat/contracts';
import { countFitting, injectTrace, replyBudget, type Database, type Logger, type NatsConnection } from '@chat/platform';
import { EventsRepository, type UserEvent } from './events.repository';

const PRUNE_EVERY_MS = 60 * 60 * 1000;

/**
 * Reads the per-user event log (resume and GET /events) and hands committed
 * events to the gateways on each user's delivery subject. Delivery is core
 * NATS, at most once: a gateway that sees a gap in seq, or a client that
 * reconnects, reads the missing events from here, so nothing is lost.
 */
export class EventLog {
  private readonly repo: EventsRepository;
  private pruneTimer: NodeJS.Timeout | undefined;

  constructor(
    db: Database,
    private readonly nc: NatsConnection,
    private readonly subjects: Subjects,
    private readonly retentionDays: number,
    private readonly log: Logger,
  ) {
    this.repo = new EventsRepository(db);
  }

  async after(userId: string, since: number, limit: number): Promise<EventsReply> {
    const { lastSeq, prunedThrough } = await this.repo.state(userId);
    if (since < prunedThrough) throw new ChatError('RESYNC_REQUIRED', 'events after this seq are past the retention: reload over REST');
    if (limit === 0 || since >= lastSeq) return { events: [], latestSeq: lastSeq, hasMore: false };
    const rows = await this.repo.after(userId, since, limit + 1);
    // A page of large messages could outgrow a NATS message, and a client could then never resume.
    const page = rows.slice(0, limit);
    const events = page.slice(0, countFitting(page, replyBudget(this.nc)));
    return { events, latestSeq: lastSeq, hasMore: rows.length > events.length };
  }

  publish(events: readonly UserEvent[]): void {
    for (const e of events) {
      try {
        // The trace context rides along: the recipient's socket write joins the sender's trace.
        this.nc.publish(this.subjects.deliver(e.userId), JSON.stringify({ seq: e.seq, type: e.type, payload: e.payload }), { headers: injectTrace() });
      } catch (err) {
        // The event is committed; the recipient's gateway or its next resume reads it from the log.
        this.log.warn({ err: (err as Error).message, userId: e.userId, seq: e.seq }, 'delivery publish failed');
      }
    }
  }

  startPruning(): void {
    const prune = () => {
      this.repo
        .prune(this.retentionDays)
        .then((n) => n > 0 && this.log.info({ removed: n }, 'pruned user events past retention'))
        .catch((err: unknown) => this.log.warn({ err }, 'pruning user events failed'));
    };
    prune();
    this.pruneTimer = setInterval(prune, PRUNE_EVERY_MS);
    this.pruneTimer.unref();
  }

  stop(): void {
    clearInterval(this.pruneTimer);
  }
}
