import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { TEST_MASTER_KEY } from '../helpers/app.js';
import { spawnDistServer } from '../helpers/dist-server.js';

/**
 * Drain on shutdown applies to the Messages API as to /v1/chat/completions (issue 20): a stream still open
 * when SHUTDOWN_TIMEOUT runs out ends with Anthropic's `error` event, not a cut connection, and the
 * process exits 0.
 */
describe('SIGTERM with a live Messages stream', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-messages-drain-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('after SHUTDOWN_TIMEOUT ends the open stream with an error event, then exits 0', async () => {
    const server = await spawnDistServer({
      cwd: dir,
      env: {
        DATABASE_URL: `sqlite:${path.join(dir, 'colloquy.db')}`,
        DEMO_WORD_DELAY_MS: '400',
        SHUTDOWN_TIMEOUT: '1',
      },
    });
    const res = await fetch(`${server.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': TEST_MASTER_KEY },
      body: JSON.stringify({
        model: 'demo',
        max_tokens: 200,
        stream: true,
        messages: [{ role: 'user', content: 'tell me a long story' }],
      }),
    });
    assert.equal(res.status, 200);
    const body = res.text();
    await sleep(900); // a couple of words streamed
    server.child.kill('SIGTERM');
    const text = await body;
    const names = [...text.matchAll(/^event: (\S+)$/gm)].map((m) => m[1]);
    assert.equal(names[0], 'message_start');
    assert.ok(names.includes('content_block_delta'), 'words streamed before the drain');
    assert.equal(names.at(-1), 'error', `${text.slice(-300)}\n${server.output().slice(-2000)}`);
    assert.ok(!names.includes('message_stop'));
    assert.equal(await server.exited, 0, server.output());
  });
});
