import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import pino from 'pino';
import { markSuiteRan } from '../../../test/helpers/databases.js';
import { createRedis, waitForRedis } from '../../core/redis.js';
import { LimitInvalidations } from './invalidations.js';

const REDIS_URL = process.env.TEST_REDIS_URL;
const logger = pino({ level: 'silent' });
type Heard = [string, string, string];

describe('limit invalidations without Redis', () => {
  it('apply in this process at once', async () => {
    const local = new LimitInvalidations();
    const heard: Heard[] = [];
    local.onChange((...args) => heard.push(args));
    await local.announce('overrides', 'user', 'usr_1');
    assert.deepEqual(heard, [['overrides', 'user', 'usr_1']]);
    local.close();
  });
});

describe('limit invalidations through Redis', { skip: !REDIS_URL && 'TEST_REDIS_URL is not set' }, () => {
  let redisA: Redis;
  let redisB: Redis;
  let a: LimitInvalidations;
  let b: LimitInvalidations;
  // A channel of its own: the Redis is shared with other suites.
  const channel = `colloquy-test:limits:${randomBytes(5).toString('hex')}`;
  const heardOnB: Heard[] = [];
  let heardOnSubscribe: Heard[] = [];

  before(async () => {
    markSuiteRan('redis');
    redisA = createRedis(REDIS_URL!, logger);
    redisB = createRedis(REDIS_URL!, logger);
    await Promise.all([waitForRedis(redisA, 5_000), waitForRedis(redisB, 5_000)]);
    a = new LimitInvalidations({ redis: redisA, channel, logger });
    b = new LimitInvalidations({ redis: redisB, channel, logger });
    b.onChange((...args) => heardOnB.push(args));
    // Subscribed once Redis counts a subscriber on the channel (bounded wait).
    for (let i = 0; i < 100; i++) {
      const [, count] = (await redisA.call('pubsub', 'numsub', channel)) as [string, number];
      if (Number(count) >= 2) break;
      await sleep(20);
    }
    // B's subscription answered: it has dropped every cached setting once (bounded wait).
    for (let i = 0; i < 200 && heardOnB.length < 4; i++) await sleep(10);
    heardOnSubscribe = heardOnB.splice(0);
  });
  after(() => {
    a?.close();
    b?.close();
    redisA?.disconnect();
    redisB?.disconnect();
  });

  const heardOnBAfter = async (count: number) => {
    for (let i = 0; i < 200 && heardOnB.length < count; i++) await sleep(10);
    return heardOnB;
  };

  it('once subscribed, a replica drops every cached setting (a change may have come before the subscription)', () => {
    assert.deepEqual(heardOnSubscribe.sort(), [
      ['budgets', 'key', '*'],
      ['budgets', 'user', '*'],
      ['overrides', 'key', '*'],
      ['overrides', 'user', '*'],
    ]);
  });

  it('a change announced on one instance reaches the other, and only well-formed ones are applied', async () => {
    await redisA.publish(channel, 'not json');
    await redisA.publish(channel, JSON.stringify(['budgets', 'team', 'x']));
    await redisA.publish(channel, JSON.stringify(['secrets', 'key', 'x']));
    await a.announce('budgets', 'key', 'key_1');
    await a.announce('overrides', 'user', 'usr_2');
    assert.deepEqual(await heardOnBAfter(2), [
      ['budgets', 'key', 'key_1'],
      ['overrides', 'user', 'usr_2'],
    ]);
  });
});
