import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FastifyError } from 'fastify';
import { toErrorResponse } from '../../src/plugins/error-handler.js';

/**
 * What clients get when storage fails, error by error, as pg, pg-pool and better-sqlite3 raise them: a 503
 * with Retry-After and a code that says which (database_unavailable or storage_full), never a 500. The
 * outage suites (postgres-outage, disk-full) meet most of these for real; a few are rare enough to list.
 */
const failure = (message: string, code?: string) =>
  Object.assign(new Error(message), code ? { code } : {}) as FastifyError;

const unavailable: [string, FastifyError][] = [
  ['refused', failure('connect ECONNREFUSED 127.0.0.1:5432', 'ECONNREFUSED')],
  ['restart', failure('terminating connection due to administrator command', '57P01')],
  ['starting up', failure('the database system is starting up', '57P03')],
  ['dropped', failure('Connection terminated unexpectedly')],
  ['pool wait', failure('timeout exceeded when trying to connect')],
  ['no answer', failure('Query read timeout')],
  ['statement_timeout', failure('canceling statement due to statement timeout', '57014')],
  ['too many clients', failure('sorry, too many clients already', '53300')],
  ['closed client', failure('Client was closed and is not queryable')],
  ['sqlite locked', failure('database is locked', 'SQLITE_BUSY')],
  ['sqlite write', failure('disk I/O error', 'SQLITE_IOERR_WRITE')],
  ['sqlite shm', failure('disk I/O error', 'SQLITE_IOERR_SHMSIZE')],
  ['database dropped', failure('database "colloquy" does not exist', '3D000')],
  [
    'socket removed',
    Object.assign(failure('connect ENOENT /var/run/postgresql/.s.PGSQL.5432', 'ENOENT'), {
      syscall: 'connect',
    }) as FastifyError,
  ],
  [
    'localhost refused on every address',
    Object.assign(
      new AggregateError([failure('connect ECONNREFUSED ::1:5432', 'ECONNREFUSED')], 'AggregateError'),
      {
        code: undefined,
      },
    ) as unknown as FastifyError,
  ],
  ['sqlite file gone', failure('unable to open database file', 'SQLITE_CANTOPEN')],
];

describe('storage failures answer 503, never 500', () => {
  for (const [name, err] of unavailable) {
    it(`${name}: 503 database_unavailable with Retry-After`, () => {
      const { status, body, headers } = toErrorResponse(err);
      assert.equal(status, 503);
      assert.equal(body.error.code, 'database_unavailable');
      assert.ok(Number(headers['retry-after']) > 0);
      assert.ok(!body.error.message.includes(err.message), 'driver details stay in the logs');
    });
  }

  for (const err of [
    failure('database or disk is full', 'SQLITE_FULL'),
    failure('could not extend file "base/16384/16385": No space left on device', '53100'),
  ]) {
    it(`${err.code}: 503 storage_full with Retry-After`, () => {
      const { status, body, headers } = toErrorResponse(err);
      assert.equal(status, 503);
      assert.equal(body.error.code, 'storage_full');
      assert.ok(Number(headers['retry-after']) > 0);
    });
  }

  it('a bug is still a 500: only storage failures are retryable', () => {
    const { status, body } = toErrorResponse(failure("Cannot read properties of undefined (reading 'id')"));
    assert.equal(status, 500);
    assert.equal(body.error.code, 'internal_error');
    const constraint = toErrorResponse(failure('violates foreign key constraint', '23503'));
    assert.equal(constraint.status, 500);
    const missingFile = toErrorResponse(failure("ENOENT: no such file or directory, open 'x'", 'ENOENT'));
    assert.equal(missingFile.status, 500, 'ENOENT is a storage failure only on connect');
  });
});
