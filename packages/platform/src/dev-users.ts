import { v5 as uuidv5 } from 'uuid';

/** Namespace of user ids derived from usernames (seeded users, `npm run token` and the gateway's development sign-in alike). */
const USER_NAMESPACE = '6f1d7c1e-2b0a-4b8e-9a51-3c7f2d9e8a10';

/** The users `npm run seed` creates; development sign-in offers exactly these. */
export const SEED_USERNAMES = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'judy'] as const;

/** A stable id for a username: the same on every machine and every run, so a token made anywhere names the seeded user. */
export const userIdFor = (username: string): string => uuidv5(username.toLowerCase(), USER_NAMESPACE);

export const displayNameFor = (username: string): string => username.charAt(0).toUpperCase() + username.slice(1);
