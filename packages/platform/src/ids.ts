import { v7 as uuidv7, validate, version } from 'uuid';

export const newId = (): string => uuidv7();

/** True for any canonical UUID: ids the chat creates are UUIDv7, but older data may hold others. */
export const isUuid = (s: string): boolean => validate(s) && version(s) >= 1;

/** PostgreSQL timestamps carry microseconds; the API shows milliseconds. */
export const iso = (d: Date | string): string => (typeof d === 'string' ? new Date(d) : d).toISOString();
