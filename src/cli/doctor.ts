import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { parse as parseDotenv } from 'dotenv';
import { describeDatabaseTarget } from '../config/database-url.js';
import { type Config, ConfigError, loadConfig } from '../config/load-config.js';
import { errorTrackingStatus, type Finding, type RawEnv, runDoctor } from '../ops/doctor.js';
import { memoryStatus } from '../ops/doctor-memory.js';

export function registerDoctor(program: Command) {
  program
    .command('doctor')
    .description('check the configuration, database and Redis before deploying (exit 1 on any error)')
    .option('--json', 'machine-readable output: {ok, findings}')
    .action(async (options: { json?: boolean }) => {
      const envFile = path.resolve('.env');
      // The same view of the environment as `serve`: .env under the real environment.
      const env: RawEnv = {
        ...(existsSync(envFile) ? parseDotenv(readFileSync(envFile)) : {}),
        ...process.env,
      };
      let config: Config | ConfigError;
      try {
        config = loadConfig(env as NodeJS.ProcessEnv, { dotenvDir: null });
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        config = err;
      }
      const findings = await runDoctor(config, env, { envFile });
      const ok = !findings.some((f) => f.severity === 'error');
      const errorTracking = errorTrackingStatus(env);
      const memory = config instanceof ConfigError ? undefined : memoryStatus(config);
      if (options.json)
        console.log(
          JSON.stringify({ ok, findings, errorTracking, memory: memory?.derived ?? null }, null, 2),
        );
      else printFindings(config, findings, ok, errorTracking.line);
      process.exitCode = ok ? 0 : 1;
    });
}

const LABEL: Record<Finding['severity'], string> = { error: 'ERROR  ', warning: 'WARNING', info: 'INFO   ' };

function printFindings(
  config: Config | ConfigError,
  findings: Finding[],
  ok: boolean,
  errorTracking: string,
) {
  if (!(config instanceof ConfigError))
    console.log(
      `colloquy doctor: ${config.env}, database ${describeDatabaseTarget(config.database)}, ${errorTracking}\n` +
        `${memoryStatus(config).line}\n`,
    );
  for (const f of findings) {
    console.log(`${LABEL[f.severity]}  ${f.id}: ${f.message}`);
    console.log(`         fix: ${f.fix}`);
  }
  const count = (s: Finding['severity']) => findings.filter((f) => f.severity === s).length;
  const tally = `${count('error')} error(s), ${count('warning')} warning(s), ${count('info')} note(s)`;
  if (findings.length) console.log('');
  console.log(ok ? `ok: ${tally}` : `not ready to deploy: ${tally}`);
}
