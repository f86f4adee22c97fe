import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger, deferredRequestLogger, scrubSecrets } from './logger.js';

function capture() {
  let text = '';
  const destination = new Writable({
    write(chunk, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  return { destination, text: () => text };
}

const MASTER = 'master-key-value-0123456789abcdefghijklmnop';
const API_KEY = 'ck-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abcd';
const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c3IifQ.c2lnbmF0dXJlLXZhbHVl';

describe('logger', () => {
  it('redacts credentials in structured fields and free text', () => {
    const out = capture();
    const logger = createLogger({
      level: 'debug',
      format: 'json',
      secrets: [MASTER],
      destination: out.destination,
    });
    logger.info(
      { req: { headers: { authorization: `Bearer ${API_KEY}`, cookie: 'sid=s3cr3t-cookie' } } },
      'request',
    );
    logger.info({ password: 'hunter2-password', user: { refresh_token: 'rt_refresh-secret' } }, 'login');
    logger.info({ body: { api_key: 'sk-provider-secret-123' } }, 'nested');
    logger.warn(`upstream said: invalid key ${API_KEY} with token ${JWT}`);
    logger.warn(`master ${MASTER} used`);
    logger.error(
      { err: new Error(`connect failed postgres://app:dbpass-secret@db/app ${MASTER}`) },
      'db down',
    );
    logger.info('calling https://api.example.com/v1?api_key=query-secret-value&x=1');
    const text = out.text();
    for (const secret of [
      API_KEY,
      'hunter2-password',
      'rt_refresh-secret',
      'sk-provider-secret-123',
      's3cr3t-cookie',
      JWT,
      MASTER,
      'dbpass-secret',
      'query-secret-value',
    ]) {
      assert.ok(!text.includes(secret), `log output leaked ${secret}:\n${text}`);
    }
    assert.match(text, /\[REDACTED\]/);
    assert.equal(text.trim().split('\n').length, 7, 'every line is still written');
  });

  it('scrubSecrets keeps ordinary text intact', () => {
    assert.equal(scrubSecrets('user signed in from 10.0.0.1'), 'user signed in from 10.0.0.1');
    assert.equal(scrubSecrets('Authorization: Bearer abc.def'), 'Authorization: Bearer [REDACTED]');
  });

  it('honours the level', () => {
    const out = capture();
    const logger = createLogger({ level: 'warn', format: 'json', destination: out.destination });
    logger.info('hidden');
    logger.warn('shown');
    assert.equal(out.text().trim().split('\n').length, 1);
  });

  it('writes JSON lines to LOG_FILE and rotates it by size, keeping LOG_BACKUP_COUNT files', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-log-'));
    const file = path.join(dir, 'logs', 'colloquy.log');
    const out = capture();
    const logger = createLogger({
      level: 'info',
      format: 'json',
      file,
      maxBytes: 2048,
      backupCount: 2,
      destination: out.destination,
    });
    for (let i = 0; i < 200; i++) {
      logger.info({ i, filler: 'x'.repeat(100) }, 'line');
      if (i % 10 === 0) await sleep(5); // let the rotating stream turn over between bursts
    }
    // The rotating stream writes asynchronously: wait (bounded) for the last line to land, not a fixed time,
    // which a loaded machine overran (the live file held line 137 of 199 after 300 ms).
    const newestLine = () => {
      try {
        const lines = readFileSync(file, 'utf8').trim().split('\n');
        return JSON.parse(lines.at(-1) || '{}').i as number | undefined;
      } catch {
        return undefined; // between a rotation's rename and the new file, or a line half written
      }
    };
    for (let tries = 0; tries < 200 && newestLine() !== 199; tries++) await sleep(50);
    const files = readdirSync(path.dirname(file)).sort();
    assert.deepEqual(
      files.filter((f) => f.startsWith('colloquy.log')),
      ['colloquy.log', 'colloquy.log.1', 'colloquy.log.2'],
      `files: ${files.join(', ')}`,
    );
    const live = readFileSync(file, 'utf8').trim().split('\n');
    assert.ok(live.length > 0);
    for (const line of live) assert.equal(JSON.parse(line).msg, 'line');
    const newest = JSON.parse(live.at(-1)!);
    assert.equal(newest.i, 199);
  });

  it('a request logger writes its lines with the request id, honours the level, and still redacts', async () => {
    const out = capture();
    const logger = createLogger({ level: 'warn', format: 'json', destination: out.destination });
    const request = deferredRequestLogger(logger, { reqId: 'req_1' }, {});
    request.info('incoming request');
    request.warn({ password: 'hunter2-password' }, 'slow upstream');
    request.child({ trace_id: 't1' }).error('failed');
    // A route logging at 'silent' (the metrics endpoint) writes nothing, even errors.
    deferredRequestLogger(logger, { reqId: 'req_2' }, { level: 'silent' }).error('hidden');
    await sleep(10);
    const lines = out
      .text()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      lines.map((l) => [l.reqId, l.msg]),
      [
        ['req_1', 'slow upstream'],
        ['req_1', 'failed'],
      ],
    );
    assert.equal(lines[0].password, '[REDACTED]');
    assert.equal(lines[1].trace_id, 't1');
  });

  it('a request logger answers isLevelEnabled as its level says (the audit hook asks before building a line)', () => {
    const out = capture();
    const logger = createLogger({ level: 'warn', format: 'json', destination: out.destination });
    const request = deferredRequestLogger(logger, { reqId: 'req_1' }, {});
    assert.equal(request.isLevelEnabled('info'), false);
    assert.equal(request.isLevelEnabled('warn'), true);
    assert.equal(request.isLevelEnabled('error'), true);
    assert.equal(request.isLevelEnabled('no-such-level'), false);
    const route = deferredRequestLogger(logger, { reqId: 'req_2' }, { level: 'debug' });
    assert.equal(route.isLevelEnabled('debug'), true);
    assert.equal(route.isLevelEnabled('trace'), false);
    assert.equal(deferredRequestLogger(logger, {}, { level: 'silent' }).isLevelEnabled('fatal'), false);
    // Once a line was written (the child exists), a level set on it is the one answered.
    request.warn('made');
    request.level = 'info';
    assert.equal(request.isLevelEnabled('info'), true);
  });
});

describe('logging to a stdout nobody reads', () => {
  it('drops lines past 16 MiB waiting instead of buffering them all', async () => {
    // A child logs 64 MiB to a pipe this test never reads: the kernel takes 64 KiB, the rest waits in memory.
    const logger = new URL('./logger.ts', import.meta.url).href;
    const child = spawn(
      process.execPath,
      [
        '--expose-gc',
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        `import { createLogger, droppedLogLines } from ${JSON.stringify(logger)};
         const log = createLogger({ level: 'info', format: 'json' });
         globalThis.gc();
         const before = process.memoryUsage().heapUsed;
         const filler = 'x'.repeat(1000);
         for (let i = 0; i < 65536; i++) log.info({ filler }, 'line');
         globalThis.gc();
         const grown = process.memoryUsage().heapUsed - before;
         process.stderr.end(JSON.stringify({ dropped: droppedLogLines(), grownMiB: grown / 1048576 }));`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let report = '';
    child.stderr.on('data', (d: Buffer) => {
      report += d.toString();
    });
    await once(child.stderr, 'end');
    // Read now: pino writes out what waits before the process exits.
    child.stdout.resume();
    await once(child, 'exit');
    const { dropped, grownMiB } = JSON.parse(report) as { dropped: number; grownMiB: number };
    assert.ok(dropped > 40_000, `${dropped} lines dropped`);
    // What waits is held as strings on the heap: at most the 16 MiB cap (without it, all 64 MiB).
    assert.ok(grownMiB < 32, `the heap kept ${grownMiB.toFixed(1)} MiB of 64 MiB of unread logs`);
  });
});

describe('logging to a stdout whose reader went away (`serve | head -3`)', () => {
  it('the process still exits: the last lines queued at exit are dropped, not retried forever', async () => {
    // The child waits for the go-ahead on stdin, so its lines are written only after this end of the pipe is
    // closed: the exit-time flush meets EPIPE (sonic-boom 4 retried it every 100 ms, for ever).
    const logger = new URL('./logger.ts', import.meta.url).href;
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        `import { createLogger } from ${JSON.stringify(logger)};
         const log = createLogger({ level: 'info', format: 'json' });
         process.stdin.once('data', () => {
           log.info('shutting down');
           log.info('colloquy stopped');
           process.exit(0);
         });`,
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
    const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    try {
      child.stdout.destroy();
      child.stdin.end('go\n');
      const [code, signal] = await exited;
      assert.equal(signal, null, 'the process exited by itself, not killed after 30 s');
      assert.equal(code, 0);
    } finally {
      clearTimeout(killer);
      child.kill('SIGKILL');
    }
  });
});
