import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './processes';

const NATS_SERVER = process.env.NATS_SERVER_BIN ?? '/usr/sbin/nats-server';

export interface OwnNatsServer {
  url: string;
  /** Ends the server (SIGTERM, then SIGKILL if it lingers) and removes its store. */
  stop(): Promise<void>;
}

export interface NatsServerSettings {
  maxPayload?: number;
  /** `authorization { users }`: password users and NKey users (by public key). Set, a client without credentials is refused. */
  users?: Array<{ user: string; password: string } | { nkey: string }>;
  /** `tls { }`: PEM files; `verify` makes the server demand a client certificate signed by `caFile`. */
  tls?: { certFile: string; keyFile: string; caFile?: string; verify?: boolean };
}

const quote = (v: string) => JSON.stringify(v);

/**
 * A nats-server of the test's own, with JetStream in a temporary store, on a
 * free local port: for settings the shared server must not change (a small
 * `max_payload`, credentials, TLS). Resolves once it accepts clients.
 */
export async function startNatsServer(settings: NatsServerSettings = {}): Promise<OwnNatsServer> {
  const dir = mkdtempSync(join(tmpdir(), 'chat-nats-'));
  const port = await freePort();
  const conf = join(dir, 'nats.conf');
  writeFileSync(
    conf,
    [
      `listen: "127.0.0.1:${port}"`,
      ...(settings.maxPayload === undefined ? [] : [`max_payload: ${settings.maxPayload}`]),
      ...(settings.users
        ? [
            'authorization {',
            '  users: [',
            ...settings.users.map((u) => ('nkey' in u ? `    { nkey: ${quote(u.nkey)} }` : `    { user: ${quote(u.user)}, password: ${quote(u.password)} }`)),
            '  ]',
            '}',
          ]
        : []),
      ...(settings.tls
        ? [
            'tls {',
            `  cert_file: ${quote(settings.tls.certFile)}`,
            `  key_file: ${quote(settings.tls.keyFile)}`,
            ...(settings.tls.caFile ? [`  ca_file: ${quote(settings.tls.caFile)}`] : []),
            ...(settings.tls.verify ? ['  verify: true'] : []),
            '}',
          ]
        : []),
      `jetstream { store_dir: "${join(dir, 'js')}" }`,
      '',
    ].join('\n'),
  );
  const child = spawn(NATS_SERVER, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // A test worker that dies without its afterAll still takes the server with it.
  const orphanGuard = () => child.kill('SIGKILL');
  process.once('exit', orphanGuard);
  let log = '';
  let ready: () => void = () => undefined;
  const collect = (d: Buffer) => {
    log += String(d);
    if (log.includes('Server is ready')) ready();
  };
  child.stderr.on('data', collect);
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`nats-server did not start within 10 s:\n${log}`)), 10_000);
      ready = () => (clearTimeout(timer), resolve());
      child.once('exit', (code) => (clearTimeout(timer), reject(new Error(`nats-server exited with ${code}:\n${log}`))));
    });
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    process.off('exit', orphanGuard);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  // Still read, so a chatty server never blocks on a full pipe, but keep nothing.
  child.stderr.off('data', collect);
  child.stderr.resume();
  return {
    url: `${settings.tls ? 'tls' : 'nats'}://127.0.0.1:${port}`,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(killer);
      }
      process.off('exit', orphanGuard);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
