import WebSocket from 'ws';

/** WebSocket phases of `npm run bench`: send→receive latency at a steady rate, and connections held. */

type Token = (i: number) => Promise<{ username: string; token: string }>;

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;

function open(wsBase: string, token: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${wsBase}/api/chat/ws?token=${token}`);
    ws.once('message', () => resolve(ws)); // hello
    ws.once('error', reject);
  });
}

async function gatewayMemory(base: string): Promise<{ rss: number; heap: number }> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const read = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)`, 'm').exec(text)?.[1] ?? NaN);
  return { rss: read('process_resident_memory_bytes'), heap: read('nodejs_heap_size_used_bytes') };
}

export async function wsLatency(base: string, api: string, token: Token, seconds: number, ratePerSec: number) {
  const wsBase = base.replace(/^http/, 'ws');
  const alice = await token(1_000_001);
  const bob = await token(1_000_002);
  await fetch(`${api}/conversations?limit=1`, { headers: { authorization: `Bearer ${bob.token}` } });
  const conv = (await (await fetch(`${api}/conversations/with/${bob.username}`, { headers: { authorization: `Bearer ${alice.token}` } })).json()) as { data: { id: string } };
  const [sender, receiver] = await Promise.all([open(wsBase, alice.token), open(wsBase, bob.token)]);
  const sentAt = new Map<string, number>();
  const samples: number[] = [];
  receiver.on('message', (raw) => {
    const f = JSON.parse(String(raw)) as { type: string; payload?: { message?: { clientMessageId?: string } } };
    const key = f.type === 'message.new' ? f.payload?.message?.clientMessageId : undefined;
    const t0 = key ? sentAt.get(key) : undefined;
    if (t0 !== undefined) samples.push(performance.now() - t0);
  });
  const total = Math.floor(seconds * ratePerSec);
  for (let i = 0; i < total; i++) {
    const key = `b${Date.now().toString(36)}${i}`;
    sentAt.set(key, performance.now());
    sender.send(JSON.stringify({ type: 'message.send', payload: { conversationId: conv.data.id, content: `ws bench ${i}`, clientMessageId: key } }));
    await new Promise((r) => setTimeout(r, 1000 / ratePerSec));
  }
  await new Promise((r) => setTimeout(r, 1000));
  sender.close();
  receiver.close();
  const s = samples.sort((a, b) => a - b);
  return { sent: total, received: s.length, p50: percentile(s, 50), p95: percentile(s, 95), p99: percentile(s, 99) };
}

export async function wsConnections(base: string, token: Token, count: number) {
  const wsBase = base.replace(/^http/, 'ws');
  const users = await Promise.all(Array.from({ length: 50 }, (_, i) => token(2_000_000 + i)));
  await new Promise((r) => setTimeout(r, 2000));
  const before = await gatewayMemory(base);
  const sockets: WebSocket[] = [];
  const started = performance.now();
  for (let i = 0; i < count; i += 100) {
    sockets.push(...(await Promise.all(Array.from({ length: Math.min(100, count - i) }, (_, j) => open(wsBase, users[(i + j) % users.length]!.token)))));
  }
  const openMs = performance.now() - started;
  await new Promise((r) => setTimeout(r, 1000));
  const after = await gatewayMemory(base);
  for (const ws of sockets) ws.close();
  const mb = (b: number) => b / 2 ** 20;
  return {
    held: sockets.length,
    openSeconds: openMs / 1000,
    rssBeforeMb: mb(before.rss),
    rssAfterMb: mb(after.rss),
    heapBeforeMb: mb(before.heap),
    heapAfterMb: mb(after.heap),
    perConnectionKb: (after.rss - before.rss) / sockets.length / 1024,
  };
}
