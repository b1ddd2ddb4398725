import { parseArgs } from 'node:util';
import { SignJWT } from 'jose';
import { UsernameSchema } from '@chat/contracts';
import { loadConfig } from '@chat/platform';
import { SEED_USERNAMES, displayNameFor, userIdFor } from './seed-data';

/** npm run token -- <username> [--id <userId>]: a 24 h HS256 token signed with the configured secret. */
async function main() {
  const { values, positionals } = parseArgs({ options: { id: { type: 'string' } }, allowPositionals: true });
  const username = positionals[0];
  if (!username || !UsernameSchema.safeParse(username).success) {
    process.stderr.write('usage: npm run token -- <username> [--id <userId>]   (username: 3-32 of [A-Za-z0-9_.-])\n');
    process.exit(2);
  }
  const config = loadConfig();
  if (config.JWT_JWKS_URL) {
    process.stderr.write('token: JWT_JWKS_URL is set, so tokens come from your identity provider; this command signs HS256 tokens only\n');
    process.exit(2);
  }
  const seeded = (SEED_USERNAMES as readonly string[]).includes(username.toLowerCase());
  const claims: Record<string, string> = { username };
  if (seeded) claims.name = displayNameFor(username.toLowerCase());
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(values.id ?? userIdFor(username))
    .setIssuedAt()
    .setExpirationTime('24h');
  if (config.JWT_ISSUER) jwt.setIssuer(config.JWT_ISSUER);
  if (config.JWT_AUDIENCE) jwt.setAudience(config.JWT_AUDIENCE);
  process.stdout.write(`${await jwt.sign(new TextEncoder().encode(config.JWT_SECRET))}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`token: ${(err as Error).message}\n`);
  process.exit(1);
});
