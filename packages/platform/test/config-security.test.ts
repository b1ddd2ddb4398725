import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config';

/** Issue 13, finding 6: the webhook signing secret and https-only URLs in production. */

const NO_FILE = { CONFIG_FILE: '/nonexistent/config.yaml' };
const PROD = { ...NO_FILE, NODE_ENV: 'production', JWT_SECRET: randomBytes(48).toString('base64') };

function refusal(env: NodeJS.ProcessEnv): string {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe('NOTIFICATION_WEBHOOK_SECRET', () => {
  it('is unset by default (webhooks unsigned), and an empty value is unset too', () => {
    expect(loadConfig({ ...NO_FILE }).NOTIFICATION_WEBHOOK_SECRET).toBeUndefined();
    expect(loadConfig({ ...NO_FILE, NOTIFICATION_WEBHOOK_SECRET: '  ' }).NOTIFICATION_WEBHOOK_SECRET).toBeUndefined();
  });

  it('takes `whsec_` + the base64 of a key of 24 bytes or more', () => {
    for (const bytes of [24, 32, 64]) {
      const secret = `whsec_${randomBytes(bytes).toString('base64')}`;
      expect(loadConfig({ ...NO_FILE, NOTIFICATION_WEBHOOK_SECRET: secret }).NOTIFICATION_WEBHOOK_SECRET).toBe(secret);
    }
  });

  it('refuses anything else at start, naming the variable', () => {
    const key = randomBytes(32).toString('base64');
    const bad = [
      key, // no prefix
      `whsec-${key}`,
      `WHSEC_${key}`,
      'whsec_',
      `whsec_${key.slice(0, -1)}`, // not a whole base64 quantum
      `whsec_${randomBytes(32).toString('base64url')}-_`,
      `whsec_${key} `.replace(' ', '\u0000'),
      `whsec_${randomBytes(16).toString('base64')}`, // 16 bytes: too short
      'whsec_not base64 at all',
    ];
    for (const value of bad) expect(refusal({ ...NO_FILE, NOTIFICATION_WEBHOOK_SECRET: value }), JSON.stringify(value)).toMatch(/^invalid configuration: .*NOTIFICATION_WEBHOOK_SECRET: /);
  });
});

describe('https: for JWT_JWKS_URL and NOTIFICATION_WEBHOOK_URL when NODE_ENV=production', () => {
  it('refuses http: in production, naming the variable', () => {
    expect(refusal({ ...PROD, NOTIFICATION_WEBHOOK_URL: 'http://hooks.example.com/chat' })).toMatch(/NOTIFICATION_WEBHOOK_URL: must be an https: URL when NODE_ENV=production/);
    expect(refusal({ ...PROD, JWT_JWKS_URL: 'http://idp.example.com/.well-known/jwks.json' })).toMatch(/JWT_JWKS_URL: must be an https: URL when NODE_ENV=production/);
  });

  it('accepts https: in production, and http: outside it (a local IdP or receiver in development and tests)', () => {
    const prod = loadConfig({ ...PROD, NOTIFICATION_WEBHOOK_URL: 'https://hooks.example.com/chat', JWT_JWKS_URL: 'https://idp.example.com/jwks.json' });
    expect(prod.NOTIFICATION_WEBHOOK_URL).toBe('https://hooks.example.com/chat');
    expect(prod.JWT_JWKS_URL).toBe('https://idp.example.com/jwks.json');
    for (const NODE_ENV of ['development', 'test']) {
      const c = loadConfig({ ...NO_FILE, NODE_ENV, NOTIFICATION_WEBHOOK_URL: 'http://127.0.0.1:9/hook', JWT_JWKS_URL: 'http://127.0.0.1:9/jwks.json' });
      expect([c.NOTIFICATION_WEBHOOK_URL, c.JWT_JWKS_URL]).toEqual(['http://127.0.0.1:9/hook', 'http://127.0.0.1:9/jwks.json']);
    }
  });
});

describe('JWT_JWKS_MAX_STALE_S', () => {
  it('defaults to 6 hours; 0 turns stale keys off; negative or non-numeric is refused', () => {
    expect(loadConfig({ ...NO_FILE }).JWT_JWKS_MAX_STALE_S).toBe(21_600);
    expect(loadConfig({ ...NO_FILE, JWT_JWKS_MAX_STALE_S: '0' }).JWT_JWKS_MAX_STALE_S).toBe(0);
    for (const v of ['-1', 'six hours', '1.5']) expect(refusal({ ...NO_FILE, JWT_JWKS_MAX_STALE_S: v })).toMatch(/JWT_JWKS_MAX_STALE_S/);
  });
});
