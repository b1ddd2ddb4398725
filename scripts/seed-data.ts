// The seeded users live in @chat/platform, where the gateway's development sign-in finds them too.
export { SEED_USERNAMES, displayNameFor, userIdFor } from '@chat/platform';

export const SEED_MESSAGES = 1000;
