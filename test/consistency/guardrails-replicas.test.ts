import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { bearer, TEST_MASTER_KEY } from '../helpers/app.js';
import { DIALECTS } from '../helpers/databases.js';
import { type Replicas, redisServerInstalled, startReplicas } from '../helpers/replicas.js';

const admin = bearer(TEST_MASTER_KEY);
/**
 * How long a change may take to reach the other replica here: far below the stores' periodic reload (30 s),
 * so only the Redis announcement can make it. Not a speed assertion (the promise is "within a second").
 */
const PROPAGATION_DEADLINE_MS = 3_000;

/** Two replicas on one database and one Redis: a guardrail written on A binds B at once (issue 22). */
for (const dialect of DIALECTS) {
  describe(`stored guardrails across two replicas (${dialect})`, { skip: !redisServerInstalled }, () => {
    let r: Replicas;
    before(async () => {
      r = await startReplicas({ a: { dialect, routing: null }, env: {} });
    });
    after(() => r?.close());

    const urlOf = (replica: 'a' | 'b') => (replica === 'a' ? r.a.url : r.bUrl);
    const chat = async (replica: 'a' | 'b') => {
      const res = await fetch(`${urlOf(replica)}/v1/chat/completions`, {
        method: 'POST',
        headers: { ...bearer(r.a.apiKey), 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
      });
      return { status: res.status, body: (await res.json()) as { error?: { code: string } } };
    };
    const until = async (attempt: () => Promise<boolean>, what: string) => {
      const deadline = Date.now() + PROPAGATION_DEADLINE_MS;
      for (let i = 1; i <= 200; i++) {
        if (await attempt()) return;
        if (Date.now() > deadline) break;
        await sleep(20);
      }
      assert.fail(`${what} did not happen within ${PROPAGATION_DEADLINE_MS} ms`);
    };

    it('a guardrail added on A blocks on B at once; removed on A, B lets the answer through again', async () => {
      r.a.fake.set({ reply: 'This answer has the forbidden phrase.' });
      // B has just built "no guardrails" for this key: only the announcement can change its mind this soon.
      assert.equal((await chat('b')).status, 200);
      const created = await fetch(`${r.a.url}/api/guardrails`, {
        method: 'POST',
        headers: { ...admin, 'content-type': 'application/json' },
        body: JSON.stringify({
          name: 'house-rules',
          check: 'regex',
          deny: ['(?i)forbidden phrase'],
          stage: 'output',
          action: 'block',
          scope: 'key',
          subject_id: r.a.apiKeyId,
        }),
      });
      assert.equal(created.status, 201, await created.clone().text());
      const { id } = (await created.json()) as { id: string };
      // A binds before answering the write.
      assert.equal((await chat('a')).body.error?.code, 'guardrail_blocked');
      await until(async () => (await chat('b')).body.error?.code === 'guardrail_blocked', 'B blocking');
      const removed = await fetch(`${r.a.url}/api/guardrails/${id}`, { method: 'DELETE', headers: admin });
      assert.equal(removed.status, 204);
      await until(async () => (await chat('b')).status === 200, 'B serving again');
    });
  });
}
