import { accessSync, constants, readFileSync } from 'node:fs';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { credsAuthenticator, nkeyAuthenticator, type NodeConnectionOptions } from '@nats-io/transport-node';
import { z } from 'zod';

const optional = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));
// Kept as written (no trim): a password may legitimately end in a space.
const optionalSecret = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v === '' ? undefined : v));

/** The NATS credentials and TLS settings every connection uses (spread into ConfigSchema). */
export const NATS_AUTH_SETTINGS = {
  /** User/password auth (an `authorization { users }` entry of the server); both or neither. */
  NATS_USER: optional,
  NATS_PASSWORD: optionalSecret,
  /** Token auth (`authorization { token }`). */
  NATS_TOKEN: optionalSecret,
  /** A file holding an NKey user seed (`SU…`); the seed never leaves the process, only a signature does. */
  NATS_NKEY_SEED_FILE: optional,
  /** A `.creds` file (user JWT + seed) for servers in operator/JWT mode. */
  NATS_CREDS_FILE: optional,
  /** PEM CA that signed the server's certificate; setting it (or a tls:// URL) turns TLS on. */
  NATS_TLS_CA_FILE: optional,
  /** PEM client certificate and its key, for servers that verify clients (`tls { verify: true }`); both or neither. */
  NATS_TLS_CERT_FILE: optional,
  NATS_TLS_KEY_FILE: optional,
};

export interface NatsSettings {
  NATS_URL: string;
  NATS_USER?: string | undefined;
  NATS_PASSWORD?: string | undefined;
  NATS_TOKEN?: string | undefined;
  NATS_NKEY_SEED_FILE?: string | undefined;
  NATS_CREDS_FILE?: string | undefined;
  NATS_TLS_CA_FILE?: string | undefined;
  NATS_TLS_CERT_FILE?: string | undefined;
  NATS_TLS_KEY_FILE?: string | undefined;
}

type Issue = { path: keyof NatsSettings; message: string };

/** Why a file cannot serve, or undefined: read through the same parsers the connection will use. */
function fileProblem(file: string, check: (bytes: Buffer) => void, what: string): string | undefined {
  try {
    accessSync(file, constants.R_OK);
  } catch (err) {
    return `${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
  }
  try {
    check(readFileSync(file));
    return undefined;
  } catch {
    return `${file} is not ${what}`;
  }
}

// Signing a dummy nonce runs the library's own parser, so a file that passes here is one the connection accepts.
const checkSeed = (bytes: Buffer) => {
  const seed = bytes.toString('utf8').trim();
  if (!seed.startsWith('SU')) throw new Error('not a user seed');
  nkeyAuthenticator(new TextEncoder().encode(seed))('nonce');
};
const checkCreds = (bytes: Buffer) => {
  const auth = credsAuthenticator(new Uint8Array(bytes))('nonce') as { jwt?: string };
  if (!auth.jwt) throw new Error('no JWT');
};

const tlsUrl = (url: string) => url.split(',').some((u) => /^\s*tls:\/\//i.test(u));

/** Every problem with the NATS settings, each naming its variable: at most one auth method, pairs complete, files usable. */
export function natsSettingsIssues(c: NatsSettings): Issue[] {
  const issues: Issue[] = [];
  if (Boolean(c.NATS_USER) !== Boolean(c.NATS_PASSWORD))
    issues.push({ path: c.NATS_USER ? 'NATS_PASSWORD' : 'NATS_USER', message: 'NATS_USER and NATS_PASSWORD must be set together' });
  const methods = [
    (c.NATS_USER || c.NATS_PASSWORD) && 'NATS_USER/NATS_PASSWORD',
    c.NATS_TOKEN && 'NATS_TOKEN',
    c.NATS_NKEY_SEED_FILE && 'NATS_NKEY_SEED_FILE',
    c.NATS_CREDS_FILE && 'NATS_CREDS_FILE',
  ].filter((m): m is string => Boolean(m));
  if (methods.length > 1)
    issues.push({ path: 'NATS_USER', message: `one NATS auth method at a time, not ${methods.join(' and ')}` });
  const files: Array<[keyof NatsSettings, (b: Buffer) => void, string]> = [
    ['NATS_NKEY_SEED_FILE', checkSeed, 'an NKey user seed (SU…)'],
    ['NATS_CREDS_FILE', checkCreds, 'a NATS .creds file (user JWT and seed)'],
    ['NATS_TLS_CA_FILE', (b) => new X509Certificate(b), 'a PEM certificate'],
    ['NATS_TLS_CERT_FILE', (b) => new X509Certificate(b), 'a PEM certificate'],
    ['NATS_TLS_KEY_FILE', (b) => createPrivateKey(b), 'a PEM private key'],
  ];
  for (const [key, check, what] of files) {
    const file = c[key];
    const problem = file ? fileProblem(file, check, what) : undefined;
    if (problem) issues.push({ path: key, message: problem });
  }
  if (Boolean(c.NATS_TLS_CERT_FILE) !== Boolean(c.NATS_TLS_KEY_FILE))
    issues.push({ path: c.NATS_TLS_CERT_FILE ? 'NATS_TLS_KEY_FILE' : 'NATS_TLS_CERT_FILE', message: 'NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE must be set together' });
  return issues;
}

/** Whether these settings ask for TLS: a tls:// URL, or any NATS_TLS_* file. */
export const natsWantsTls = (c: NatsSettings): boolean =>
  tlsUrl(c.NATS_URL) || Boolean(c.NATS_TLS_CA_FILE || c.NATS_TLS_CERT_FILE || c.NATS_TLS_KEY_FILE);

/**
 * The connect options every NATS connection of the code takes (services,
 * gateway, preflight, scripts): servers, credentials, TLS. Files are read
 * on every (re)connect, so a rotated seed or creds file takes effect without
 * a restart.
 */
export function natsConnectOptions(c: NatsSettings): Pick<NodeConnectionOptions, 'servers' | 'user' | 'pass' | 'token' | 'authenticator' | 'tls'> {
  const opts: ReturnType<typeof natsConnectOptions> = {
    // The client picks TLS from the options, not the scheme; tls:// only says "require it" (below).
    servers: c.NATS_URL.split(',').map((u) => u.trim().replace(/^tls:\/\//i, 'nats://')),
  };
  if (c.NATS_USER && c.NATS_PASSWORD) Object.assign(opts, { user: c.NATS_USER, pass: c.NATS_PASSWORD });
  else if (c.NATS_TOKEN) opts.token = c.NATS_TOKEN;
  else if (c.NATS_NKEY_SEED_FILE) {
    const file = c.NATS_NKEY_SEED_FILE;
    opts.authenticator = nkeyAuthenticator(() => new TextEncoder().encode(readFileSync(file, 'utf8').trim()));
  } else if (c.NATS_CREDS_FILE) {
    const file = c.NATS_CREDS_FILE;
    opts.authenticator = credsAuthenticator(() => new Uint8Array(readFileSync(file)));
  }
  if (natsWantsTls(c)) {
    // A tls option makes the client refuse a server that offers no TLS, instead of falling back to plain text.
    opts.tls = {
      ...(c.NATS_TLS_CA_FILE ? { caFile: c.NATS_TLS_CA_FILE } : {}),
      ...(c.NATS_TLS_CERT_FILE ? { certFile: c.NATS_TLS_CERT_FILE } : {}),
      ...(c.NATS_TLS_KEY_FILE ? { keyFile: c.NATS_TLS_KEY_FILE } : {}),
    };
  }
  return opts;
}
