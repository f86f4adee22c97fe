import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { TEST_MASTER_KEY } from '../helpers/app.js';
import { eventually } from '../helpers/chat-stack.js';
import { built, MAIN } from '../helpers/dist-server.js';
import { freePort } from '../helpers/net.js';

/**
 * `colloquy serve | head -3` with JSON logs: once the reader has gone, SIGTERM must still end the process
 * (issue 19, item 15: it stayed alive until SIGKILL, its exit-time log flush retrying EPIPE for ever).
 */
describe('serve with its stdout piped into a reader that closes early', {
  skip: !built() && 'npm run build',
}, () => {
  it('exits 0 on SIGTERM', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-pipe-'));
    const port = await freePort();
    const child = spawn(process.execPath, [MAIN, 'serve'], {
      cwd: dir,
      env: {
        PATH: process.env.PATH ?? '',
        PORT: String(port),
        HOST: '127.0.0.1',
        DATABASE_URL: `sqlite:${path.join(dir, 'colloquy.db')}`,
        LOG_FORMAT: 'json',
        LOG_LEVEL: 'info',
        COLLOQUY_ADMIN_KEY: TEST_MASTER_KEY,
        OVERLOAD_MAX_EVENT_LOOP_DELAY_MS: '0',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d;
    });
    try {
      // `head -3`: three lines read, then the pipe's reading end is closed.
      let lines = 0;
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => {
          lines += d.toString().split('\n').length - 1;
          if (lines >= 3) resolve();
        });
        child.once('exit', () => reject(new Error(`the server exited early: ${stderr}`)));
      });
      child.stdout.destroy();
      const health = () =>
        fetch(`http://127.0.0.1:${port}/health`).then(
          (r) => r.ok,
          () => false,
        );
      await eventually(health, 20_000, 'the server answers');
      // Requests log lines nobody reads any more.
      for (let i = 0; i < 5; i++) await fetch(`http://127.0.0.1:${port}/api/me`);
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      const [code, signal] = await exited.finally(() => clearTimeout(killer));
      assert.equal(signal, null, `ended by itself, not SIGKILLed after 60 s: ${stderr}`);
      assert.equal(code, 0, stderr);
    } finally {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
