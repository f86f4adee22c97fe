import type { Command } from 'commander';
import { ApiKeyStore, toPublicApiKey } from '../features/api-keys/store.js';
import { UserStore } from '../features/users/store.js';
import { CliError, withDatabase } from './context.js';

export function registerKeys(program: Command) {
  const keys = program.command('keys').description('manage API keys');

  keys
    .command('create')
    .description('create an API key for a user; the key is printed once')
    .requiredOption('--user <email>', 'the owner’s email')
    .requiredOption('--name <name>', 'what the key is for')
    .option('--expires-in-days <days>', 'expire after this many days', (v) => Number.parseInt(v, 10))
    .option('--json', 'machine-readable output')
    .action(async (options) => {
      const days = options.expiresInDays as number | undefined;
      if (days !== undefined && !(days >= 1 && days <= 3650))
        throw new CliError('--expires-in-days must be 1 to 3650');
      await withDatabase(async ({ db }) => {
        const user = await new UserStore(db).findByEmail(options.user);
        if (!user) throw new CliError(`no user with email ${options.user}`);
        const expiresAt = days ? new Date(Date.now() + days * 86_400_000).toISOString() : null;
        const { row, key } = await new ApiKeyStore(db).create({
          userId: user.id,
          name: options.name,
          expiresAt,
        });
        if (options.json) return console.log(JSON.stringify({ ...toPublicApiKey(row), key }));
        console.log(`created key ${row.id} (${row.prefix}…) for ${user.email}`);
        console.log(key);
        console.error('Store it now: it will not be shown again.');
      });
    });

  keys
    .command('list')
    .description('list API keys (prefix, owner, last use, state)')
    .option('--user <email>', 'only this user’s keys')
    .option('--json', 'machine-readable output')
    .action(async (options) => {
      await withDatabase(async ({ db }) => {
        let userId: string | undefined;
        if (options.user) {
          const user = await new UserStore(db).findByEmail(options.user);
          if (!user) throw new CliError(`no user with email ${options.user}`);
          userId = user.id;
        }
        const rows = (await new ApiKeyStore(db).list({ userId, limit: 10_000 })).map(toPublicApiKey);
        if (options.json) return console.log(JSON.stringify(rows));
        for (const k of rows) {
          const state = k.revoked_at
            ? 'revoked'
            : k.expires_at && k.expires_at <= new Date().toISOString()
              ? 'expired'
              : 'active';
          console.log(
            `${k.id}  ${k.prefix}…  ${state.padEnd(7)}  last used ${k.last_used_at ?? 'never'}  ${k.name}`,
          );
        }
      });
    });

  keys
    .command('revoke')
    .description('revoke an API key by id')
    .argument('<id>', 'the key id (key_…)')
    .action(async (id: string) => {
      await withDatabase(async ({ db }) => {
        const store = new ApiKeyStore(db);
        if (!(await store.findById(id))) throw new CliError(`no API key ${id}`);
        await store.revoke(id);
        console.log(`revoked ${id}`);
      });
    });
}
