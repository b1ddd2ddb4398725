/**
 * Every JWT secret written down anywhere in this repository: the code's
 * default, docker-compose.yml's, the Kubernetes dev overlay's, the tests'.
 * Anyone who has read the repository can sign tokens with them for any user,
 * so NODE_ENV=production refuses each one (config.ts). test/committed-secrets.test.ts
 * scans the repository and fails when a secret is committed that is not here.
 */
export const COMMITTED_JWT_SECRETS: readonly string[] = [
  // packages/platform/src/config.ts DEV_JWT_SECRET, .env.example, docs/configuration.md
  'dev-only-secret-change-me-0123456789',
  // docker-compose.yml's development default, docs/development.md
  'compose-dev-secret-not-for-production-0123456789',
  // deploy/k8s/overlays/dev/kustomization.yaml
  'dev-only-jwt-secret-for-chat-k8s-0000000',
  // test/helpers/client.ts TEST_SECRET, services/gateway/test/auth.test.ts
  'test-secret-0123456789-0123456789-abcdef',
  'unit-secret-0123456789-0123456789-abcdef',
  // test/dev-sign-in.test.ts
  'an-operator-chosen-secret-of-32-bytes!!',
];

/**
 * Every NATS password written down in this repository: compose's default and
 * the Kubernetes dev overlay's. With one of them, any workload that reaches
 * the bus speaks as a chat service (an actor of its choosing), so
 * NODE_ENV=production refuses them too (config.ts).
 */
export const COMMITTED_NATS_PASSWORDS: readonly string[] = [
  // docker-compose.yml (NATS_PASSWORD's development default)
  'compose-dev-nats-password-0123456789',
  // deploy/k8s/overlays/dev/kustomization.yaml
  'dev-only-nats-password-for-chat-k8s',
];

/**
 * Why a NOTIFICATION_WEBHOOK_SECRET is unusable, or undefined when it is fine:
 * `whsec_` and the base64 of the key, as Standard Webhooks writes secrets, the
 * key at least 24 bytes (the specification's lower bound).
 */
export function webhookSecretProblem(value: string): string | undefined {
  const m = /^whsec_([A-Za-z0-9+/]+={0,2})$/.exec(value);
  if (!m || m[1]!.length % 4 !== 0) return 'must be "whsec_" followed by base64 (Standard Webhooks), e.g. whsec_$(openssl rand -base64 32)';
  const bytes = Buffer.from(m[1]!, 'base64').length;
  if (bytes < 24) return `must hold a key of at least 24 bytes (this one has ${bytes}); e.g. whsec_$(openssl rand -base64 32)`;
  return undefined;
}
