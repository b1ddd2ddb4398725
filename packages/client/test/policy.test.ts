import { describe, expect, it } from 'vitest';
import { classifySeq, fullJitterDelay, RECONNECT_INITIAL_DELAY_MS, RECONNECT_MAX_DELAY_MS } from '../src/policy';
import { SendQueue } from '../src/send-queue';
import type { PendingSend } from '../src/types';
import { MemoryStorage } from './net';

describe('reconnect backoff (full jitter)', () => {
  it('draws from [0, min(cap, 0.5 s · 2^attempt)), reaching the 20 s cap', () => {
    expect(RECONNECT_INITIAL_DELAY_MS).toBe(500);
    expect(RECONNECT_MAX_DELAY_MS).toBe(20_000);
    const ceilings = [0, 1, 2, 3, 5, 6, 10, 50, 5000].map((n) => fullJitterDelay(n, undefined, undefined, () => 0.999999));
    expect(ceilings).toEqual([499, 999, 1999, 3999, 15999, 19999, 19999, 19999, 19999]);
    expect(fullJitterDelay(7, undefined, undefined, () => 0)).toBe(0);
    for (let i = 0; i < 200; i++) {
      const d = fullJitterDelay(3);
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThan(4000);
    }
  });
});

describe('seq order', () => {
  it('applies the next seq, drops a repeat, and stops at a hole', () => {
    expect(classifySeq(4, 5)).toBe('apply');
    expect(classifySeq(4, 4)).toBe('duplicate');
    expect(classifySeq(4, 1)).toBe('duplicate');
    expect(classifySeq(4, 6)).toBe('gap');
    expect(classifySeq(0, 1)).toBe('apply');
  });
});

describe('SendQueue', () => {
  const entry = (id: string, at: string, conversationId = 'c1'): PendingSend => ({
    clientMessageId: id,
    conversationId,
    content: id,
    state: 'pending',
    createdAt: at,
    attempts: 0,
  });

  it('keeps the order of sending, per user, in storage; another user never sees the first one’s queue', () => {
    const storage = new MemoryStorage();
    const q = new SendQueue(storage, 'chat');
    q.add(entry('b', '2026-01-01T00:00:02.000Z'));
    expect(storage.map.size).toBe(0); // no user yet: nothing to key it by
    q.bindUser('u1');
    q.add(entry('a', '2026-01-01T00:00:01.000Z', 'c2'));
    expect(q.list().map((e) => e.clientMessageId)).toEqual(['a', 'b']);
    expect(q.list('c2').map((e) => e.clientMessageId)).toEqual(['a']);

    const reloaded = new SendQueue(storage, 'chat');
    reloaded.bindUser('u1');
    expect(reloaded.list().map((e) => e.clientMessageId)).toEqual(['a', 'b']);
    reloaded.bindUser('u2');
    expect(reloaded.list()).toEqual([]);

    const sent = reloaded.confirm('a', {} as never);
    expect(sent).toBeUndefined();
    const back = new SendQueue(storage, 'chat');
    back.bindUser('u1');
    expect(back.confirm('a', { id: 'm1' } as never)).toMatchObject({ clientMessageId: 'a', state: 'sent', message: { id: 'm1' } });
    expect(JSON.parse(storage.getItem('chat:pending:v1:u1')!).map((e: PendingSend) => e.clientMessageId)).toEqual(['b']);
    back.remove('b');
    expect(storage.getItem('chat:pending:v1:u1')).toBeNull();
  });

  it('ignores unreadable storage instead of breaking the page', () => {
    const storage = new MemoryStorage();
    storage.setItem('chat:pending:v1:u1', '{not json');
    storage.setItem('chat:pending:v1:u2', JSON.stringify([{ clientMessageId: 1 }, entry('ok', '2026-01-01T00:00:00.000Z')]));
    const q = new SendQueue(storage, 'chat');
    q.bindUser('u1');
    expect(q.list()).toEqual([]);
    const q2 = new SendQueue(storage, 'chat');
    q2.bindUser('u2');
    expect(q2.list().map((e) => e.clientMessageId)).toEqual(['ok']);
  });
});
