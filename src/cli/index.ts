import { Command } from 'commander';
import { VERSION } from '../version.js';
import { CliError, cliConfig } from './context.js';

type Register = (program: Command) => void;

/**
 * Subcommands, loaded only when named (or for help): `serve` then never loads the doctor's Redis client, the
 * backup tool's pg driver and the rest, which would stay in a long-running server's memory for nothing.
 */
const SUBCOMMANDS: Record<string, () => Promise<Register[]>> = {
  migrate: async () => [(await import('./migrate.js')).registerMigrate],
  users: async () => [(await import('./users.js')).registerUsers],
  keys: async () => [(await import('./keys.js')).registerKeys],
  doctor: async () => [(await import('./doctor.js')).registerDoctor],
  backup: async () => [(await import('./backup.js')).registerBackup],
  restore: async () => [(await import('./backup.js')).registerRestore],
};

/** The program with `serve` and the subcommands `argv` needs: the one it names, or all of them (help). */
export async function buildProgram(argv: string[] = []): Promise<Command> {
  const program = new Command('colloquy')
    .description('Colloquy: a self-hosted, production-grade AI chat backend')
    .version(VERSION)
    .showHelpAfterError()
    // The root's own flags only before the subcommand: otherwise a value such as `--password -Vx…` reads as
    // -V, and the command prints the version and exits 0 without doing its work.
    .enablePositionalOptions();

  program
    .command('serve')
    .description('start the HTTP server (PORT, HOST and the rest come from the environment and .env)')
    .action(async () => {
      const config = cliConfig();
      const { serveForever } = await import('../server.js');
      await serveForever(config);
    });

  const named = argv[2];
  if (named === 'serve') return program;
  const wanted = named && named in SUBCOMMANDS ? [named] : Object.keys(SUBCOMMANDS);
  for (const name of wanted)
    for (const register of await (SUBCOMMANDS[name] as () => Promise<Register[]>)()) register(program);
  return program;
}

export async function runCli(argv: string[]): Promise<void> {
  try {
    await (await buildProgram(argv)).parseAsync(argv);
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
