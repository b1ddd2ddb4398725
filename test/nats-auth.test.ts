import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect as natsConnect, nkeys } from '@nats-io/transport-node';
import { checkBackingServers, describeFailure, natsConnectOptions } from '@chat/platform';
import { conversationPair, api as restClient } from './helpers/client';
import { startNatsServer, type OwnNatsServer } from './helpers/nats-server';
import { startStack, type Stack } from './helpers/stack';
import { connect as wsConnect } from './helpers/ws';

/**
 * Finding 7 (issue 13): the bus demands credentials. Private nats-servers
 * (helpers/nats-server.ts) with `authorization { users }` and with TLS on a
 * throwaway CA prove that the processes bring their credentials to every
 * connection, and that a process without them (or with a wrong password, or
 * TLS without the CA) stops at start with one line naming NATS and why.
 */

const ROOT = new URL('..', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'chat-nats-auth-'));
const USER = { user: 'chat', password: 'chat-test-password-0123456789' };
const nkeyUser = nkeys.createUser();
const SEED_FILE = join(dir, 'user.nk');
writeFileSync(SEED_FILE, new TextDecoder().decode(nkeyUser.getSeed()), { mode: 0o600 });

/** A CA, a server certificate for 127.0.0.1 signed by it, and a client certificate signed by it; openssl, one process each. */
function pki() {
  const f = (name: string) => join(dir, name);
  const ossl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ossl('req', '-x509', ...ec, '-days', '1', '-subj', '/CN=chat test CA', '-keyout', f('ca.key'), '-out', f('ca.pem'));
  for (const [name, ext] of [['server', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], ['client', 'extendedKeyUsage=clientAuth']] as const) {
    ossl('req', ...ec, '-subj', `/CN=${name}`, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`));
    writeFileSync(f(`${name}.ext`), `${ext}\n`);
    ossl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '1', '-extfile', f(`${name}.ext`), '-out', f(`${name}.pem`));
  }
  return { ca: f('ca.pem'), serverCert: f('server.pem'), serverKey: f('server.key'), clientCert: f('client.pem'), clientKey: f('client.key') };
}

let files: ReturnType<typeof pki>;
/** Password and NKey users, no TLS. */
let locked: OwnNatsServer;
/** TLS that verifies client certificates, and the same users. */
let tlsServer: OwnNatsServer;

beforeAll(async () => {
  files = pki();
  const users = [USER, { nkey: nkeyUser.getPublicKey() }];
  [locked, tlsServer] = await Promise.all([
    startNatsServer({ users }),
    startNatsServer({ users, tls: { certFile: files.serverCert, keyFile: files.serverKey, caFile: files.ca, verify: true } }),
  ]);
}, 30_000);

afterAll(async () => {
  await Promise.all([locked?.stop(), tlsServer?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

/** A real process (blocks: PostgreSQL and NATS), started like in production; what it printed and how it ended. */
function startBlocks(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'services/blocks/src/main.ts'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', CONFIG_FILE: '/nonexistent', NODE_ENV: 'test', METRICS_PORT: '0', LOG_LEVEL: 'silent', ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += String(d)));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('exit', (code) => (clearTimeout(timer), resolve({ code, stderr })));
  });
}

/** A message sent over REST reaches the other user's socket: request/reply and the per-user deliveries both crossed the bus. */
async function messageRoundTrip(stack: Stack): Promise<void> {
  const a = restClient(stack.baseUrl);
  const { alice, bob, conv } = await conversationPair(a);
  const { client: bobSocket } = await wsConnect(stack.gateway.port, { token: bob.token });
  try {
    const sent = await a.post(`/conversations/${conv}/messages`, alice.token, { content: 'over an authenticated bus' });
    expect(sent.status).toBe(201);
    const frame = await bobSocket.nextOf('message.new', 10_000);
    expect(frame.payload.message).toMatchObject({ id: sent.body.data.id, content: 'over an authenticated bus' });
  } finally {
    await bobSocket.close();
  }
}

describe('a NATS server that demands credentials', () => {
  it('refuses a client without credentials (the bus is closed to anyone who only reaches it)', async () => {
    await expect(natsConnect({ servers: locked.url, reconnect: false, timeout: 3000 })).rejects.toThrow(/authoriz/i);
  });

  it('a stack with NATS_USER/NATS_PASSWORD works end to end: a message sent and received', async () => {
    const stack = await startStack({ NATS_URL: locked.url, NATS_USER: USER.user, NATS_PASSWORD: USER.password });
    try {
      await messageRoundTrip(stack);
    } finally {
      await stack.stop();
    }
  }, 60_000);

  it('without credentials, a process refuses to start with one line naming NATS and the auth failure', async () => {
    const { code, stderr } = await startBlocks({ NATS_URL: locked.url });
    expect(code).toBe(1);
    const lines = stderr.trim().split('\n');
    expect(lines, stderr).toHaveLength(1);
    expect(lines[0]).toMatch(/^blocks: NATS refused the connection at nats:\/\/127\.0\.0\.1:\d+\/? \(.*Authorization Violation.*\)\. Check the NATS credentials: NATS_USER\/NATS_PASSWORD/i);
  }, 40_000);

  it('with a wrong password the same, and the password is not printed', async () => {
    const { code, stderr } = await startBlocks({ NATS_URL: locked.url, NATS_USER: USER.user, NATS_PASSWORD: 'wrong-password-xyz' });
    expect(code).toBe(1);
    expect(stderr.trim().split('\n'), stderr).toHaveLength(1);
    expect(stderr).toMatch(/^blocks: NATS refused the connection .*Authorization Violation.*Check the NATS credentials/i);
    expect(stderr).not.toContain('wrong-password-xyz');
  }, 40_000);

  it('an NKey seed file is accepted; another seed is refused', async () => {
    expect(await checkBackingServers({ DATABASE_URL: '', REDIS_URL: '', NATS_URL: locked.url, NATS_NKEY_SEED_FILE: SEED_FILE }, ['NATS'])).toEqual([]);
    const stranger = join(dir, 'stranger.nk');
    writeFileSync(stranger, new TextDecoder().decode(nkeys.createUser().getSeed()));
    const [failure] = await checkBackingServers({ DATABASE_URL: '', REDIS_URL: '', NATS_URL: locked.url, NATS_NKEY_SEED_FILE: stranger }, ['NATS']);
    expect(failure && describeFailure(failure)).toMatch(/^NATS refused the connection .*Authorization Violation.*Check the NATS credentials/i);
  });
});

describe('NATS over TLS (a throwaway CA; the server verifies client certificates)', () => {
  const tlsEnv = () => ({
    NATS_URL: tlsServer.url,
    NATS_NKEY_SEED_FILE: SEED_FILE,
    NATS_TLS_CA_FILE: files.ca,
    NATS_TLS_CERT_FILE: files.clientCert,
    NATS_TLS_KEY_FILE: files.clientKey,
  });

  it('with the CA, a client certificate and an NKey, a stack works end to end', async () => {
    expect(tlsServer.url).toMatch(/^tls:\/\//);
    const stack = await startStack(tlsEnv());
    try {
      await messageRoundTrip(stack);
      // The options really asked for TLS (not a plain connection that happened to work).
      expect(natsConnectOptions(stack.config).tls).toMatchObject({ caFile: files.ca });
    } finally {
      await stack.stop();
    }
  }, 60_000);

  it('without the CA, a process refuses to start with one line naming NATS, the certificate problem and NATS_TLS_CA_FILE', async () => {
    const { NATS_TLS_CA_FILE: _ca, ...withoutCa } = tlsEnv();
    const { code, stderr } = await startBlocks(withoutCa);
    expect(code).toBe(1);
    expect(stderr.trim().split('\n'), stderr).toHaveLength(1);
    expect(stderr).toMatch(/^blocks: NATS refused the connection at tls:\/\/127\.0\.0\.1:\d+.*certificate.*NATS_TLS_CA_FILE/i);
  }, 40_000);

  it('a tls:// URL refuses a server that offers no TLS, rather than talking in plain text', async () => {
    const url = locked.url.replace('nats://', 'tls://');
    const [failure] = await checkBackingServers({ DATABASE_URL: '', REDIS_URL: '', NATS_URL: url, NATS_USER: USER.user, NATS_PASSWORD: USER.password }, ['NATS']);
    expect(failure?.reason).toMatch(/tls/i);
    expect(failure && describeFailure(failure)).toMatch(/^NATS refused the connection .*NATS_TLS_CA_FILE/);
  });
});
