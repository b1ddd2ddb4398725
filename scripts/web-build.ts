import { existsSync, readdirSync, statSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
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

/**
 * Builds the web chat with Vite (a dev dependency: absent from a production
 * install), in a child process: a build sets NODE_ENV=production in the
 * process that runs it, and every process started after it (the services
 * under `npm start`, the test workers) would inherit that.
 */
export async function buildWeb(outDir = WEB_DIST): Promise<void> {
  const require = createRequire(join(WEB, 'package.json'));
  const vite = join(dirname(require.resolve('vite/package.json')), 'bin/vite.js');
  const child = spawn(process.execPath, [vite, 'build', '--logLevel', 'warn', '--outDir', outDir, '--emptyOutDir'], { cwd: WEB, stdio: ['ignore', 'inherit', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += String(d)));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', resolve);
  });
  if (code !== 0) throw new Error(`vite build exited with ${code}: ${stderr.trim().split('\n').slice(-5).join(' | ')}`);
}

function newest(path: string): number {
  if (!existsSync(path)) return 0;
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  return Math.max(st.mtimeMs, ...readdirSync(path).map((name) => newest(join(path, name))));
}
