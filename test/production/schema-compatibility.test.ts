import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { sql } from 'kysely';
import { loadConfig } from '../../src/config/load-config.js';
import { createLogger } from '../../src/core/logger.js';
import { startServer } from '../../src/server.js';
import { startTestApp, TEST_MASTER_KEY, TEST_SECRET } from '../helpers/app.js';
import { DIALECTS } from '../helpers/databases.js';

/**
 * An older release after a rollback, on the schema a newer one left (issue 19, item 7): it starts and serves on
 * expand-only migrations it does not know, and says so (log, readiness); it refuses only a contract migration.
 */
interface Readiness {
  failing: string[];
  checks: Record<string, { status: string; detail?: string }>;
}

for (const dialect of DIALECTS) {
  describe(`${dialect}: an older release on a newer schema`, () => {
    it('serves on newer expand-only migrations, and readiness and the start log say so; a contract one is refused', async () => {
      const t = await startTestApp({ dialect });
      const insert = (name: string) =>
        sql`insert into schema_migrations (name, timestamp) values (${name}, ${new Date().toISOString()})`.execute(
          t.database.db,
        );
      try {
        await insert('9999-from-the-future');
        const ready = await t.inject({ method: 'GET', url: '/health/ready' });
        assert.equal(ready.statusCode, 200, ready.body);
        const report = ready.json() as Readiness;
        assert.equal(report.checks.schema?.status, 'ok');
        assert.match(report.checks.schema?.detail ?? '', /newer, compatible schema.*9999-from-the-future/);

        // A production start (no AUTO_MIGRATE) on that database: it starts, with a warning naming the migration.
        let logs = '';
        const destination = new Writable({
          write(chunk, _enc, done) {
            logs += chunk;
            done();
          },
        });
        const config = loadConfig(
          {
            SECRET_KEY: TEST_SECRET,
            COLLOQUY_ADMIN_KEY: TEST_MASTER_KEY,
            DATABASE_URL: t.testDb.url,
            PORT: '0',
            HOST: '127.0.0.1',
            AUTO_MIGRATE: 'false',
            OVERLOAD_MAX_EVENT_LOOP_DELAY_MS: '0',
          },
          { dotenvDir: null },
        );
        const logger = createLogger({ level: 'info', format: 'json', destination });
        const server = await startServer(config, logger);
        try {
          assert.equal((await fetch(`${server.url}/health/ready`)).status, 200);
          assert.match(logs, /"level":40[^\n]*newer, compatible schema[^\n]*9999-from-the-future/);
        } finally {
          await server.close();
        }

        await insert('9999-zz-drop-old-columns-contract');
        const refused = await t.inject({ method: 'GET', url: '/health/ready' });
        assert.equal(refused.statusCode, 503);
        const failing = refused.json() as Readiness;
        assert.deepEqual(failing.failing, ['schema']);
        assert.match(
          failing.checks.schema?.detail ?? '',
          /contract migration.*9999-zz-drop-old-columns-contract/,
        );
        await assert.rejects(startServer(config, logger), /cannot start on this database: .*contract/);
      } finally {
        await t.close();
      }
    });
  });
}
