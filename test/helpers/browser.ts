import { existsSync } from 'node:fs';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { expect } from 'vitest';

/** Debian's Chromium: browser tests never download a browser. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/**
 * Headless Chromium with the flags this machine needs: as root it needs
 * --no-sandbox, and on a closed network the background services would only
 * fail to reach Google's hosts.
 */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM))
    throw new Error(`browser tests need Chromium at ${CHROMIUM}: install it with \`apt-get install -y chromium\` (or set CHROMIUM_PATH)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
}

/** One user in one browser context (its own storage, as a second person's browser is). */
export interface ChatUser {
  context: BrowserContext;
  page: Page;
  username: string;
  dialogs: string[];
  errors: string[];
}

export async function openUser(browser: Browser, baseURL: string, username: string, viewport = { width: 1100, height: 760 }): Promise<ChatUser> {
  const context = await browser.newContext({ baseURL, viewport });
  const page = await context.newPage();
  const user: ChatUser = { context, page, username, dialogs: [], errors: [] };
  // Any dialog is a script the page should never have run (the XSS probe): record it and close it.
  page.on('dialog', (d) => {
    user.dialogs.push(d.message());
    void d.dismiss();
  });
  page.on('pageerror', (e) => user.errors.push(e.message));
  await signIn(user);
  return user;
}

export async function signIn(user: ChatUser): Promise<void> {
  await user.page.goto('/');
  await user.page.getByTestId(`signin-user-${user.username}`).click();
  await expect.poll(() => user.page.getByTestId('me').textContent()).toContain(user.username);
}

/** Opens the conversation with `username` from the list, or through the new-chat box. */
export async function openChat(user: ChatUser, username: string): Promise<void> {
  const { page } = user;
  const item = page.locator(`[data-testid="conversation-item"][data-username="${username}"]`);
  if ((await item.count()) > 0) await item.first().click();
  else {
    await page.getByTestId('new-chat-input').fill(username);
    await page.getByTestId('new-chat-submit').click();
  }
  await page.getByTestId('composer-input').waitFor();
  await expect.poll(() => page.locator('[data-testid="conversation-header"]').textContent().catch(() => '')).toMatch(new RegExp(username, 'i'));
}

export async function sendText(user: ChatUser, text: string): Promise<void> {
  const input = user.page.getByTestId('composer-input');
  await input.fill(text);
  await input.press('Enter');
}

/** The texts of the open conversation's messages, top to bottom. */
export function messageTexts(user: ChatUser): Promise<string[]> {
  return user.page.locator('[data-testid="message-list"] [data-testid="message-content"]').allTextContents();
}

/** The messages of the open conversation with this exact text. */
export const messagesWithText = (user: ChatUser, text: string) =>
  user.page.locator('[data-testid="message-list"] [data-testid="message"]').filter({
    has: user.page.getByTestId('message-content').getByText(text, { exact: true }),
  });
