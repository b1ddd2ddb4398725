import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildWeb } from '../scripts/web-build';

/** The web chat's build as the gateway serves it: files only, fit for a CSP without 'unsafe-inline'. */
describe('the web chat build', () => {
  const out = mkdtempSync(join(tmpdir(), 'chat-web-'));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('builds in a child process (the caller keeps its NODE_ENV) into files the page CSP allows', async () => {
    const before = process.env.NODE_ENV;
    await buildWeb(out);
    // A build in-process sets NODE_ENV=production, which `npm start`'s services then inherited and refused the dev secret.
    expect(process.env.NODE_ENV).toBe(before);

    const html = readFileSync(join(out, 'index.html'), 'utf8');
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    expect(scripts.length).toBeGreaterThan(0);
    for (const [, attrs, body] of scripts) {
      expect(attrs).toMatch(/\bsrc="\/assets\/[^"]+\.js"/);
      expect(body!.trim()).toBe('');
    }
    expect(html).not.toMatch(/<style\b/);
    expect(html).not.toMatch(/\sstyle=/);
    expect(html).not.toMatch(/\son[a-z]+=/i); // no inline event handlers
    expect(html).not.toMatch(/https?:\/\//); // nothing from another origin: no CDN, no external font
    expect(html).toMatch(/<meta name="viewport"/);
    expect(readdirSync(join(out, 'assets')).some((f) => f.endsWith('.css'))).toBe(true);
  });
});
