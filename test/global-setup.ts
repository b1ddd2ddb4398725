import { existsSync } from 'node:fs';
import { buildWeb, webBuildIsStale, WEB_ENTRY } from '../scripts/web-build';

/**
 * The browser tests load the web chat the gateway serves from
 * packages/web/dist: build it once per run when any of its sources is newer
 * than the build (a clean clone has none), so no test runs stale pages.
 * A failed build fails the browser tests (they find no build), not the rest.
 */
export default async function setup(): Promise<void> {
  if (!existsSync(WEB_ENTRY) || !webBuildIsStale()) return;
  try {
    await buildWeb();
  } catch (err) {
    process.stderr.write(`global setup: the web chat did not build: ${(err as Error).message}\n`);
  }
}
