import type { Command } from 'commander';
import { describeDatabaseTarget } from '../config/database-url.js';
import { openDatabase } from '../db/database.js';
import {
  isContractMigration,
  migrateDown,
  migrateUp,
  migrationStatus,
  REQUIRED_SCHEMA_VERSION,
} from '../db/migrator.js';
import { cliConfig } from './context.js';

export function registerMigrate(program: Command) {
  const migrate = program.command('migrate').description('apply, undo or show database migrations');

  const run = (fn: (db: ReturnType<typeof openDatabase>) => Promise<void>) => async () => {
    const config = cliConfig();
    // Building an index on a big table may rightly take longer than any request's query timeout.
    const database = openDatabase({ ...config.database, queryTimeoutMs: 0 });
    console.error(`database: ${describeDatabaseTarget(config.database)}`);
    try {
      await fn(database);
    } finally {
      await database.close();
    }
  };

  migrate
    .command('up')
    .description('apply every pending migration')
    .action(
      run(async ({ db }) => {
        const before = await migrationStatus(db);
        const applied = await migrateUp(db);
        if (applied.length) console.log(`applied: ${applied.join(', ')}`);
        else
          console.log(before.unknown.length ? `nothing to apply: ${before.summary}` : 'already up to date');
      }),
    );

  migrate
    .command('down')
    .description('undo the newest applied migration')
    .action(
      run(async ({ db }) => {
        const undone = await migrateDown(db);
        console.log(undone.length ? `undone: ${undone.join(', ')}` : 'nothing to undo');
      }),
    );

  migrate
    .command('status')
    .description('list applied and pending migrations')
    .option('--json', 'machine-readable output')
    .action(async (options: { json?: boolean }) => {
      await run(async ({ db }) => {
        const status = await migrationStatus(db);
        // A schema this release cannot run on is a failure scripts must see.
        if (!status.compatible) process.exitCode = 1;
        if (options.json) {
          console.log(JSON.stringify({ ...status, required: REQUIRED_SCHEMA_VERSION }));
          return;
        }
        for (const name of status.applied) console.log(`  applied  ${name}`);
        for (const name of status.pending) console.log(`  pending  ${name}`);
        for (const name of status.unknown)
          console.log(
            `  newer    ${name} (applied by a newer release${isContractMigration(name) ? '; contract: incompatible' : ''})`,
          );
        console.log(status.compatible ? status.summary : `incompatible: ${status.summary}`);
      })();
    });
}
