import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { DEV_JWT_SECRET } from '@chat/platform';
import { useStack } from '../helpers/stack';
import { launchChromium, messagesWithText, messageTexts, openChat, openUser, sendText, type ChatUser } from '../helpers/browser';

/**
 * SPEC 10 in the web chat, in Chromium against the real system, two
 * browser contexts being two people: editing, deleting for everyone,
 * reactions, search, and changes made while the other person was offline.
 * Each test takes its own pair of seeded users, so no test sees another's
 * messages.
 */
const ctx = useStack({ JWT_SECRET: DEV_JWT_SECRET });
let browser: Browser;
const users: ChatUser[] = [];

beforeAll(async () => {
  browser = await launchChromium();
});
afterAll(async () => {
  for (const u of users) await u.context.close().catch(() => undefined);
  await browser?.close();
});

async function pair(a: string, b: string): Promise<[ChatUser, ChatUser]> {
  const [ua, ub] = await Promise.all([openUser(browser, ctx.stack.baseUrl, a), openUser(browser, ctx.stack.baseUrl, b)]);
  users.push(ua, ub);
  return [ua, ub];
}

const POLL = { timeout: 10_000 };

async function sent(user: ChatUser, text: string): Promise<void> {
  await sendText(user, text);
  await expect.poll(() => messagesWithText(user, text).getAttribute('data-state'), POLL).toBe('sent');
}

/**
 * The message with this text, found by its id: a locator by text would lose
 * the row while its editor replaces the text, or once it is deleted.
 */
async function rowOf(user: ChatUser, text: string) {
  const id = await messagesWithText(user, text).getAttribute('data-message-id');
  expect(id).toBeTruthy();
  return user.page.locator(`[data-testid="message-list"] [data-testid="message"][data-message-id="${id}"]`);
}

async function tokenOf(username: string): Promise<string> {
  const res = await ctx.api.call('POST', '/dev/token', { body: { username } });
  expect(res.status).toBe(200);
  return res.body.data.token as string;
}

/** A seeded user becomes known to chat with their first authenticated request (SPEC 3), without a browser of their own. */
async function known(username: string): Promise<void> {
  expect((await ctx.api.get('/conversations', await tokenOf(username))).status).toBe(200);
}

/** Edits one of the user's messages through the inline editor: Edit, new text, Enter. */
async function edit(user: ChatUser, text: string, next: string): Promise<void> {
  const row = await rowOf(user, text);
  await row.getByRole('button', { name: 'Edit message' }).click();
  const input = row.getByRole('textbox', { name: 'Edit message' });
  await input.fill(next);
  await input.press('Enter');
}

/** Deletes one of the user's messages for everyone: Delete, then the confirmation. */
async function remove(user: ChatUser, text: string): Promise<void> {
  const row = await rowOf(user, text);
  await row.getByRole('button', { name: 'Delete message' }).click();
  await row.getByRole('group', { name: /delete this message for everyone/i }).getByRole('button', { name: 'Delete', exact: true }).click();
}

/** Everything the page shows or holds in its markup: a deleted text must be in neither. */
const pageText = (user: ChatUser) => user.page.evaluate(() => `${document.body.innerText}\n${document.documentElement.outerHTML}`);
const tombstones = (user: ChatUser) => user.page.locator('[data-testid="message-list"] [data-testid="message"][data-deleted="true"]');
const lastMessageIn = (user: ChatUser, username: string) =>
  user.page.locator(`[data-testid="conversation-item"][data-username="${username}"]`).getByTestId('last-message');

describe('changing messages in the web chat, two users', () => {
  it('Alice edits a message and deletes another; Bob sees the new text marked edited, and a placeholder where the other was', async () => {
    const [alice, bob] = await pair('alice', 'bob');
    await openChat(alice, 'bob');
    await sent(alice, 'see you at 5pm');
    await sent(alice, 'this was meant for someone else');
    await openChat(bob, 'alice');
    await expect.poll(() => messageTexts(bob), POLL).toEqual(['see you at 5pm', 'this was meant for someone else']);

    // Esc leaves the message as it was.
    const second = await rowOf(alice, 'this was meant for someone else');
    await second.getByRole('button', { name: 'Edit message' }).click();
    await second.getByRole('textbox', { name: 'Edit message' }).fill('never saved');
    await second.getByRole('textbox', { name: 'Edit message' }).press('Escape');
    await expect.poll(() => alice.page.getByRole('textbox', { name: 'Edit message' }).count(), POLL).toBe(0);
    expect(await messageTexts(alice)).toEqual(['see you at 5pm', 'this was meant for someone else']);
    expect(await second.getAttribute('data-edited')).toBe('false');

    await edit(alice, 'see you at 5pm', 'see you at 6pm');
    await expect.poll(() => messageTexts(alice), POLL).toEqual(['see you at 6pm', 'this was meant for someone else']);
    await expect.poll(() => messageTexts(bob), POLL).toEqual(['see you at 6pm', 'this was meant for someone else']);
    await expect.poll(() => messagesWithText(bob, 'see you at 6pm').getByTestId('edited-mark').textContent(), POLL).toBe('edited');
    expect(await messagesWithText(alice, 'see you at 6pm').getAttribute('data-edited')).toBe('true');
    expect(await bob.page.getByTestId('edited-mark').count()).toBe(1);
    // Bob cannot change Alice's message.
    expect(await messagesWithText(bob, 'see you at 6pm').getByRole('button', { name: 'Edit message' }).count()).toBe(0);
    expect(await messagesWithText(bob, 'see you at 6pm').getByRole('button', { name: 'Delete message' }).count()).toBe(0);

    await remove(alice, 'this was meant for someone else');
    await expect.poll(() => messageTexts(bob), POLL).toEqual(['see you at 6pm']);
    await expect.poll(() => tombstones(bob).count(), POLL).toBe(1);
    expect(await tombstones(bob).getByTestId('message-deleted').textContent()).toMatch(/message deleted/i);
    await expect.poll(() => tombstones(alice).count(), POLL).toBe(1);
    // The deleted text is nowhere on Bob's page: not in the pane, not in the conversation list, not in the markup.
    await expect.poll(() => lastMessageIn(bob, 'alice').textContent(), POLL).toMatch(/message deleted/i);
    expect(await pageText(bob)).not.toContain('meant for someone else');
    expect(await pageText(alice)).not.toContain('meant for someone else');
    expect([...alice.errors, ...bob.errors]).toEqual([]);
  });

  it('Bob reacts and Alice sees it; a click on a reaction adds or takes back your own', async () => {
    const [carol, dave] = await pair('carol', 'dave');
    await openChat(carol, 'dave');
    await sent(carol, 'lunch at noon?');
    await openChat(dave, 'carol');
    await expect.poll(() => messageTexts(dave), POLL).toEqual(['lunch at noon?']);

    const onDave = messagesWithText(dave, 'lunch at noon?');
    await onDave.getByRole('button', { name: 'Add reaction' }).click();
    await onDave.getByRole('group', { name: 'Pick a reaction' }).getByRole('button', { name: 'React with 👍' }).click();
    const daveChip = onDave.locator('[data-testid="reaction"][data-emoji="👍"]');
    await expect.poll(() => daveChip.getAttribute('aria-pressed'), POLL).toBe('true');

    const onCarol = messagesWithText(carol, 'lunch at noon?');
    const carolChip = onCarol.locator('[data-testid="reaction"][data-emoji="👍"]');
    await expect.poll(() => carolChip.textContent(), POLL).toBe('👍1');
    expect(await carolChip.getAttribute('aria-pressed')).toBe('false');

    // Carol adds hers by clicking the chip: two, hers highlighted on her side only.
    await carolChip.click();
    await expect.poll(() => carolChip.getAttribute('aria-pressed'), POLL).toBe('true');
    await expect.poll(() => daveChip.textContent(), POLL).toBe('👍2');
    await expect.poll(() => carolChip.textContent(), POLL).toBe('👍2');

    // Dave takes his back.
    await daveChip.click();
    await expect.poll(() => carolChip.textContent(), POLL).toBe('👍1');
    await expect.poll(() => daveChip.getAttribute('aria-pressed'), POLL).toBe('false');
    expect([...carol.errors, ...dave.errors]).toEqual([]);
  });

  it('a refusal is shown in plain words: too late to edit', async () => {
    const [judy, alice] = await pair('judy', 'alice');
    await openChat(judy, 'alice');
    await sent(judy, 'written a day ago');
    const row = await rowOf(judy, 'written a day ago');
    const id = await row.getAttribute('data-message-id');
    // As if it were sent a day ago: past the edit window the server judges by.
    const db = new pg.Client({ connectionString: ctx.stack.config.DATABASE_URL });
    await db.connect();
    try {
      await db.query(`UPDATE messages.messages SET created_at = created_at - interval '1 day' WHERE id = $1`, [id]);
    } finally {
      await db.end();
    }
    await edit(judy, 'written a day ago', 'rewritten');
    const problem = row.getByRole('alert');
    await expect.poll(() => problem.getAttribute('data-error-code'), POLL).toBe('EDIT_WINDOW_PASSED');
    expect(await problem.textContent()).toMatch(/too late to edit/i);
    expect(await messageTexts(judy)).toEqual(['written a day ago']);
    expect(await row.getAttribute('data-edited')).toBe('false');
    await openChat(alice, 'judy');
    await expect.poll(() => messageTexts(alice), POLL).toEqual(['written a day ago']);
  });

  it('search: words find a message in any conversation; the result opens its conversation', async () => {
    const [erin, frank] = await pair('erin', 'frank');
    await known('grace');
    await openChat(erin, 'frank');
    await sent(erin, 'Meet me at the Café Zürich at noon');
    await sent(erin, 'or somewhere else');
    await openChat(erin, 'grace');
    await sent(erin, 'nothing to find here');
    await openChat(frank, 'erin');
    await expect.poll(() => messageTexts(frank), POLL).toEqual(['Meet me at the Café Zürich at noon', 'or somewhere else']);

    await erin.page.getByRole('searchbox', { name: 'Search messages' }).fill('cafe zur');
    const results = erin.page.getByTestId('search-result');
    await expect.poll(() => results.count(), POLL).toBe(1);
    const hit = results.first();
    expect(await hit.getAttribute('data-username')).toBe('frank');
    expect(await hit.getByTestId('search-snippet').textContent()).toContain('Meet me at the Café Zürich at noon');
    expect(await hit.locator('mark').allTextContents()).toEqual(['Café', 'Zür']);
    expect(await hit.locator('time').textContent()).not.toBe('');
    await hit.click();
    await expect.poll(() => erin.page.getByTestId('conversation-header').textContent(), POLL).toMatch(/frank/i);
    await expect.poll(() => messageTexts(erin), POLL).toContain('Meet me at the Café Zürich at noon');

    // Frank finds it too; once deleted, it leaves his results.
    await frank.page.getByRole('searchbox', { name: 'Search messages' }).fill('zurich');
    await expect.poll(() => frank.page.getByTestId('search-result').count(), POLL).toBe(1);
    await remove(erin, 'Meet me at the Café Zürich at noon');
    await expect.poll(() => frank.page.getByTestId('search-result').count(), POLL).toBe(0);
    expect(await pageText(frank)).not.toContain('Café Zürich at noon');
    await erin.page.getByRole('searchbox', { name: 'Search messages' }).fill('nowhere to be found');
    await expect.poll(() => erin.page.getByTestId('search-status').textContent(), POLL).toMatch(/no messages match/i);
    // Clearing the box brings the conversation list back.
    await erin.page.getByRole('searchbox', { name: 'Search messages' }).press('Escape');
    await expect.poll(() => erin.page.getByTestId('conversation-item').count(), POLL).toBe(2);
  });

  it('back from offline: an edit and a delete made meanwhile show at once, from the resumed events, without reloading the messages', async () => {
    const [heidi, ivan] = await pair('heidi', 'ivan');
    await openChat(heidi, 'ivan');
    await sent(heidi, 'first draft');
    await sent(heidi, 'oops, wrong chat');
    await sent(heidi, 'unchanged');
    await openChat(ivan, 'heidi');
    await expect.poll(() => messageTexts(ivan), POLL).toEqual(['first draft', 'oops, wrong chat', 'unchanged']);

    await ivan.context.setOffline(true);
    await expect.poll(() => ivan.page.getByTestId('connection-banner').textContent(), POLL).toMatch(/offline/i);
    // From here, any read of a message list by Ivan's page would be a reload of history.
    const historyReads: string[] = [];
    ivan.page.on('request', (r) => {
      if (r.method() === 'GET' && /\/api\/chat\/conversations\/[^/]+\/messages/.test(r.url())) historyReads.push(r.url());
    });
    await edit(heidi, 'first draft', 'final draft');
    await remove(heidi, 'oops, wrong chat');
    await expect.poll(() => messageTexts(heidi), POLL).toEqual(['final draft', 'unchanged']);
    await ivan.page.waitForTimeout(300);
    expect(await messageTexts(ivan)).toEqual(['first draft', 'oops, wrong chat', 'unchanged']); // offline: nothing yet

    await ivan.context.setOffline(false);
    await expect.poll(() => ivan.page.getByTestId('connection-banner').isVisible(), POLL).toBe(false);
    await expect.poll(() => messageTexts(ivan), POLL).toEqual(['final draft', 'unchanged']);
    expect(await messagesWithText(ivan, 'final draft').getAttribute('data-edited')).toBe('true');
    expect(await tombstones(ivan).count()).toBe(1);
    expect(await pageText(ivan)).not.toContain('wrong chat');
    expect(await ivan.page.getByTestId('resync-notice').count()).toBe(0);
    expect(historyReads).toEqual([]);
    expect([...heidi.errors, ...ivan.errors]).toEqual([]);
  });
});
