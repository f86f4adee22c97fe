import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Db } from '../../src/db/database.js';
import { type ChatStack, eventually, sseData } from '../helpers/chat-stack.js';

/**
 * A steady mix of conversation turns (streamed and not) and /v1 completions against a chat stack, every
 * request under a deadline, and the checks of issue #8's invariants on what came back and what was stored.
 */
export interface Outcome {
  kind: 'turn' | 'create' | 'v1' | 'read';
  stream: boolean;
  status: number; // 0: the deadline passed (a hang); -1: the connection failed
  startedAt: number;
  ms: number;
  retryAfter: string | null;
  code: string | null;
  body: string;
  /** The user message a turn sent (unique per turn). */
  content?: string;
  conversationId?: string;
}

export interface Traffic {
  conversations: string[];
  /** The outcomes so far (the workers keep going). */
  outcomes(): Outcome[];
  /** Stops the workers once their current request ends (again: no-op); every outcome so far. */
  stop(): Promise<Outcome[]>;
}

let sequence = 0;
const running = new Set<Traffic>();

/** For after() hooks: a scenario that failed midway must not leave its workers looping. */
export async function stopAllTraffic() {
  await Promise.all([...running].map((t) => t.stop()));
}

/** Logs in the stack's user and creates `count` conversations (one per turn worker: no 409 between turns). */
export async function prepareConversations(s: ChatStack, count: number) {
  const login = await fetch(`${s.url}/api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: 'chat-user@example.com', password: 'a-long-enough-password' }),
  });
  assert.equal(login.status, 200);
  const token = ((await login.json()) as { access_token: string }).access_token;
  const conversations: string[] = [];
  for (let i = 0; i < count; i++) {
    const res = await fetch(`${s.url}/api/conversations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini' }),
    });
    assert.equal(res.status, 201);
    conversations.push(((await res.json()) as { id: string }).id);
  }
  return { token, conversations };
}

/** One request with a deadline; never throws. */
async function send(
  kind: Outcome['kind'],
  stream: boolean,
  url: string,
  init: RequestInit,
  deadlineMs: number,
  extra: Partial<Outcome> = {},
): Promise<Outcome> {
  const startedAt = Date.now();
  const outcome = (status: number, body: string, headers?: Headers): Outcome => {
    let code: string | null = null;
    try {
      code = (JSON.parse(body) as { error?: { code?: string } }).error?.code ?? null;
    } catch {}
    return {
      kind,
      stream,
      status,
      startedAt,
      ms: Date.now() - startedAt,
      retryAfter: headers?.get('retry-after') ?? null,
      code,
      body,
      ...extra,
    };
  };
  try {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(deadlineMs) });
    return outcome(res.status, await res.text(), res.headers);
  } catch (err) {
    const timedOut = (err as Error).name === 'TimeoutError';
    return outcome(timedOut ? 0 : -1, String(err));
  }
}

export function startTraffic(
  s: ChatStack,
  prepared: { token: string; conversations: string[] },
  options: { v1Workers: number; deadlineMs: number; reads?: boolean; maxRunMs?: number },
): Traffic {
  // Bounded by a deadline and a count as well as by stop() (which after() hooks call through stopAllTraffic):
  // a scenario that fails before stopping its traffic cannot leave it running.
  let active = true;
  const until = Date.now() + (options.maxRunMs ?? 180_000);
  const outcomes: Outcome[] = [];
  const going = () => active && Date.now() < until && outcomes.length < 50_000;
  const auth = { authorization: `Bearer ${prepared.token}`, 'content-type': 'application/json' };
  const turnWorker = async (first: string) => {
    let conversationId = first;
    for (let i = 0; going(); i++) {
      const content = `turn ${++sequence} at ${Date.now()}`;
      const stream = i % 2 === 0;
      const turn = await send(
        'turn',
        stream,
        `${s.url}/api/conversations/${conversationId}/messages`,
        { method: 'POST', headers: auth, body: JSON.stringify({ content, stream }) },
        options.deadlineMs,
        { content, conversationId },
      );
      outcomes.push(turn);
      if (turn.code === 'generation_in_progress') {
        // The last reply is not saved yet (the database is down): carry on in a new conversation, as the
        // console would, so writes keep being tried.
        const created = await send(
          'create',
          false,
          `${s.url}/api/conversations`,
          { method: 'POST', headers: auth, body: JSON.stringify({ model: 'gpt-4o-mini' }) },
          options.deadlineMs,
        );
        outcomes.push(created);
        if (created.status === 201) {
          conversationId = (JSON.parse(created.body) as { id: string }).id;
          prepared.conversations.push(conversationId);
        }
      }
      if (options.reads) {
        outcomes.push(
          await send(
            'read',
            false,
            `${s.url}/api/conversations/${conversationId}/messages`,
            { headers: auth },
            options.deadlineMs,
            { conversationId },
          ),
        );
      }
      await sleep(20);
    }
  };
  const v1Worker = async () => {
    for (let i = 0; going(); i++) {
      const stream = i % 2 === 1;
      outcomes.push(
        await send(
          'v1',
          stream,
          `${s.url}/v1/chat/completions`,
          {
            method: 'POST',
            headers: { authorization: `Bearer ${s.apiKey}`, 'content-type': 'application/json' },
            body: JSON.stringify({
              model: 'gpt-4o-mini',
              stream,
              messages: [{ role: 'user', content: 'hi' }],
            }),
          },
          options.deadlineMs,
        ),
      );
      await sleep(20);
    }
  };
  const workers = [
    ...prepared.conversations.map(turnWorker),
    ...Array.from({ length: options.v1Workers }, v1Worker),
  ];
  const traffic: Traffic = {
    conversations: prepared.conversations,
    outcomes: () => [...outcomes],
    stop: async () => {
      active = false;
      running.delete(traffic);
      await Promise.all(workers);
      return outcomes;
    },
  };
  running.add(traffic);
  return traffic;
}

/** The conversation API's SSE event names, in order. */
const eventNames = (body: string) => [...body.matchAll(/^event: (\S+)$/gm)].map((m) => m[1]);

/**
 * Invariants on one answer: it came before its deadline; no 5xx but a 503 with Retry-After (and one of
 * `codes`) or a 502/504 naming the upstream; a stream that started ends in-band (done/error, [DONE]).
 */
export function assertCleanOutcome(o: Outcome, codes: string[]) {
  const what = `${o.kind}${o.stream ? ' stream' : ''} sent at ${new Date(o.startedAt).toISOString()}, answered after ${o.ms} ms`;
  assert.notEqual(o.status, 0, `${what}: no answer before the deadline`);
  assert.notEqual(o.status, -1, `${what}: the connection failed: ${o.body}`);
  if (o.status >= 500) {
    assert.ok([502, 503, 504].includes(o.status), `${what}: ${o.status} ${o.body}`);
    if (o.status === 503) {
      assert.ok(o.retryAfter, `${what}: 503 without Retry-After: ${o.body}`);
      assert.ok(codes.includes(o.code ?? ''), `${what}: 503 code ${o.code}: ${o.body}`);
    } else assert.match(o.body, /upstream|provider|openai/i, `${what}: ${o.body}`);
  }
  if (o.status === 200 && o.stream) {
    if (o.kind === 'v1') assert.equal(sseData(o.body).at(-1), '[DONE]', `${what}: cut stream: ${o.body}`);
    else assert.ok(['done', 'error'].includes(eventNames(o.body).at(-1) ?? ''), `${what}: cut: ${o.body}`);
  }
}

/**
 * Invariants on what was stored, once the fault is gone: every acknowledged (2xx) user message is there,
 * nothing the server never received is, and no reply is left 'streaming'.
 */
export async function assertNoMessageLost(db: Db, outcomes: Outcome[], conversations: string[]) {
  const rows = () =>
    db
      .selectFrom('messages')
      .select(['role', 'content', 'status', 'error'])
      .where('conversation_id', 'in', conversations)
      .execute();
  await eventually(
    async () => (await rows()).every((r) => r.status !== 'streaming'),
    10_000,
    'no reply left streaming',
  );
  const stored = await rows();
  const users = new Set(stored.filter((r) => r.role === 'user').map((r) => r.content));
  const turns = outcomes.filter((o) => o.kind === 'turn');
  const acknowledged = turns.filter((o) => o.status >= 200 && o.status < 300);
  for (const o of acknowledged) assert.ok(users.has(o.content!), `acknowledged but lost: ${o.content}`);
  const sent = new Set(turns.map((o) => o.content));
  for (const content of users) assert.ok(sent.has(content), `stored but never sent: ${content}`);
  for (const r of stored.filter((r) => r.role === 'assistant')) {
    assert.ok(['complete', 'partial', 'error'].includes(r.status), `reply status ${r.status}`);
    if (r.status !== 'complete') assert.ok(r.error, `a ${r.status} reply says why`);
  }
  const replies: Record<string, number> = {};
  for (const r of stored.filter((r) => r.role === 'assistant'))
    replies[r.status] = (replies[r.status] ?? 0) + 1;
  return { stored: stored.length, acknowledged: acknowledged.length, turns: turns.length, replies };
}

/** Status counts, e.g. {"200":41,"201":40,"503":12}. */
export const tally = (outcomes: Outcome[]) =>
  outcomes.reduce<Record<string, number>>((acc, o) => {
    acc[o.status] = (acc[o.status] ?? 0) + 1;
    return acc;
  }, {});
