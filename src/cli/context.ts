import { type Config, ConfigError, loadConfig } from '../config/load-config.js';
import { type DatabaseHandle, openDatabase } from '../db/database.js';
import { migrationStatus } from '../db/migrator.js';

/** Config errors and other failures end a CLI command with a readable message and a non-zero code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

export function cliConfig(): Config {
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(err.message, 2);
    throw err;
  }
}

/** Opens the configured database for one command; refuses to work on a schema that is behind. */
export async function withDatabase<T>(
  fn: (database: DatabaseHandle, config: Config) => Promise<T>,
): Promise<T> {
  const config = cliConfig();
  const database = openDatabase(config.database);
  try {
    const { pending } = await migrationStatus(database.db);
    if (pending.length)
      throw new CliError(`pending migrations (${pending.join(', ')}): run \`colloquy migrate up\` first`);
    return await fn(database, config);
  } finally {
    await database.close();
  }
}
