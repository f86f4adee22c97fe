import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import { type ChatStack, eventually, startChatStack } from '../helpers/chat-stack.js';
import {
  assertCleanOutcome,
  assertNoMessageLost,
  prepareConversations,
  startTraffic,
  stopAllTraffic,
  tally,
} from './traffic.js';

/**
 * SQLite on a full disk, under conversation turns, reads and /v1 calls: writes answer 503 storage_full
 * with Retry-After, reads keep working, the database stays intact, and writes succeed again once space is
 * freed, without a restart. The disk is a real one: a small tmpfs mounted for the test (root only); where
 * mounting is impossible, SQLite's max_page_count stands in for it.
 */
const DEADLINE_MS = 10_000;
const CODES = ['storage_full', 'database_unavailable'];

/** A tiny tmpfs at `dir`, or false when this process may not mount. */
function mountTmpfs(dir: string, size: string): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

/** Writes zeros to `file` until the disk refuses (ENOSPC); returns the bytes written. */
function fillDisk(file: string): number {
  const fd = openSync(file, 'w');
  const block = Buffer.alloc(64 * 1024);
  let written = 0;
  try {
    // A short write means the disk is full; the next one throws. Bounded: the file system is a 24 MB tmpfs.
    for (let i = 0; i < 4_096; i++) written += writeSync(fd, block);
    throw new Error(`the disk did not fill after ${written} bytes`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
  return written;
}

describe('reliability: SQLite disk full', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-full-'));
  const mounted = mountTmpfs(dir, '24m');
  const filler = path.join(dir, 'filler');
  let s: ChatStack;
  before(async () => {
    s = await startChatStack({
      routing: null,
      env: { DATABASE_URL: `sqlite:${path.join(dir, 'colloquy.db')}` },
    });
  });
  after(async () => {
    rmSync(filler, { force: true }); // should the test have failed with the disk full
    await stopAllTraffic();
    await s?.close();
    if (mounted) execFileSync('umount', [dir]);
    rmSync(dir, { recursive: true, force: true });
  });

  const pragma = async (statement: string) =>
    (await sql.raw(`PRAGMA ${statement}`).execute(s.t.database.db)).rows as Record<string, unknown>[];
  const integrity = async () => Object.values((await pragma('integrity_check'))[0] ?? {})[0];

  /** Fills the disk (or caps the database at its current size); returns how to free the space again. */
  async function diskFull(): Promise<{ how: string; free: () => Promise<void> }> {
    if (mounted) {
      const bytes = fillDisk(filler);
      return {
        how: `tmpfs full (${Math.round(bytes / 1024)} KiB filler)`,
        free: async () => rmSync(filler),
      };
    }
    const pages = Number(Object.values((await pragma('page_count'))[0]!)[0]);
    await pragma(`max_page_count = ${pages}`);
    return {
      how: `max_page_count capped at ${pages} pages (no tmpfs: mounting needs root)`,
      free: async () => {
        await pragma('max_page_count = 1073741823');
      },
    };
  }

  it('writes answer 503 with Retry-After, reads keep working, integrity ok, writes recover', {
    timeout: 60_000,
  }, async () => {
    const prepared = await prepareConversations(s, 2);
    const traffic = startTraffic(s, prepared, { v1Workers: 1, deadlineMs: DEADLINE_MS, reads: true });
    await sleep(500);
    const fullAt = Date.now();
    const disk = await diskFull();
    // The write-ahead log may still have room for a few commits (they are durable); then writes fail.
    const refusedWrite = () => {
      const outcomes = traffic.outcomes();
      return outcomes.some((o) => o.kind !== 'read' && o.startedAt >= fullAt && o.status === 503);
    };
    await eventually(refusedWrite, 20_000, 'a write refused on the full disk');
    await sleep(1_000);
    const whileFull = await integrity();
    const freedAt = Date.now();
    await disk.free();
    const writes = () =>
      traffic.outcomes().some((o) => o.kind === 'turn' && o.startedAt >= freedAt && o.status < 300);
    await eventually(writes, 5_000, 'writes succeed again after space is freed');
    const recoveredMs = Date.now() - freedAt;
    await sleep(1_500);
    const outcomes = await traffic.stop();

    for (const o of outcomes) assertCleanOutcome(o, CODES);
    const during = outcomes.filter((o) => o.startedAt >= fullAt && o.startedAt < freedAt);
    const reads = during.filter((o) => o.kind === 'read');
    assert.ok(reads.length > 0, 'reads were tried on the full disk');
    for (const o of reads) assert.equal(o.status, 200, `a read failed on the full disk: ${o.body}`);
    const refused = during.filter((o) => o.status === 503);
    assert.ok(
      refused.some((o) => o.code === 'storage_full'),
      `a full disk is named as such: ${JSON.stringify(tally(refused))} ${refused[0]?.body}`,
    );
    assert.equal(whileFull, 'ok', 'integrity_check on the full disk');
    assert.equal(await integrity(), 'ok', 'integrity_check after recovery');
    const stored = await assertNoMessageLost(s.t.database.db, outcomes, traffic.conversations);
    const codes = refused.reduce<Record<string, number>>((acc, o) => {
      acc[o.code!] = (acc[o.code!] ?? 0) + 1;
      return acc;
    }, {});
    console.log(
      `# sqlite disk full (${disk.how}): ${outcomes.length} requests ${JSON.stringify(tally(outcomes))}, ` +
        `${during.length} while full (503 codes ${JSON.stringify(codes)}, ${reads.length} reads all 200), ` +
        `writes back ${recoveredMs} ms after freeing, ${stored.turns} turns (${stored.acknowledged} ` +
        `acknowledged), ${stored.stored} messages checked (replies ${JSON.stringify(stored.replies)}), integrity ok`,
    );
  });
});
