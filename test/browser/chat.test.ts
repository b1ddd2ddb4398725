import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { createLogger, DEV_JWT_SECRET, userIdFor } from '@chat/platform';
import { startGateway } from '@chat/gateway';
import { useStack } from '../helpers/stack';
import { launchChromium, messagesWithText, messageTexts, openChat, openUser, sendText, type ChatUser } from '../helpers/browser';

/**
 * The web chat in a real browser (Debian's Chromium through playwright-core)
 * against the real system: two browser contexts are two people. Each test
 * takes its own pair of seeded users, so no test sees another's messages.
 */
const ctx = useStack({ JWT_SECRET: DEV_JWT_SECRET });
let browser: Browser;
const users: ChatUser[] = [];
let restarted: Awaited<ReturnType<typeof startGateway>> | undefined;

beforeAll(async () => {
  browser = await launchChromium();
});
afterAll(async () => {
  for (const u of users) await u.context.close().catch(() => undefined);
  await browser?.close();
  await restarted?.stop();
});

async function pair(a: string, b: string): Promise<[ChatUser, ChatUser]> {
  const [ua, ub] = await Promise.all([openUser(browser, ctx.stack.baseUrl, a), openUser(browser, ctx.stack.baseUrl, b)]);
  users.push(ua, ub);
  return [ua, ub];
}

async function tokenOf(username: string): Promise<string> {
  const res = await ctx.api.call('POST', '/dev/token', { body: { username } });
  expect(res.status).toBe(200);
  return res.body.data.token as string;
}

const POLL = { timeout: 10_000 };

/** `SCREENSHOTS=docs/screenshots npx vitest run test/browser` refreshes the pictures in the docs. */
const SHOTS = process.env.SCREENSHOTS;
async function shot(user: ChatUser, name: string): Promise<void> {
  if (SHOTS) await user.page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

describe('the web chat in Chromium, two users', () => {
  it('sends and receives: the list shows the unread badge and the last message, the pane the text', async () => {
    const [alice, bob] = await pair('alice', 'bob');
    await openChat(alice, 'bob');
    await sendText(alice, 'Hello Bob 👋');
    await expect.poll(() => messagesWithText(alice, 'Hello Bob 👋').getAttribute('data-state'), POLL).toBe('sent');

    const item = bob.page.locator('[data-testid="conversation-item"][data-username="alice"]');
    await expect.poll(() => item.getByTestId('unread-badge').textContent(), POLL).toBe('1');
    await expect.poll(() => item.getByTestId('last-message').textContent(), POLL).toContain('Hello Bob 👋');
    await openChat(bob, 'alice');
    await expect.poll(() => messageTexts(bob), POLL).toEqual(['Hello Bob 👋']);
    await sendText(bob, 'Hi Alice!');
    await expect.poll(() => messageTexts(alice), POLL).toEqual(['Hello Bob 👋', 'Hi Alice!']);
    await expect.poll(() => item.getByTestId('unread-badge').count(), POLL).toBe(0);
    await sendText(alice, 'Are we still on for lunch tomorrow?\nThe new place by the station.');
    await expect.poll(() => messageTexts(bob), POLL).toHaveLength(3);
    await shot(alice, 'chat-alice');
    await shot(bob, 'chat-bob');
    expect([...alice.errors, ...bob.errors]).toEqual([]);
  });

  it('is usable on a phone-sized screen: the list and the pane are screens of their own', async () => {
    const phone = { width: 390, height: 844 };
    const [heidi, ivan] = await Promise.all([openUser(browser, ctx.stack.baseUrl, 'heidi', phone), openUser(browser, ctx.stack.baseUrl, 'ivan', phone)]);
    users.push(heidi, ivan);
    if (SHOTS) {
      const fresh = await browser.newContext({ baseURL: ctx.stack.baseUrl, viewport: { width: 1100, height: 760 } });
      const page = await fresh.newPage();
      await page.goto('/');
      await page.getByTestId('signin-user-alice').waitFor();
      await page.screenshot({ path: join(SHOTS, 'sign-in.png') });
      await fresh.close();
    }
    await openChat(heidi, 'ivan');
    expect(await heidi.page.getByTestId('back').isVisible()).toBe(true);
    await sendText(heidi, 'Sent from a phone');
    const item = ivan.page.locator('[data-testid="conversation-item"][data-username="heidi"]');
    await expect.poll(() => item.getByTestId('unread-badge').textContent(), POLL).toBe('1');
    await shot(ivan, 'list-phone');
    await item.click();
    await expect.poll(() => messageTexts(ivan), POLL).toEqual(['Sent from a phone']);
    // Nothing is wider than the screen, and the controls are big enough to tap.
    expect(await ivan.page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(phone.width);
    const send = await ivan.page.getByTestId('composer-send').boundingBox();
    expect(send!.height).toBeGreaterThanOrEqual(40);
    expect(await item.isVisible()).toBe(false); // the pane has the whole screen
    await shot(ivan, 'conversation-phone');
    await ivan.page.getByTestId('back').click();
    await expect.poll(() => item.isVisible(), POLL).toBe(true);
  });

  it('read receipts: the sender sees "Read" once the receiver opens the conversation', async () => {
    const [carol, dave] = await pair('carol', 'dave');
    await openChat(carol, 'dave');
    await sendText(carol, 'did you read this?');
    await expect.poll(() => messagesWithText(carol, 'did you read this?').getAttribute('data-state'), POLL).toBe('sent');
    expect(await carol.page.getByTestId('read-receipt').count()).toBe(0);
    await openChat(dave, 'carol');
    await expect.poll(() => messagesWithText(carol, 'did you read this?').getByTestId('read-receipt').count(), POLL).toBe(1);
  });

  it('the typing indicator shows while the other user types and goes when they stop', async () => {
    const [erin, frank] = await pair('erin', 'frank');
    await openChat(erin, 'frank');
    await sendText(erin, 'say something');
    await openChat(frank, 'erin');
    await frank.page.getByTestId('composer-input').pressSequentially('typing…', { delay: 20 });
    await expect.poll(() => erin.page.getByTestId('typing-indicator').count(), POLL).toBe(1);
    await expect.poll(() => erin.page.getByTestId('typing-indicator').textContent()).toMatch(/typing/i);
    await sendText(frank, 'done typing');
    await expect.poll(() => erin.page.getByTestId('typing-indicator').count(), POLL).toBe(0);
    await expect.poll(() => messageTexts(erin), POLL).toEqual(['say something', 'done typing']);
  });

  it('block: sending is refused while blocked, and goes through after unblocking (retry)', async () => {
    const [grace, heidi] = await pair('grace', 'heidi');
    await openChat(grace, 'heidi');
    await sendText(grace, 'first');
    await openChat(heidi, 'grace');
    await expect.poll(() => messageTexts(heidi), POLL).toEqual(['first']);

    await heidi.page.getByTestId('block-toggle').click();
    await expect.poll(() => heidi.page.getByTestId('block-toggle').textContent(), POLL).toMatch(/unblock/i);
    await expect.poll(() => heidi.page.getByTestId('blocked-notice').count(), POLL).toBe(1);

    await sendText(grace, 'while blocked');
    const refused = messagesWithText(grace, 'while blocked');
    await expect.poll(() => refused.getAttribute('data-state'), POLL).toBe('failed');
    expect(await refused.getAttribute('data-error-code')).toBe('BLOCKED');

    await heidi.page.getByTestId('block-toggle').click();
    await expect.poll(() => heidi.page.getByTestId('block-toggle').textContent(), POLL).toMatch(/^block$/i);
    await refused.getByTestId('retry-send').click();
    await expect.poll(() => refused.getAttribute('data-state'), POLL).toBe('sent');
    await expect.poll(() => messageTexts(heidi), POLL).toEqual(['first', 'while blocked']);
  });

  it('scrolls up through 300 messages with no gap and no repeat', async () => {
    const [, judy] = await pair('ivan', 'judy');
    const token = await tokenOf('ivan');
    const conv = (await ctx.api.get('/conversations/with/judy', token)).body.data.id as string;
    for (let i = 1; i <= 300; i++) {
      const res = await ctx.api.post(`/conversations/${conv}/messages`, token, { content: `m${String(i).padStart(3, '0')}`, clientMessageId: `scroll-${i}` });
      expect(res.status).toBe(201);
    }
    await judy.page.reload();
    await openChat(judy, 'ivan');
    const list = judy.page.getByTestId('message-list');
    await expect.poll(() => messageTexts(judy), POLL).toContain('m300');
    for (let round = 0; round < 40; round++) {
      const texts = await messageTexts(judy);
      if (texts[0] === 'm001') break;
      await list.evaluate((el) => el.scrollTo({ top: 0 }));
      await expect.poll(async () => (await messageTexts(judy)).length, { timeout: 5000 }).toBeGreaterThan(texts.length).catch(() => undefined);
    }
    const expected = Array.from({ length: 300 }, (_, i) => `m${String(i + 1).padStart(3, '0')}`);
    expect(await messageTexts(judy)).toEqual(expected);
  });

  it('a gateway restart mid-conversation: the banner shows and clears, both sides’ messages arrive once', async () => {
    const [alice, carol] = await pair('alice', 'carol');
    await openChat(alice, 'carol');
    await sendText(alice, 'before the restart');
    await openChat(carol, 'alice');
    await expect.poll(() => messageTexts(carol), POLL).toEqual(['before the restart']);

    const port = ctx.stack.gateway.port;
    await ctx.stack.gateway.stop();
    await expect.poll(() => alice.page.getByTestId('connection-banner').isVisible(), POLL).toBe(true);
    await expect.poll(() => carol.page.getByTestId('connection-banner').isVisible(), POLL).toBe(true);
    await sendText(alice, 'from alice while down');
    await sendText(carol, 'from carol while down');
    expect(await messagesWithText(alice, 'from alice while down').getAttribute('data-state')).toBe('pending');

    restarted = await startGateway({ ...ctx.stack.config, PORT: port }, createLogger('gateway', 'silent'));
    for (const u of [alice, carol]) {
      await expect.poll(() => u.page.getByTestId('connection-banner').isVisible(), { timeout: 30_000 }).toBe(false);
      await expect
        .poll(async () => (await messageTexts(u)).sort(), POLL)
        .toEqual(['before the restart', 'from alice while down', 'from carol while down'].sort());
    }
    await expect.poll(() => messagesWithText(alice, 'from alice while down').getAttribute('data-state'), POLL).toBe('sent');
    // Stored once each, whatever the resends.
    const stored = (await ctx.api.get(`/conversations/${await alice.page.evaluate(() => location.pathname.split('/').pop())}/messages`, await tokenOf('alice'))).body.data;
    expect(stored.map((m: { content: string }) => m.content).sort()).toEqual(['before the restart', 'from alice while down', 'from carol while down'].sort());
  }, 90_000);

  it('offline and back: the banner says so, sends wait, and both sides catch up at once when the network returns', async () => {
    const [frank, judy] = await pair('frank', 'judy');
    await openChat(frank, 'judy');
    await sendText(frank, 'are you there?');
    await openChat(judy, 'frank');
    await expect.poll(() => messageTexts(judy), POLL).toEqual(['are you there?']);

    await judy.context.setOffline(true);
    await expect.poll(() => judy.page.getByTestId('connection-banner').textContent(), POLL).toMatch(/offline/i);
    await sendText(frank, 'hello?');
    await sendText(frank, 'hello??');
    await sendText(judy, 'sorry, on the train');
    await expect.poll(() => messagesWithText(judy, 'sorry, on the train').getAttribute('data-state'), POLL).toBe('pending');
    await judy.page.waitForTimeout(300);
    expect(await messageTexts(frank)).toEqual(['are you there?', 'hello?', 'hello??']);

    await judy.context.setOffline(false);
    await expect.poll(() => judy.page.getByTestId('connection-banner').isVisible(), POLL).toBe(false);
    const all = ['are you there?', 'hello?', 'hello??', 'sorry, on the train'];
    await expect.poll(() => messageTexts(judy), POLL).toEqual(all);
    await expect.poll(() => messageTexts(frank), POLL).toEqual(all);
  });

  it('back after the events were pruned: the page reloads over REST and says so', async () => {
    const [heidi, judy] = await pair('heidi', 'judy');
    await openChat(heidi, 'judy');
    await sendText(heidi, 'before');
    await openChat(judy, 'heidi');
    await expect.poll(() => messageTexts(judy), POLL).toEqual(['before']);

    await judy.context.setOffline(true);
    await expect.poll(() => judy.page.getByTestId('connection-banner').isVisible(), POLL).toBe(true);
    await sendText(heidi, 'while you were away');
    await expect.poll(() => messagesWithText(heidi, 'while you were away').getAttribute('data-state'), POLL).toBe('sent');
    // As if judy had been away past the retention: her log no longer holds what she missed.
    const db = new pg.Client({ connectionString: ctx.stack.config.DATABASE_URL });
    await db.connect();
    try {
      const judyId = userIdFor('judy');
      const { rows } = await db.query('SELECT max(seq)::int AS latest FROM messages.user_events WHERE user_id = $1', [judyId]);
      await db.query('UPDATE messages.user_seqs SET pruned_through = $2 WHERE user_id = $1', [judyId, rows[0].latest]);
      await db.query('DELETE FROM messages.user_events WHERE user_id = $1', [judyId]);
    } finally {
      await db.end();
    }
    await judy.context.setOffline(false);
    await expect.poll(() => judy.page.getByTestId('resync-notice').isVisible(), POLL).toBe(true);
    await expect.poll(() => messageTexts(judy), POLL).toEqual(['before', 'while you were away']);
  });

  it('message text is shown literally: markup is never run', async () => {
    const [bob, dave] = await pair('bob', 'dave');
    const probe = '<img src=x onerror=alert(1)> <script>alert(2)</script> **bold**';
    await openChat(bob, 'dave');
    await sendText(bob, probe);
    await openChat(dave, 'bob');
    await expect.poll(() => messageTexts(dave), POLL).toEqual([probe]);
    expect(await dave.page.locator('[data-testid="message-list"] img').count()).toBe(0);
    expect(await dave.page.locator('[data-testid="message-list"] script').count()).toBe(0);
    await dave.page.waitForTimeout(300);
    expect([...bob.dialogs, ...dave.dialogs]).toEqual([]);
  });

  it('a send still pending when the page reloads is sent after the reload, once', async () => {
    const [erin, grace] = await pair('erin', 'grace');
    await openChat(erin, 'grace');
    await sendText(erin, 'hello grace');
    await openChat(grace, 'erin');
    await expect.poll(() => messageTexts(grace), POLL).toEqual(['hello grace']);

    // The socket loses every send frame: the message stays pending (and queued in localStorage).
    let dropSends = true;
    await erin.page.routeWebSocket(/\/api\/chat\/ws/, (ws) => {
      const server = ws.connectToServer();
      ws.onMessage((message) => {
        if (dropSends && String(message).includes('"message.send"')) return;
        server.send(message);
      });
    });
    await erin.page.reload(); // the route applies to sockets opened after it
    await openChat(erin, 'grace');
    await sendText(erin, 'sent across a reload');
    const pending = messagesWithText(erin, 'sent across a reload');
    await expect.poll(() => pending.getAttribute('data-state'), POLL).toBe('pending');
    await erin.page.waitForTimeout(300);
    expect(await messageTexts(grace)).toEqual(['hello grace']);

    dropSends = false;
    await erin.page.reload();
    await openChat(erin, 'grace');
    await expect.poll(() => messageTexts(grace), POLL).toEqual(['hello grace', 'sent across a reload']);
    await expect.poll(() => messagesWithText(erin, 'sent across a reload').getAttribute('data-state'), POLL).toBe('sent');
    expect(await messagesWithText(erin, 'sent across a reload').count()).toBe(1);
    expect(userIdFor('erin')).toBeTruthy();
  });
});
