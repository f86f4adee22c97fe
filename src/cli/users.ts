import type { Command } from 'commander';
import { AppError } from '../core/errors.js';
import { isUniqueViolation } from '../db/database.js';
import { assertPasswordAcceptable, hashPassword } from '../features/auth/passwords.js';
import { isAcceptableEmail } from '../features/users/email.js';
import { type Role, toPublicUser, UserStore } from '../features/users/store.js';
import { CliError, withDatabase } from './context.js';
import { readSecret } from './read-secret.js';

export function registerUsers(program: Command) {
  const users = program.command('users').description('manage user accounts');

  users
    .command('create')
    .description('create a user (the way to make the first admin when sign-up is closed)')
    .requiredOption('--email <email>', 'the sign-in email')
    .option('--password <password>', 'the password (visible in shell history: prefer --password-stdin)')
    .option('--password-stdin', 'read the password from standard input')
    .option('--role <role>', 'admin or user', 'user')
    .option('--name <displayName>', 'display name')
    .option('--json', 'machine-readable output')
    .action(async (options) => {
      const role = options.role as Role;
      if (role !== 'admin' && role !== 'user') throw new CliError('--role must be admin or user');
      if (!isAcceptableEmail(options.email))
        throw new CliError(`--email ${JSON.stringify(options.email)} is not a valid email address`);
      const password: string = options.passwordStdin ? await readSecret() : options.password;
      if (options.passwordStdin && !password)
        throw new CliError(
          '--password-stdin read an empty password: pipe it in, e.g. printf \'%s\\n\' "$PASSWORD" | colloquy users create …',
        );
      if (!password) throw new CliError('give --password or --password-stdin');
      try {
        assertPasswordAcceptable(password, options.email);
      } catch (err) {
        if (err instanceof AppError) throw new CliError(err.message);
        throw err;
      }
      await withDatabase(async ({ db }) => {
        try {
          const row = await new UserStore(db).create({
            email: options.email,
            passwordHash: await hashPassword(password),
            role,
            displayName: options.name ?? null,
          });
          const user = toPublicUser(row);
          console.log(
            options.json ? JSON.stringify(user) : `created ${user.role} ${user.email} (${user.id})`,
          );
        } catch (err) {
          if (isUniqueViolation(err)) throw new CliError(`a user with email ${options.email} already exists`);
          throw err;
        }
      });
    });

  users
    .command('list')
    .description('list users')
    .option('--json', 'machine-readable output')
    .action(async (options) => {
      await withDatabase(async ({ db }) => {
        const rows = (await new UserStore(db).list({ limit: 10_000 })).map(toPublicUser);
        if (options.json) return console.log(JSON.stringify(rows));
        for (const u of rows)
          console.log(`${u.id}  ${u.role.padEnd(5)}  ${u.disabled ? 'disabled' : 'active  '}  ${u.email}`);
      });
    });
}
