import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { COMMITTED_JWT_SECRETS, COMMITTED_NATS_PASSWORDS, ConfigError, DEV_JWT_SECRET, loadConfig } from '@chat/platform';
import { extraGateway, useStack } from './helpers/stack';

/**
 * Issue 13, finding 1: the image runs with NODE_ENV=production, and a JWT
 * secret written anywhere in this repository lets whoever read it sign a
 * token for any user. Every such value found in the repository's own files
 * (compose, Kubernetes overlays, config, docs, env examples, code, tests) must
 * be refused under NODE_ENV=production.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The repository's files as git has them (committed or added), less the lockfile and binaries. */
function repositoryFiles(): string[] {
  const out = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  return out
    .split('\0')
    .filter(Boolean)
    .filter((f) => !/(^|\/)package-lock\.json$/.test(f) && !/\.(png|jpe?g|gif|ico|woff2?|pdf)$/i.test(f));
}

/** A value that is a literal secret, not a reference (`${…}`, `$(…)`, an identifier such as TEST_SECRET, a placeholder like `<secret>`). */
const literal = (v: string) => v.length >= 16 && !/^[$<]/.test(v) && !v.includes('(') && !/^[A-Z_][A-Z0-9_]*$/.test(v) && !/^(process|config|env)\./.test(v);

/**
 * JWT secrets written in a file: `JWT_SECRET=v`, `JWT_SECRET: v`, compose's
 * `${JWT_SECRET:-v}`, a Markdown table's `| \`JWT_SECRET\` | \`v\` |`, and in
 * code a string constant named *SECRET*.
 */
export function secretsIn(text: string): string[] {
  const found: string[] = [];
  for (const m of text.matchAll(/\$\{JWT_SECRET:?-([^}]*)\}/g)) found.push(m[1]!);
  for (const m of text.matchAll(/\bJWT_SECRET\b["'`]?\s*[=:]\s*["'`]?([^\s"'`,;}|)]+)/g)) found.push(m[1]!);
  for (const m of text.matchAll(/`JWT_SECRET`\s*\|\s*`([^`]+)`/g)) found.push(m[1]!);
  for (const m of text.matchAll(/\b(?:const|let|var)\s+\w*SECRET\w*\s*(?::\s*\w+\s*)?=\s*(['"`])([^'"`\s]+)\1/g)) found.push(m[2]!);
  return found.filter(literal);
}

const found = new Map<string, string[]>();
for (const file of repositoryFiles()) {
  let text: string;
  try {
    text = readFileSync(join(ROOT, file), 'utf8');
  } catch {
    continue; // listed but deleted in the working tree
  }
  if (!text.includes('SECRET')) continue;
  for (const secret of secretsIn(text)) found.set(secret, [...(found.get(secret) ?? []), file]);
}

function refusedInProduction(secret: string): string | undefined {
  try {
    loadConfig({ CONFIG_FILE: '/nonexistent/config.yaml', NODE_ENV: 'production', JWT_SECRET: secret });
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
}

describe('JWT secrets committed to the repository', () => {
  it('the scan finds the secrets of compose, the Kubernetes dev overlay, .env.example, the docs and the code (it is not blind)', () => {
    const where = [...found.values()].flat();
    for (const file of ['docker-compose.yml', 'deploy/k8s/overlays/dev/kustomization.yaml', '.env.example', 'docs/configuration.md', 'packages/platform/src/config.ts', 'test/helpers/client.ts'])
      expect(where, `a JWT secret in ${file}`).toContain(file);
    expect(secretsIn('JWT_SECRET="$(openssl rand -base64 48)"\nJWT_SECRET: ${JWT_SECRET:?set it}\nJWT_SECRET: TEST_SECRET')).toEqual([]);
  });

  it('every one of them is refused when NODE_ENV=production, with a message naming JWT_SECRET', () => {
    expect(found.size).toBeGreaterThan(0);
    for (const [secret, files] of found) expect(refusedInProduction(secret), `${secret} (in ${files.join(', ')})`).toMatch(/JWT_SECRET: this value is committed to the repository/);
  });

  it('the refused list holds only what the repository has (kept in one place, packages/platform/src/secrets.ts)', () => {
    for (const secret of COMMITTED_JWT_SECRETS) expect(found.has(secret), `${secret} is listed but committed nowhere any more`).toBe(true);
  });

  it('outside production they still work (docker compose up and the dev overlay run in development), and a secret of your own works in production', () => {
    for (const secret of found.keys()) expect(loadConfig({ CONFIG_FILE: '/nonexistent/config.yaml', NODE_ENV: 'development', JWT_SECRET: secret }).JWT_SECRET).toBe(secret);
    const own = randomBytes(48).toString('base64');
    expect(loadConfig({ CONFIG_FILE: '/nonexistent/config.yaml', NODE_ENV: 'production', JWT_SECRET: own }).JWT_SECRET).toBe(own);
  });
});

/** NATS passwords written in a file: compose's `${NATS_PASSWORD:-v}`, `NATS_PASSWORD=v`, `NATS_PASSWORD: v`. */
function natsPasswordsIn(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/\$\{NATS_PASSWORD:?-([^}]*)\}/g)) out.push(m[1]!);
  for (const m of text.matchAll(/\bNATS_PASSWORD\b["'`]?\s*[=:]\s*["'`]?([^\s"'`,;}|)]+)/g)) out.push(m[1]!);
  return out.filter(literal);
}

describe('NATS passwords committed to the repository', () => {
  const passwords = new Map<string, string[]>();
  for (const file of repositoryFiles()) {
    if (file.startsWith('test/')) continue; // the tests' private nats-servers are theirs alone
    let text: string;
    try {
      text = readFileSync(join(ROOT, file), 'utf8');
    } catch {
      continue;
    }
    if (!text.includes('NATS_PASSWORD')) continue;
    for (const v of natsPasswordsIn(text)) passwords.set(v, [...(passwords.get(v) ?? []), file]);
  }

  it('are found (compose, the dev overlay) and each is refused when NODE_ENV=production, naming NATS_PASSWORD', () => {
    const where = [...passwords.values()].flat();
    for (const file of ['docker-compose.yml', 'deploy/k8s/overlays/dev/kustomization.yaml']) expect(where, `a NATS password in ${file}`).toContain(file);
    for (const [password, files] of passwords) {
      expect(() => loadConfig({ CONFIG_FILE: '/nonexistent/config.yaml', NODE_ENV: 'production', JWT_SECRET: randomBytes(48).toString('base64'), NATS_USER: 'chat', NATS_PASSWORD: password }), `${password} (in ${files.join(', ')})`).toThrow(
        /NATS_PASSWORD: this value is committed to the repository/,
      );
      expect(loadConfig({ CONFIG_FILE: '/nonexistent/config.yaml', NODE_ENV: 'development', NATS_USER: 'chat', NATS_PASSWORD: password }).NATS_PASSWORD).toBe(password);
    }
    for (const password of COMMITTED_NATS_PASSWORDS) expect(passwords.has(password), `${password} is listed but committed nowhere`).toBe(true);
  });
});

describe('a gateway running on a committed secret (development)', () => {
  const ctx = useStack();
  const gateways: Array<{ stop(): Promise<void> }> = [];
  afterAll(async () => {
    for (const g of gateways) await g.stop();
  });

  async function startupLines(overrides: Parameters<typeof extraGateway>[1]): Promise<string[]> {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        done();
      },
    });
    gateways.push(await extraGateway(ctx.stack, { LOG_LEVEL: 'info', ...overrides }, stream));
    return lines;
  }
  const warned = (lines: string[]) => lines.filter((l) => l.includes('committed to the repository') && JSON.parse(l).level === 'warn');

  it('says so at start, once, at warn level: docker compose up runs visibly as development', async () => {
    const compose = [...found.entries()].find(([, files]) => files.includes('docker-compose.yml'))![0];
    for (const secret of [compose, DEV_JWT_SECRET]) expect(warned(await startupLines({ NODE_ENV: 'development', JWT_SECRET: secret })), secret).toHaveLength(1);
  });

  it('says nothing with a secret of its own, or with a JWKS', async () => {
    expect(warned(await startupLines({ NODE_ENV: 'development', JWT_SECRET: randomBytes(48).toString('base64') }))).toEqual([]);
    expect(warned(await startupLines({ NODE_ENV: 'development', JWT_SECRET: DEV_JWT_SECRET, JWT_JWKS_URL: 'http://127.0.0.1:9/jwks.json' }))).toEqual([]);
  });
});
