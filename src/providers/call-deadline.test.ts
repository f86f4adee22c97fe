import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { CallDeadline } from './call-deadline.js';

const headersLate = () => new Error('headers late');
const reasonOf = (d: CallDeadline) => (d.signal.reason as Error | undefined)?.message ?? d.signal.reason;

describe('CallDeadline: the whole call and the headers on one timer', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 }));
  afterEach(() => mock.timers.reset());

  it('aborts with the headers reason when the headers do not come in time', () => {
    const d = new CallDeadline(undefined, Date.now() + 600_000, Date.now(), 120_000);
    d.headersWithin(120_000, headersLate);
    mock.timers.tick(119_999);
    assert.equal(d.signal.aborted, false);
    mock.timers.tick(1);
    assert.equal(reasonOf(d), 'headers late');
  });

  it('once the headers came, the whole call is still bounded, as a TimeoutError at its own deadline', () => {
    const d = new CallDeadline(undefined, Date.now() + 300_000, Date.now(), 120_000);
    d.headersWithin(120_000, headersLate);
    mock.timers.tick(50);
    d.headersCame();
    mock.timers.tick(200_000);
    assert.equal(d.signal.aborted, false, 'past the headers deadline: not aborted, the headers came');
    mock.timers.tick(99_950);
    assert.equal(d.signal.aborted, true);
    assert.equal((d.signal.reason as DOMException).name, 'TimeoutError');
  });

  it('a headers deadline later than the first check (connect + first token) is kept exactly', () => {
    const d = new CallDeadline(undefined, Date.now() + 600_000, Date.now(), 120_000);
    d.headersWithin(130_000, headersLate);
    mock.timers.tick(120_000);
    assert.equal(d.signal.aborted, false);
    mock.timers.tick(10_000);
    assert.equal(reasonOf(d), 'headers late');
  });

  it('a headers deadline earlier than the first check moves the timer', () => {
    const d = new CallDeadline(undefined, Date.now() + 600_000, Date.now(), 120_000);
    d.headersWithin(5_000, headersLate);
    mock.timers.tick(5_000);
    assert.equal(reasonOf(d), 'headers late');
  });

  it('a whole-call deadline shorter than the first token timeout wins', () => {
    const d = new CallDeadline(undefined, Date.now() + 200, Date.now(), 120_000);
    d.headersWithin(120_000, headersLate);
    mock.timers.tick(200);
    assert.equal((d.signal.reason as DOMException).name, 'TimeoutError');
  });

  it("follows the client's signal, already aborted or later", () => {
    const gone = new AbortController();
    gone.abort('client gone');
    assert.equal(
      new CallDeadline(gone.signal, Date.now() + 1_000, Date.now(), 500).signal.reason,
      'client gone',
    );
    const later = new AbortController();
    const d = new CallDeadline(later.signal, Date.now() + 1_000, Date.now(), 500);
    later.abort('left');
    assert.equal(d.signal.reason, 'left');
  });

  it('release() ends it: no abort afterwards, from the timer or the client', () => {
    const client = new AbortController();
    const d = new CallDeadline(client.signal, Date.now() + 1_000, Date.now(), 500);
    d.headersWithin(500, headersLate);
    d.release();
    mock.timers.tick(5_000);
    client.abort('late');
    assert.equal(d.signal.aborted, false);
  });
});

describe('CallDeadline: timers per call', () => {
  it('a call answered in time arms one timer for both deadlines (issue 26)', () => {
    const real = globalThis.setTimeout;
    let armed = 0;
    globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
      armed++;
      return real(...args);
    }) as typeof setTimeout;
    try {
      const d = new CallDeadline(undefined, Date.now() + 600_000, Date.now(), 120_000);
      d.headersWithin(120_000, headersLate);
      d.headersCame();
      d.release();
    } finally {
      globalThis.setTimeout = real;
    }
    assert.equal(armed, 1);
  });
});
