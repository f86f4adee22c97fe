import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { eventually } from '../helpers/chat-stack.js';
import { built } from '../helpers/dist-server.js';
import { FAILING_LOAD_FLAG, FAILING_LOAD_TEST, FIXTURE, HUNG_TEST, HUNG_TEST_FLAG } from './self-check.js';

/**
 * `npm test` always ends (issue #18): a load test whose assertion fails stops its clients and servers and its
 * process exits on its own; a hung test fails by name at its timeout; a run past its deadline is killed,
 * saying so. Each case runs the deliberately failing tests in a child process, bounded by a kill timer.
 */
const root = fileURLToPath(new URL('../..', import.meta.url));
const major = Number(process.versions.node.split('.')[0]);

interface Run {
  code: number | null;
  output: string;
  /** The kill timer fired: the child did not end on its own. */
  killed: boolean;
}

/** Every live process started with this run's marker in its environment (zombies have none left). */
function processesOf(marker: string): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/environ`, 'latin1').includes(marker);
      } catch {
        return false; // gone meanwhile, or not ours
      }
    })
    .map(Number);
}

async function run(args: string[], env: Record<string, string>, killAfterMs: number) {
  const marker = `COLLOQUY_SELF_CHECK_RUN=${randomUUID()}`;
  const childEnv: NodeJS.ProcessEnv = {
    ...process.env,
    ...env,
    COLLOQUY_SELF_CHECK_RUN: marker.split('=')[1],
  };
  delete childEnv.CI; // CI=true would require the PostgreSQL and Redis suites of a filtered run
  delete childEnv.NODE_TEST_CONTEXT; // set for this file's own process: the child would not run its tests
  const child = spawn(process.execPath, args, { cwd: root, env: childEnv, detached: true });
  let output = '';
  child.stdout.on('data', (chunk) => {
    output += chunk;
  });
  child.stderr.on('data', (chunk) => {
    output += chunk;
  });
  let killed = false;
  const timer = setTimeout(() => {
    killed = true;
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {}
  }, killAfterMs);
  try {
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    return { code, output, killed, marker } satisfies Run & { marker: string };
  } finally {
    clearTimeout(timer);
    for (const pid of processesOf(marker)) {
      try {
        process.kill(pid, 'SIGKILL'); // never leave them running, whatever the assertions say
      } catch {}
    }
  }
}

describe('the test suite always ends', { concurrency: 1 }, () => {
  it('a load test whose assertion fails mid-load ends, stops its clients and server, and its process exits on its own', {
    skip: !built() && 'run npm run build',
  }, async () => {
    // Run directly, without the runner's --test-force-exit: an open handle would keep the process alive.
    const r = await run(
      ['--import', 'tsx', '--test-reporter=tap', FIXTURE],
      { [FAILING_LOAD_FLAG]: '1' },
      120_000,
    );
    assert.equal(r.killed, false, `the process did not end on its own (an open handle?):\n${r.output}`);
    assert.equal(r.code, 1, r.output);
    assert.match(r.output, new RegExp(`not ok \\d+ - ${FAILING_LOAD_TEST.replace(/[()]/g, '\\$&')}`));
    assert.match(r.output, /deliberate failure mid-load, after \d+ requests/);
    const serverPid = Number(/# self-check server pid (\d+)/.exec(r.output)?.[1]);
    assert.ok(serverPid > 0, r.output);
    assert.throws(() => process.kill(serverPid, 0), { code: 'ESRCH' }, 'the server process was stopped');
    assert.deepEqual(processesOf(r.marker), [], 'no process of the run is left');
  });

  it('a hung test fails at the runner’s timeout, by name, and the run ends', async () => {
    const r = await run(
      ['scripts/run-tests.mjs', FIXTURE],
      { [HUNG_TEST_FLAG]: '1', COLLOQUY_TEST_TIMEOUT_SECONDS: '3', COLLOQUY_TEST_FILE_TIMEOUT_SECONDS: '10' },
      120_000,
    );
    assert.equal(r.killed, false, `the run did not end:\n${r.output}`);
    assert.equal(r.code, 1, r.output);
    assert.match(r.output, /test timed out after \d+ms/);
    // Node 20 and 22 time out the file's process as a whole (see scripts/run-tests.mjs), Node 24 the test.
    assert.ok(r.output.includes(major >= 24 ? HUNG_TEST : 'deliberately-failing.test.ts'), r.output);
    assert.match(r.output, /test run: FAILED in \d+\.\d s/);
    await eventually(() => processesOf(r.marker).length === 0, 5_000, 'no process of the run is left');
  });

  it('a run past its deadline is killed with everything it started, and says so', async () => {
    const r = await run(
      ['scripts/run-tests.mjs', FIXTURE],
      {
        [HUNG_TEST_FLAG]: '1',
        COLLOQUY_TEST_TIMEOUT_SECONDS: '600',
        COLLOQUY_TEST_FILE_TIMEOUT_SECONDS: '600',
        COLLOQUY_TEST_DEADLINE_MINUTES: '0.15',
      },
      120_000,
    );
    assert.equal(r.killed, false, `the run did not end:\n${r.output}`);
    assert.equal(r.code, 1, r.output);
    assert.match(r.output, /passed its deadline of 9\.0 s .*timed out, its processes were killed/);
    assert.match(r.output, /test run: FAILED in \d+\.\d s/);
    await eventually(() => processesOf(r.marker).length === 0, 5_000, 'no process of the run is left');
  });
});
