import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The whole system (test/helpers/stack.ts's `startStack`) in a child Node
 * process, for test files that run in the jsdom environment: there Vite
 * transforms modules for the browser, which turns the services'
 * `new URL(path, import.meta.url)` file paths into http://localhost URLs, so
 * the stack cannot start in the test's own process.
 *
 * Run as a script, this file starts the stack, prints `{"baseUrl": …}` on one
 * line, and stops it on SIGTERM or when its parent goes (stdin closes).
 */
const SELF = fileURLToPath(import.meta.url);
const ROOT = resolve(dirname(SELF), '../../..');

export interface StackProcess {
  readonly baseUrl: string;
  stop(): Promise<void>;
}

export async function startStackProcess(overrides: Record<string, unknown> = {}): Promise<StackProcess> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', SELF, JSON.stringify(overrides)], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const lines = createInterface({ input: child.stdout! });
  const baseUrl = await new Promise<string>((resolve, reject) => {
    lines.on('line', (line) => {
      try {
        const parsed = JSON.parse(line) as { baseUrl?: string };
        if (parsed.baseUrl) resolve(parsed.baseUrl);
      } catch {
        /* a log line */
      }
    });
    child.once('exit', (code) => reject(new Error(`the stack process exited (${code}) before it was ready`)));
  });
  return {
    baseUrl,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

if (process.argv[1] === SELF) {
  const { startStack } = await import('../../../test/helpers/stack');
  const stack = await startStack(JSON.parse(process.argv[2] ?? '{}'));
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await stack.stop().catch((err: unknown) => process.stderr.write(`stack stop: ${String(err)}\n`));
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.stdin.on('end', () => void stop());
  process.stdin.resume();
  process.stdout.write(`${JSON.stringify({ baseUrl: stack.baseUrl })}\n`);
}
