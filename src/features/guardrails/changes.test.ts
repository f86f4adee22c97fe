import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { markSuiteRan } from '../../../test/helpers/databases.js';
import { createRedis, waitForRedis } from '../../core/redis.js';
import { GuardrailChanges } from './changes.js';

const REDIS_URL = process.env.TEST_REDIS_URL;
const logger = pino({ level: 'silent' });

describe('guardrail changes through Redis', { skip: !REDIS_URL && 'TEST_REDIS_URL is not set' }, () => {
  it('a replica reloads once its subscription holds, then on every change another replica announces', async () => {
    markSuiteRan('redis');
    // A channel of its own: the Redis is shared with other suites.
    const channel = `colloquy-test:guardrails:${randomBytes(5).toString('hex')}`;
    const redisA = createRedis(REDIS_URL!, logger);
    const redisB = createRedis(REDIS_URL!, logger);
    const a = new GuardrailChanges({ redis: redisA, logger, channel });
    const b = new GuardrailChanges({ redis: redisB, logger, channel });
    let reloads = 0;
    b.onChange(() => reloads++);
    try {
      await Promise.all([waitForRedis(redisA, 5_000), waitForRedis(redisB, 5_000)]);
      // Nothing announced yet: a change written between B's first load and its subscription would be missed
      // until the periodic reload, so the subscription itself asks for one (bounded wait).
      for (let i = 0; i < 300 && reloads === 0; i++) await sleep(10);
      assert.equal(reloads, 1, 'B reloaded once its subscription held');
      await a.announce();
      for (let i = 0; i < 300 && reloads === 1; i++) await sleep(10);
      assert.equal(reloads, 2, "B reloaded on A's announcement");
    } finally {
      a.close();
      b.close();
      redisA.disconnect();
      redisB.disconnect();
    }
  });
});
