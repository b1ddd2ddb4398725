import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nkeys } from '@nats-io/transport-node';
import { ConfigError, loadConfig } from '../src/config';
import { natsConnectOptions } from '../src/nats-auth';

/** NATS credentials and TLS settings (issue 13, finding 7): validated at start, each problem naming its variable. */

const dir = mkdtempSync(join(tmpdir(), 'chat-nats-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const NO_FILE = { CONFIG_FILE: join(dir, 'missing.yaml') };
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

const user = nkeys.createUser();
const SEED = file('user.nk', `${new TextDecoder().decode(user.getSeed())}\n`);
const NOT_A_SEED = file('bad.nk', 'SUNOTASEED\n');
const ACCOUNT_SEED = file('account.nk', new TextDecoder().decode(nkeys.createAccount().getSeed()));
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=t', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
const CERT = join(dir, 'cert.pem');
const KEY = join(dir, 'key.pem');
const GARBAGE = file('garbage.pem', 'not pem\n');
// The layout `nsc generate creds` writes: a user JWT, then the user's seed.
const jwt = ['eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ', Buffer.from(JSON.stringify({ sub: user.getPublicKey(), nats: { type: 'user' } })).toString('base64url'), 'c2ln'].join('.');
const CREDS = file('user.creds', `-----BEGIN NATS USER JWT-----\n${jwt}\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n${new TextDecoder().decode(user.getSeed())}\n------END USER NKEY SEED------\n`);
const UNREADABLE = file('unreadable.nk', new TextDecoder().decode(user.getSeed()));
chmodSync(UNREADABLE, 0o000);

function problem(env: Record<string, string>): string {
  try {
    loadConfig({ ...NO_FILE, ...env });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('loadConfig accepted a bad NATS configuration');
}

describe('NATS credentials and TLS settings', () => {
  it('default: none of them, and the connection gets no credentials and no TLS', () => {
    const c = loadConfig({ ...NO_FILE });
    for (const k of ['NATS_USER', 'NATS_PASSWORD', 'NATS_TOKEN', 'NATS_NKEY_SEED_FILE', 'NATS_CREDS_FILE', 'NATS_TLS_CA_FILE', 'NATS_TLS_CERT_FILE', 'NATS_TLS_KEY_FILE'] as const)
      expect(c[k], k).toBeUndefined();
    expect(natsConnectOptions(c)).toEqual({ servers: ['nats://127.0.0.1:4222'] });
  });

  it('user and password go to the connection as user/pass', () => {
    const c = loadConfig({ ...NO_FILE, NATS_URL: 'nats://a:4222,nats://b:4222', NATS_USER: 'chat', NATS_PASSWORD: 's3cret ' });
    expect(natsConnectOptions(c)).toEqual({ servers: ['nats://a:4222', 'nats://b:4222'], user: 'chat', pass: 's3cret ' });
  });

  it('a token, an NKey seed file or a creds file each become the connection\'s only credential', () => {
    expect(natsConnectOptions(loadConfig({ ...NO_FILE, NATS_TOKEN: 't0ken' }))).toMatchObject({ token: 't0ken' });
    const nkey = natsConnectOptions(loadConfig({ ...NO_FILE, NATS_NKEY_SEED_FILE: SEED }));
    expect(typeof nkey.authenticator).toBe('function');
    expect((nkey.authenticator as (n: string) => { nkey: string })('nonce').nkey).toBe(user.getPublicKey());
    const creds = natsConnectOptions(loadConfig({ ...NO_FILE, NATS_CREDS_FILE: CREDS }));
    expect((creds.authenticator as (n: string) => { jwt: string })('nonce').jwt).toBe(jwt);
  });

  it('user without password, or password without user, names the missing one', () => {
    expect(problem({ NATS_USER: 'chat' })).toMatch(/NATS_PASSWORD: NATS_USER and NATS_PASSWORD must be set together/);
    expect(problem({ NATS_PASSWORD: 'x' })).toMatch(/NATS_USER: NATS_USER and NATS_PASSWORD must be set together/);
  });

  it('two auth methods at once are refused, naming both', () => {
    expect(problem({ NATS_USER: 'chat', NATS_PASSWORD: 'x', NATS_TOKEN: 't' })).toMatch(/one NATS auth method at a time, not NATS_USER\/NATS_PASSWORD and NATS_TOKEN/);
    expect(problem({ NATS_NKEY_SEED_FILE: SEED, NATS_CREDS_FILE: CREDS })).toMatch(/NATS_NKEY_SEED_FILE and NATS_CREDS_FILE/);
  });

  it('a missing, unreadable or malformed file stops the start, naming the variable and the file', () => {
    expect(problem({ NATS_NKEY_SEED_FILE: join(dir, 'nope.nk') })).toMatch(/NATS_NKEY_SEED_FILE: .*nope\.nk cannot be read \(ENOENT\)/);
    if (process.getuid?.() !== 0) expect(problem({ NATS_NKEY_SEED_FILE: UNREADABLE })).toMatch(/NATS_NKEY_SEED_FILE: .*cannot be read \(EACCES\)/);
    expect(problem({ NATS_NKEY_SEED_FILE: NOT_A_SEED })).toMatch(/NATS_NKEY_SEED_FILE: .*bad\.nk is not an NKey user seed/);
    expect(problem({ NATS_NKEY_SEED_FILE: ACCOUNT_SEED })).toMatch(/NATS_NKEY_SEED_FILE: .*is not an NKey user seed/);
    expect(problem({ NATS_CREDS_FILE: SEED })).toMatch(/NATS_CREDS_FILE: .*is not a NATS \.creds file/);
    expect(problem({ NATS_TLS_CA_FILE: join(dir, 'nope.pem') })).toMatch(/NATS_TLS_CA_FILE: .*cannot be read \(ENOENT\)/);
    expect(problem({ NATS_TLS_CA_FILE: GARBAGE })).toMatch(/NATS_TLS_CA_FILE: .*is not a PEM certificate/);
    expect(problem({ NATS_TLS_CERT_FILE: KEY, NATS_TLS_KEY_FILE: KEY })).toMatch(/NATS_TLS_CERT_FILE: .*is not a PEM certificate/);
    expect(problem({ NATS_TLS_CERT_FILE: CERT, NATS_TLS_KEY_FILE: CERT })).toMatch(/NATS_TLS_KEY_FILE: .*is not a PEM private key/);
  });

  it('a client certificate without its key (or the reverse) is refused', () => {
    expect(problem({ NATS_TLS_CERT_FILE: CERT })).toMatch(/NATS_TLS_KEY_FILE: NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE must be set together/);
    expect(problem({ NATS_TLS_KEY_FILE: KEY })).toMatch(/NATS_TLS_CERT_FILE: NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE must be set together/);
  });

  it('TLS is on with a tls:// URL or any NATS_TLS_* file; the scheme is not passed on to the client', () => {
    expect(natsConnectOptions(loadConfig({ ...NO_FILE, NATS_URL: 'tls://nats:4222' }))).toEqual({ servers: ['nats://nats:4222'], tls: {} });
    expect(natsConnectOptions(loadConfig({ ...NO_FILE, NATS_TLS_CA_FILE: CERT }))).toMatchObject({ tls: { caFile: CERT } });
    expect(natsConnectOptions(loadConfig({ ...NO_FILE, NATS_TLS_CA_FILE: CERT, NATS_TLS_CERT_FILE: CERT, NATS_TLS_KEY_FILE: KEY }))).toMatchObject({
      tls: { caFile: CERT, certFile: CERT, keyFile: KEY },
    });
  });
});
