import { v5 as uuidv5 } from 'uuid';

/** Namespace of user ids derived from usernames (seeded users and `npm run token` alike). */
const USER_NAMESPACE = '6f1d7c1e-2b0a-4b8e-9a51-3c7f2d9e8a10';

export const SEED_USERNAMES = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'judy'] as const;
export const SEED_MESSAGES = 1000;

/** A stable id for a username: the same on every machine and every run. */
export const userIdFor = (username: string): string => uuidv5(username.toLowerCase(), USER_NAMESPACE);

export const displayNameFor = (username: string): string => username.charAt(0).toUpperCase() + username.slice(1);
