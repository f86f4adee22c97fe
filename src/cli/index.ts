import { Command } from 'commander';
import { serveForever } from '../server.js';
import { VERSION } from '../version.js';
import { registerBackup, registerRestore } from './backup.js';
import { CliError, cliConfig } from './context.js';
import { registerDoctor } from './doctor.js';
import { registerKeys } from './keys.js';
import { registerMigrate } from './migrate.js';
import { registerUsers } from './users.js';

export function buildProgram(): Command {
  const program = new Command('colloquy')
    .description('Colloquy: a self-hosted, production-grade AI chat backend')
    .version(VERSION)
    .showHelpAfterError();

  program
    .command('serve')
    .description('start the HTTP server (PORT, HOST and the rest come from the environment and .env)')
    .action(() => serveForever(cliConfig()));

  registerMigrate(program);
  registerUsers(program);
  registerKeys(program);
  registerDoctor(program);
  registerBackup(program);
  registerRestore(program);
  return program;
}

export async function runCli(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    if (err instanceof CliError) {
      console.error(`colloquy: ${err.message}`);
      process.exitCode = err.exitCode;
      return;
    }
    console.error(`colloquy: ${(err as Error).message}`);
    process.exitCode = 1;
  }
}
