// The one test command (`npm test`): every *.test.ts under src/ and test/ on Node's test runner.
// The PostgreSQL and Redis suites run when TEST_DATABASE_URL / TEST_REDIS_URL are set; in CI (CI=true)
// they must be set and must actually have run, or the run fails.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const only = process.argv.slice(2);

function find(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' ? [] : find(full);
    return e.name.endsWith('.test.ts') ? [full] : [];
  });
}

let files = [...find(path.join(root, 'src')), ...find(path.join(root, 'test'))].sort();
if (only.length) files = files.filter((f) => only.some((o) => f.includes(o)));

const services = { postgres: 'TEST_DATABASE_URL', redis: 'TEST_REDIS_URL' };
const ci = process.env.CI === 'true' || process.env.CI === '1';
const missing = Object.entries(services).filter(([, v]) => !process.env[v]);
for (const [name, variable] of missing) {
  const line = `${name} suites NOT RUN: set ${variable} to run them`;
  console.log(ci ? `error: ${line} (required in CI)` : `note: ${line}`);
}
if (ci && missing.length) process.exit(1);

const markers = mkdtempSync(path.join(os.tmpdir(), 'colloquy-suites-'));
const result = spawnSync(
  process.execPath,
  [
    '--import',
    'tsx',
    '--test',
    '--test-reporter=spec',
    `--test-concurrency=${process.env.TEST_CONCURRENCY ?? 2}`,
    ...files,
  ],
  { cwd: root, stdio: 'inherit', env: { ...process.env, COLLOQUY_SUITE_MARKERS: markers, NODE_ENV: 'test' } },
);

let status = result.status ?? 1;
for (const [name, variable] of Object.entries(services)) {
  if (!process.env[variable]) continue;
  const ran = existsSync(path.join(markers, name));
  console.log(
    ran ? `${name} suites ran against ${variable}` : `error: ${variable} is set but no ${name} suite ran`,
  );
  if (!ran && !only.length) status = status || 1;
}
rmSync(markers, { recursive: true, force: true });
process.exit(status);
