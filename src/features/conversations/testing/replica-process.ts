// A replica in a process of its own, for tests that kill one abruptly (SIGKILL mid-generation). It serves
// the database and Redis named by REPLICA_DATABASE_URL / REDIS_URL; its model says "Hello!", " How" and
// then never goes on (the test kills it there). Prints `LISTENING <url>` once it listens.
import { startTestApp } from '../../../../test/helpers/app.js';
import { FakeGateway, Gate } from './fake-gateway.js';

const url = process.env.REPLICA_DATABASE_URL!;
const gateway = new FakeGateway();
gateway.defaultScript = { chunks: ['Hello!', ' How', ' are you?'], holdAfter: 2, gate: new Gate() };
const app = await startTestApp({
  testDb: {
    dialect: url.startsWith('sqlite') ? 'sqlite' : url.startsWith('mysql') ? 'mysql' : 'postgres',
    url,
    drop: async () => {},
  },
  migrate: false,
  gateway,
  env: { REDIS_URL: process.env.REDIS_URL!, RATE_LIMIT_ENABLED: 'false' },
});
process.stdout.write(`LISTENING ${await app.listen()}\n`);
