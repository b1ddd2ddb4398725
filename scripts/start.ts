import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { checkBackingServers, describeFailure, ensureDatabase, loadConfig, type Config } from '@chat/platform';
import { buildWeb, webBuildIsStale } from './web-build';

/**
 * npm start: checks PostgreSQL, NATS and Redis, creates the database, then
 * runs every service as its own process (each migrates its own schema as it
 * starts), with its name before each log line. Ctrl-C or SIGTERM stops them
 * all; a service that dies stops the rest, so the system never half-runs.
 */
const SERVICES = ['conversations', 'messages', 'blocks', 'presence', 'notifications', 'gateway'] as const;
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const STOP_GRACE_MS = 20_000;
const width = Math.max(...SERVICES.map((s) => s.length));
const pretty = process.stdout.isTTY ? await loadPretty() : undefined;

async function loadPretty(): Promise<((line: string) => string) | undefined> {
  try {
    const { prettyFactory } = await import('pino-pretty');
    const format = prettyFactory({ colorize: true, ignore: 'pid,hostname,service', translateTime: 'HH:MM:ss.l' });
    return (line) => {
      try {
        return format(JSON.parse(line)).trimEnd();
      } catch {
        return line;
      }
    };
  } catch {
    return undefined;
  }
}

function fail(line: string): never {
  process.stderr.write(`start: ${line}\n`);
  process.exit(1);
}

let config: Config;
try {
  config = loadConfig();
} catch (err) {
  fail((err as Error).message);
}

const failures = await checkBackingServers(config);
if (failures.length > 0) {
  for (const f of failures) process.stderr.write(`start: ${describeFailure(f)}\n`);
  process.exit(1);
}
try {
  if (await ensureDatabase(config.DATABASE_URL)) process.stdout.write(`start: created database ${new URL(config.DATABASE_URL).pathname.slice(1)}\n`);
} catch (err) {
  fail(`could not create the database: ${(err as Error).message}`);
}

// The web chat the gateway serves at /: built on the first start and after a
// change to its sources, so `npm install && npm start` is all it takes.
if (webBuildIsStale()) {
  process.stdout.write('start: building the web chat (packages/web)\n');
  try {
    await buildWeb();
  } catch (err) {
    // The API does not need it: say so and go on.
    process.stderr.write(`start: the web chat did not build, / will say so (${(err as Error).message.split('\n')[0]}); try \`npm run build\`\n`);
  }
}

const children = new Map<string, ChildProcess>();
let stopping = false;

function pipeLines(name: string, stream: NodeJS.ReadableStream, out: NodeJS.WriteStream) {
  const label = `${name.padEnd(width)} |`;
  createInterface({ input: stream }).on('line', (line) => out.write(`${label} ${pretty ? pretty(line) : line}\n`));
}

for (const name of SERVICES) {
  const child = spawn(process.execPath, ['--import', 'tsx', `services/${name}/src/main.ts`, '--supervised'], {
    cwd: ROOT,
    env: process.env,
    stdio: ['pipe', 'pipe', 'pipe'],
    // Own process group: a terminal's Ctrl-C reaches only this supervisor, which stops the children in order.
    detached: true,
  });
  children.set(name, child);
  pipeLines(name, child.stdout!, process.stdout);
  pipeLines(name, child.stderr!, process.stderr);
  child.on('exit', (code, signal) => {
    children.delete(name);
    if (!stopping) {
      process.stderr.write(`start: ${name} exited (${signal ?? `code ${code}`}); stopping the others\n`);
      void stopAll(1);
    } else if (children.size === 0) {
      process.exit(exitCode);
    }
  });
}

let exitCode = 0;
async function stopAll(code: number) {
  if (stopping) return;
  stopping = true;
  exitCode = code;
  if (children.size === 0) process.exit(code);
  for (const child of children.values()) child.kill('SIGTERM');
  setTimeout(() => {
    for (const child of children.values()) child.kill('SIGKILL');
    process.exit(code || 1);
  }, STOP_GRACE_MS).unref();
}

process.on('SIGINT', () => void stopAll(0));
process.on('SIGTERM', () => void stopAll(0));
