import { z } from 'zod';
import { ChatError, ConversationSchema, MessageSchema, UserSchema, subjects } from '@chat/contracts';
import { BusClient, connectNats, createLogger, loadConfig } from '@chat/platform';
import { SEED_MESSAGES, SEED_USERNAMES, displayNameFor, userIdFor } from './seed-data';

/**
 * npm run seed: 10 users, a conversation for each of their 45 pairs and 1000
 * messages, written through the running services (so every event, counter
 * and projection is what real traffic would make). Idempotent: users are
 * upserted, conversations are get-or-create, and every message carries a
 * fixed clientMessageId.
 */
async function main() {
  const config = loadConfig();
  const log = createLogger('seed', 'warn');
  const nc = await connectNats(config, 'seed', log);
  const s = subjects(config.NATS_PREFIX);
  const bus = new BusClient(nc, 10_000);
  try {
    for (const username of SEED_USERNAMES) {
      await bus.request(
        s.conversations.upsertUser,
        { id: userIdFor(username), username, displayName: displayNameFor(username), avatarUrl: null },
        UserSchema,
      );
    }
    const pairs: Array<{ a: string; b: string; conversationId: string }> = [];
    for (let i = 0; i < SEED_USERNAMES.length; i++) {
      for (let j = i + 1; j < SEED_USERNAMES.length; j++) {
        const a = SEED_USERNAMES[i]!;
        const b = SEED_USERNAMES[j]!;
        const r = await bus.request(
          s.conversations.getOrCreate,
          { actor: userIdFor(a), username: b },
          z.object({ conversation: ConversationSchema, created: z.boolean() }),
        );
        pairs.push({ a, b, conversationId: r.conversation.id });
      }
    }
    let created = 0;
    const Sent = z.object({ message: MessageSchema, created: z.boolean() });
    // Each conversation's messages go in order; conversations proceed side by side.
    await Promise.all(
      pairs.map(async (pair, p) => {
        for (let n = p; n < SEED_MESSAGES; n += pairs.length) {
          const sender = n % 2 === 0 ? pair.a : pair.b;
          const other = sender === pair.a ? pair.b : pair.a;
          const r = await bus.request(
            s.messages.send,
            {
              actor: userIdFor(sender),
              conversationId: pair.conversationId,
              content: `Seed message ${n + 1} from ${displayNameFor(sender)} to ${displayNameFor(other)}`,
              clientMessageId: `seed-${n + 1}`,
            },
            Sent,
          );
          if (r.created) created++;
        }
      }),
    );
    process.stdout.write(
      `seed: ${SEED_USERNAMES.length} users, ${pairs.length} conversations, ${SEED_MESSAGES} messages (${created} new). ` +
        `Try: npm run token -- alice\n`,
    );
  } finally {
    await nc.drain();
  }
}

main().catch((err: unknown) => {
  if (err instanceof ChatError && err.code === 'SERVICE_UNAVAILABLE')
    process.stderr.write(`seed: the services do not answer on NATS (${(err.details as { subject?: string })?.subject ?? ''}). Start the system first: npm start\n`);
  else process.stderr.write(`seed: ${(err as Error).message}\n`);
  process.exit(1);
});
