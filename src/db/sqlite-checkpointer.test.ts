import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import SqliteDatabase from 'better-sqlite3';
import { startCheckpointer } from './sqlite-checkpointer.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-checkpoint-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function openWal(name: string) {
  const file = path.join(dir, name);
  const sqlite = new SqliteDatabase(file);
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = NORMAL');
  sqlite.exec('create table t (id integer primary key, payload blob not null)');
  return { file, sqlite };
}

const pragmaValue = (sqlite: SqliteDatabase.Database, name: string) =>
  sqlite.pragma(name, { simple: true }) as number;

async function until(condition: () => boolean, what: string, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('SQLite checkpoints in the background', () => {
  it('writes the WAL back from its own thread while the request connection never checkpoints', async () => {
    const { file, sqlite } = openWal('busy.db');
    const checkpointer = startCheckpointer(sqlite, file, { startAtBytes: 64 << 10, intervalMs: 20 });
    assert.equal(pragmaValue(sqlite, 'wal_autocheckpoint'), 0);
    const insert = sqlite.prepare('insert into t (payload) values (?)');
    const walSize = () => statSync(`${file}-wal`).size;
    const sizeBefore = statSync(file).size;
    let rows = 0;
    // As a server writes: small commits of 10 rows, 50 to a burst (200 KB).
    const burst = () => {
      for (let commit = 0; commit < 50; commit++) {
        sqlite.transaction(() => {
          for (let i = 0; i < 10; i++) insert.run(Buffer.alloc(400, rows + i));
        })();
        rows += 10;
      }
    };
    // Bounded: a WAL that never grew past 64 KB (~1 burst) would fail the wait below, not spin here.
    for (let i = 0; i < 100 && walSize() < 64 << 10; i++) burst();
    await until(() => checkpointer.completed >= 1, 'the thread to start and checkpoint');
    const walAfterStart = walSize();
    // 40 more bursts (8 MB), each followed by the thread's next checkpoint, however slow the machine is.
    for (let i = 0; i < 40; i++) {
      const completed = checkpointer.completed;
      burst();
      await until(() => checkpointer.completed > completed, 'the next checkpoint');
    }
    await checkpointer.close();
    // Only a checkpoint writes the database file itself; nothing else here did one.
    assert.ok(statSync(file).size > sizeBefore + (8 << 20), 'the database file holds the checkpointed pages');
    // SQLite rewinds a fully checkpointed WAL at the next commit, so the file keeps the size of one burst
    // (or of what was written while the thread started); without checkpoints it would hold all 8 MB and more.
    assert.ok(walSize() <= Math.max(walAfterStart, 2 << 20), `the WAL stopped growing (${walSize()} bytes)`);
    sqlite.close();
    const reopened = new SqliteDatabase(file, { readonly: true });
    assert.equal(reopened.prepare('select count(*) from t').pluck().get(), rows);
    reopened.close();
  });

  it('starts no thread and does nothing while the WAL stays small', async () => {
    const { file, sqlite } = openWal('quiet.db');
    const checkpointer = startCheckpointer(sqlite, file, { startAtBytes: 8 << 20, intervalMs: 10 });
    sqlite.prepare('insert into t (payload) values (?)').run(Buffer.alloc(100));
    await sleep(100);
    assert.equal(checkpointer.completed, 0);
    await checkpointer.close();
    sqlite.close();
  });

  it("hands checkpoints back to SQLite's automatic ones when its thread cannot run", async () => {
    const { sqlite } = openWal('real.db');
    // The thread is pointed at a database that does not exist, with a WAL big enough to start it.
    const missing = path.join(dir, 'missing.db');
    writeFileSync(`${missing}-wal`, Buffer.alloc(1 << 10));
    const checkpointer = startCheckpointer(sqlite, missing, { startAtBytes: 512, intervalMs: 10 });
    assert.equal(pragmaValue(sqlite, 'wal_autocheckpoint'), 0);
    await until(() => pragmaValue(sqlite, 'wal_autocheckpoint') === 1000, 'automatic checkpoints to return');
    await checkpointer.close();
    sqlite.close();
  });
});
