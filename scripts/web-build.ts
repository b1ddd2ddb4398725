import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const WEB = join(ROOT, 'packages/web');
/** The web app's page: without it there is nothing to build. */
export const WEB_ENTRY = join(WEB, 'index.html');
/** What the gateway serves (WEB_DIR's default). */
export const WEB_DIST = join(WEB, 'dist');
const SOURCES = ['packages/web/src', 'packages/web/index.html', 'packages/web/vite.config.ts', 'packages/web/public', 'packages/client/src'];

/** True when packages/web/dist is missing or older than any of its sources. */
export function webBuildIsStale(): boolean {
  const built = join(WEB_DIST, 'index.html');
  const builtAt = existsSync(built) ? statSync(built).mtimeMs : 0;
  return SOURCES.some((s) => newest(join(ROOT, s)) > builtAt);
}

/** Builds the web chat with Vite (a dev dependency: absent from a production install). */
export async function buildWeb(): Promise<void> {
  const { build } = await import('vite');
  await build({ root: WEB, configFile: join(WEB, 'vite.config.ts'), logLevel: 'warn', mode: 'production' });
}

function newest(path: string): number {
  if (!existsSync(path)) return 0;
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  return Math.max(st.mtimeMs, ...readdirSync(path).map((name) => newest(join(path, name))));
}
