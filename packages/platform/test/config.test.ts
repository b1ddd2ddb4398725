import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, DEV_JWT_SECRET, loadConfig } from '../src/config';

const dir = mkdtempSync(join(tmpdir(), 'chat-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const NO_FILE = { CONFIG_FILE: join(dir, 'missing.yaml') };
let n = 0;
function yaml(text: string): string {
  const file = join(dir, `config-${n++}.yaml`);
  writeFileSync(file, text);
  return file;
}
function configError(env: NodeJS.ProcessEnv, overrides = {}): ConfigError {
  try {
    loadConfig(env, overrides);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('loadConfig accepted a bad configuration');
}

describe('loadConfig', () => {
  it('uses the SPEC defaults when neither env nor file sets anything', () => {
    const c = loadConfig({ ...NO_FILE });
    expect(c).toMatchObject({
      NODE_ENV: 'development',
      PORT: 8080,
      DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/chat',
      REDIS_URL: 'redis://127.0.0.1:6379',
      NATS_URL: 'nats://127.0.0.1:4222',
      NATS_PREFIX: 'chat',
      REDIS_PREFIX: 'chat:',
      JWT_SECRET: DEV_JWT_SECRET,
      CORS_ORIGINS: ['http://localhost:3000', 'http://localhost:8080'],
      IP_DENYLIST: [],
      TRUST_PROXY: false,
      RATE_LIMIT_SEND_PER_MIN: 30,
      RATE_LIMIT_REACTIONS_PER_MIN: 60,
      MESSAGE_EDIT_WINDOW_S: 900,
      RATE_LIMIT_CREATE_CONVERSATION_PER_MIN: 10,
      RATE_LIMIT_WS_FRAMES_PER_MIN: 120,
    });
    expect(DEV_JWT_SECRET).toBe('dev-only-secret-change-me-0123456789');
    for (const k of ['JWT_JWKS_URL', 'JWT_ISSUER', 'JWT_AUDIENCE', 'NOTIFICATION_WEBHOOK_URL', 'TLS_CERT_FILE', 'TLS_KEY_FILE'] as const)
      expect(c[k], k).toBeUndefined();
  });

  it('the YAML file overrides defaults, and the environment overrides the YAML file', () => {
    const CONFIG_FILE = yaml('PORT: 9000\nNATS_PREFIX: fromfile\nREDIS_PREFIX: "file:"\nCORS_ORIGINS:\n  - https://a.example\n  - https://b.example\n');
    const fromFile = loadConfig({ CONFIG_FILE });
    expect(fromFile).toMatchObject({ PORT: 9000, NATS_PREFIX: 'fromfile', REDIS_PREFIX: 'file:', CORS_ORIGINS: ['https://a.example', 'https://b.example'] });
    const fromEnv = loadConfig({ CONFIG_FILE, PORT: '9100', NATS_PREFIX: 'fromenv', CORS_ORIGINS: 'https://c.example, https://d.example' });
    expect(fromEnv).toMatchObject({ PORT: 9100, NATS_PREFIX: 'fromenv', REDIS_PREFIX: 'file:', CORS_ORIGINS: ['https://c.example', 'https://d.example'] });
  });

  it('an empty environment variable does not override the file; unknown keys are ignored', () => {
    const CONFIG_FILE = yaml('PORT: 9001\n');
    expect(loadConfig({ CONFIG_FILE, PORT: '', SOMETHING_ELSE: 'x' }).PORT).toBe(9001);
  });

  it('parses booleans and lists from strings', () => {
    const c = loadConfig({ ...NO_FILE, TRUST_PROXY: 'true', IP_DENYLIST: '10.0.0.0/8, 192.168.1.1,' });
    expect(c.TRUST_PROXY).toBe(true);
    expect(c.IP_DENYLIST).toEqual(['10.0.0.0/8', '192.168.1.1']);
    expect(loadConfig({ ...NO_FILE, TRUST_PROXY: 'no' }).TRUST_PROXY).toBe(false);
  });

  it('refuses a JWT_SECRET shorter than 32 bytes, naming JWT_SECRET', () => {
    const err = configError({ ...NO_FILE, JWT_SECRET: 'short-secret' });
    expect(err.message).toMatch(/JWT_SECRET/);
    expect(err.message).toMatch(/32 bytes/);
    expect(loadConfig({ ...NO_FILE, JWT_SECRET: 'x'.repeat(32) }).JWT_SECRET).toHaveLength(32);
  });

  it('refuses the development secret when NODE_ENV=production, but accepts a real one', () => {
    const err = configError({ ...NO_FILE, NODE_ENV: 'production' });
    expect(err.message).toMatch(/JWT_SECRET/);
    expect(err.message).toMatch(/production/);
    expect(configError({ ...NO_FILE, NODE_ENV: 'production', JWT_SECRET: DEV_JWT_SECRET }).message).toMatch(/JWT_SECRET/);
    const secret = 'prod-secret-0123456789-0123456789-abcdef';
    expect(loadConfig({ ...NO_FILE, NODE_ENV: 'production', JWT_SECRET: secret }).JWT_SECRET).toBe(secret);
  });

  it('with JWT_JWKS_URL the secret is not needed; a non-http JWKS URL is refused by name', () => {
    expect(loadConfig({ ...NO_FILE, JWT_JWKS_URL: 'https://auth.example/jwks.json', JWT_SECRET: 'short' }).JWT_JWKS_URL).toBe('https://auth.example/jwks.json');
    expect(configError({ ...NO_FILE, JWT_JWKS_URL: 'ftp://auth.example/jwks' }).message).toMatch(/JWT_JWKS_URL/);
  });

  it('a bad PORT names PORT', () => {
    for (const PORT of ['abc', '70000', '-1', '80.5']) expect(configError({ ...NO_FILE, PORT }).message, PORT).toMatch(/\bPORT\b/);
  });

  it('IP_DENYLIST takes addresses and CIDRs (v4 and v6) and refuses anything else by name', () => {
    expect(loadConfig({ ...NO_FILE, IP_DENYLIST: '10.0.0.0/8, 192.0.2.1,2001:db8::/32,::1' }).IP_DENYLIST).toHaveLength(4);
    for (const bad of ['10.0.0.0/33', '1.2.3', '0x7f.0.0.1', 'example.com', '10.0.0.0/8/8'])
      expect(configError({ ...NO_FILE, IP_DENYLIST: bad }).message, bad).toMatch(/IP_DENYLIST: ".*" is not an IP address or CIDR range/);
  });

  it('CORS_ORIGINS must be exact origins: no wildcard, no path, no trailing slash', () => {
    expect(loadConfig({ ...NO_FILE, CORS_ORIGINS: 'https://app.example.com,http://localhost:3000' }).CORS_ORIGINS).toHaveLength(2);
    for (const bad of ['*', 'https://app.example.com/', 'https://*.example.com', 'app.example.com', 'https://app.example.com/path'])
      expect(configError({ ...NO_FILE, CORS_ORIGINS: bad }).message, bad).toMatch(/CORS_ORIGINS/);
  });

  it('other bad values name their variable', () => {
    expect(configError({ ...NO_FILE, DATABASE_URL: 'mysql://x' }).message).toMatch(/DATABASE_URL/);
    expect(configError({ ...NO_FILE, REDIS_URL: 'not a url' }).message).toMatch(/REDIS_URL/);
    expect(configError({ ...NO_FILE, LOG_LEVEL: 'loud' }).message).toMatch(/LOG_LEVEL/);
    expect(configError({ ...NO_FILE, NODE_ENV: 'staging' }).message).toMatch(/NODE_ENV/);
    expect(configError({ ...NO_FILE, TLS_CERT_FILE: '/tmp/cert.pem' }).message).toMatch(/TLS_CERT_FILE/);
    expect(configError({ CONFIG_FILE: yaml('PORT: [1, 2]\n') }).message).toMatch(/\bPORT\b/);
  });

  it('a YAML file that is not a mapping is refused, naming the file', () => {
    const file = yaml('- just\n- a list\n');
    expect(configError({ CONFIG_FILE: file }).message).toContain(file);
  });

  it('explicit overrides win over env and file', () => {
    expect(loadConfig({ ...NO_FILE, PORT: '9200' }, { PORT: 0 }).PORT).toBe(0);
  });
});
