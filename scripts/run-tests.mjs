// The one test command (`npm test`): every *.test.ts under src/ and test/ on Node's test runner.
// The PostgreSQL, Redis and MySQL/MariaDB suites run when TEST_DATABASE_URL / TEST_REDIS_URL /
// TEST_MYSQL_URL are set; in CI (CI=true) they must be set and must actually have run, or the run fails.
//
// It always ends: each test has a timeout (a stuck test fails by name and the run goes on), each test file's
// process is ended once its tests are done (--test-force-exit: a leaked handle cannot keep it alive), and the
// whole run has a deadline past which the runner and everything it started are killed and the run fails
// saying so. It prints how long the run took.
//   COLLOQUY_TEST_TIMEOUT_SECONDS   per test (default 300: generous for a loaded 2-core machine)
//   COLLOQUY_TEST_FILE_TIMEOUT_SECONDS  per test file, on Node 20 and 22 only (default 900: see below)
//   COLLOQUY_TEST_DEADLINE_MINUTES  the whole run (default 35 in CI, 60 elsewhere: see README)
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const only = process.argv.slice(2);
const startedAt = Date.now();

function find(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' ? [] : find(full);
    return e.name.endsWith('.test.ts') ? [full] : [];
  });
}

let files = [...find(path.join(root, 'src')), ...find(path.join(root, 'test'))].sort();
// Matched against the path inside the project: a checkout under /work/wt-files would otherwise match "files" everywhere.
if (only.length) files = files.filter((f) => only.some((o) => path.relative(root, f).includes(o)));

const services = { postgres: 'TEST_DATABASE_URL', redis: 'TEST_REDIS_URL', mysql: 'TEST_MYSQL_URL' };
const ci = process.env.CI === 'true' || process.env.CI === '1';
const missing = Object.entries(services).filter(([, v]) => !process.env[v]);
for (const [name, variable] of missing) {
  const line = `${name} suites NOT RUN: set ${variable} to run them`;
  console.log(ci ? `error: ${line} (required in CI)` : `note: ${line}`);
}
if (ci && missing.length) process.exit(1);

const positive = (name, fallback) => {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isFinite(value) || value <= 0) {
    console.error(`error: ${name} must be a positive number, got ${process.env[name]}`);
    process.exit(2);
  }
  return value;
};
const testTimeoutMs = Math.round(positive('COLLOQUY_TEST_TIMEOUT_SECONDS', 300) * 1_000);
// CI's 35 minutes keep two runs (machine's Node, Node 24) inside CI's limit. Elsewhere the machine may be shared
// with builds and other suites: at load average 25 a fresh clone's no-services run got 10.5 minutes of CPU in
// 30 minutes, so the backstop there is looser; per-test and per-file timeouts still name a stuck test.
const deadlineMs = Math.round(positive('COLLOQUY_TEST_DEADLINE_MINUTES', ci ? 35 : 60) * 60_000);
// Node 20 and 22 apply --test-timeout to each test file's process as a whole as well as to each test (Node 24:
// to each test only): there the bound has to fit the longest file, and a stuck test is named by its file.
// Tests with a bound of their own (`{ timeout }`) keep it.
const [major, minor] = process.versions.node.split('.').map(Number);
const perFile = major < 24;
// --test-force-exit came with Node 20.14 (engines admit 20.12): without it, a file's leaked handle can still
// keep its process up, until the run's deadline.
const forceExit = major > 20 || minor >= 14 ? ['--test-force-exit'] : [];
const fileTimeoutMs = Math.round(positive('COLLOQUY_TEST_FILE_TIMEOUT_SECONDS', 900) * 1_000);
const timeoutMs = perFile ? Math.max(testTimeoutMs, fileTimeoutMs) : testTimeoutMs;

const markers = mkdtempSync(path.join(os.tmpdir(), 'colloquy-suites-'));
const seconds = (ms) => `${(ms / 1_000).toFixed(1)} s`;
const finish = (status, why) => {
  if (why) console.log(why);
  rmSync(markers, { recursive: true, force: true });
  console.log(`test run: ${status === 0 ? 'passed' : 'FAILED'} in ${seconds(Date.now() - startedAt)}`);
  process.exit(status);
};

// Its own process group, so that the deadline (or Ctrl-C) can end the runner and every process under it.
const child = spawn(
  process.execPath,
  [
    '--import',
    'tsx',
    '--test',
    '--test-reporter=spec',
    `--test-concurrency=${process.env.TEST_CONCURRENCY ?? 2}`,
    `--test-timeout=${timeoutMs}`,
    ...forceExit,
    ...files,
  ],
  {
    cwd: root,
    stdio: 'inherit',
    detached: true,
    env: { ...process.env, COLLOQUY_SUITE_MARKERS: markers, NODE_ENV: 'test' },
  },
);
const killTree = () => {
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {} // already gone
};
let ended = null;
const deadline = setTimeout(() => {
  ended = `error: the test run passed its deadline of ${seconds(deadlineMs)} (COLLOQUY_TEST_DEADLINE_MINUTES): timed out, its processes were killed`;
  killTree();
}, deadlineMs);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    ended = `error: the test run was interrupted (${signal}), its processes were killed`;
    killTree();
  });
}
child.on('error', (err) => {
  clearTimeout(deadline);
  finish(1, `error: could not start the test runner: ${err.message}`);
});
child.on('exit', (code) => {
  clearTimeout(deadline);
  // Whatever the runner left behind in its group (it should be nothing) goes with it.
  killTree();
  if (ended) return finish(1, ended);
  let status = code ?? 1;
  for (const [name, variable] of Object.entries(services)) {
    if (!process.env[variable]) continue;
    const ran = existsSync(path.join(markers, name));
    console.log(
      ran ? `${name} suites ran against ${variable}` : `error: ${variable} is set but no ${name} suite ran`,
    );
    if (!ran && !only.length) status = status || 1;
  }
  finish(status);
});
