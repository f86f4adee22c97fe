import { hostname } from 'node:os';
import type { Selectable, Updateable } from 'kysely';
import { newId, nowIso } from '../../core/ids.js';
import type { Logger } from '../../core/logger.js';
import type { Db } from '../../db/database.js';
import type { MailOutboxTable } from '../../db/schema.js';
import type { Metrics } from '../../metrics/registry.js';
import { isPermanentFailure, type MailTransport } from './transport.js';

export interface OutgoingMail {
  kind: string;
  to: string;
  subject: string;
  text: string;
  html: string;
}

export interface OutboxOptions {
  db: Db;
  transport: MailTransport;
  from: string;
  /** The domain of Message-IDs (PUBLIC_URL's host). */
  domain: string;
  retryInitialMs: number;
  pollIntervalMs: number;
  /** Attempts before a mail is given up (status `failed`); default 12 (~ a day with 30 s doubling to 1 h). */
  maxAttempts?: number;
  /** How long a claim holds: longer than one send can take (nodemailer's timeouts are 20 s each). */
  leaseMs?: number;
  metrics?: Metrics | undefined;
  logger?: Logger | undefined;
}

const MAX_BACKOFF_MS = 3_600_000;
const BATCH = 10;

/**
 * Mail is written to the `mail_outbox` table (in the same transaction as what it reports, where the caller
 * has one) and sent from there by a loop every replica runs. A replica claims a due mail with a conditional
 * UPDATE (status and lease re-checked by the database), so two replicas never send the same mail; a claim
 * lapses after `leaseMs` so the mail of a replica that died mid-send is taken over. The same on every
 * dialect: on MySQL/MariaDB an UPDATE locks the row and re-reads its latest committed version, so the loser
 * matches no row (mysql2 counts matched rows, which is what `numUpdatedRows` reports). A refused or failed send
 * is retried with exponential backoff; an SMTP 5xx refusal, or too many attempts, gives it up (`failed`).
 * Every attempt carries the same Message-ID. Bodies (which hold single-use links) are blanked once done.
 *
 * Exactly once is what SMTP allows: a replica killed after the server accepted a mail but before it marked
 * it sent leaves it to be sent again when its claim lapses; nothing else sends a mail twice.
 */
export class MailOutbox {
  readonly #o: Required<Omit<OutboxOptions, 'metrics' | 'logger'>> &
    Pick<OutboxOptions, 'metrics' | 'logger'>;
  readonly #worker = newId(
    `mw_${hostname()
      .replace(/[^A-Za-z0-9]/g, '')
      .slice(0, 20)}`,
  );
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #stopped = true;

  constructor(options: OutboxOptions) {
    this.#o = { maxAttempts: 12, leaseMs: 120_000, ...options };
  }

  /** Writes a mail to the outbox with `db` (a transaction, when the caller has one). Returns its id. */
  static async enqueue(db: Db, mail: OutgoingMail): Promise<string> {
    const now = nowIso();
    const id = newId('mail');
    await db
      .insertInto('mail_outbox')
      .values({
        id,
        kind: mail.kind,
        to_address: mail.to,
        subject: mail.subject,
        text_body: mail.text,
        html_body: mail.html,
        status: 'pending',
        attempts: 0,
        next_attempt_at: now,
        claimed_by: null,
        lease_until: null,
        last_error: null,
        created_at: now,
        sent_at: null,
      })
      .execute();
    return id;
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.kick();
  }

  /** Stops the loop; a send under way finishes (and is marked) first. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
    this.#o.transport.close();
  }

  /** Scans now (after an enqueue on this replica), instead of at the next poll. */
  kick(): void {
    if (this.#stopped) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    clearTimeout(this.#timer);
    this.#running = this.#loop().finally(() => {
      this.#running = undefined;
      if (this.#stopped) return;
      if (this.#again) {
        this.#again = false;
        this.kick();
        return;
      }
      this.#timer = setTimeout(() => this.kick(), this.#o.pollIntervalMs);
      this.#timer.unref();
    });
  }

  async #loop(): Promise<void> {
    try {
      // Bounded: a full batch is followed by another scan, at most 100 mails per wake-up.
      for (let round = 0; round < 10 && !this.#stopped; round++) {
        if ((await this.sendDue()) < BATCH) break;
      }
    } catch (err) {
      this.#o.logger?.warn({ err }, 'mail outbox scan failed; retrying at the next poll');
    }
  }

  /** Claims and sends the mails that are due (at most one batch); returns how many were claimed. */
  async sendDue(): Promise<number> {
    const { db } = this.#o;
    const now = nowIso();
    const due = await db
      .selectFrom('mail_outbox')
      .select('id')
      .where((eb) =>
        eb.or([
          eb.and([eb('status', '=', 'pending'), eb('next_attempt_at', '<=', now)]),
          eb.and([eb('status', '=', 'sending'), eb('lease_until', '<', now)]),
        ]),
      )
      .orderBy('next_attempt_at')
      .limit(BATCH)
      .execute();
    let claimed = 0;
    for (const { id } of due) {
      if (this.#stopped) break;
      const row = await this.#claim(id);
      if (!row) continue;
      claimed++;
      await this.#send(row);
    }
    return claimed;
  }

  async #claim(id: string) {
    const now = nowIso();
    const result = await this.#o.db
      .updateTable('mail_outbox')
      .set((eb) => ({
        status: 'sending',
        claimed_by: this.#worker,
        lease_until: new Date(Date.now() + this.#o.leaseMs).toISOString(),
        attempts: eb('attempts', '+', 1),
      }))
      .where('id', '=', id)
      .where((eb) =>
        eb.or([
          eb.and([eb('status', '=', 'pending'), eb('next_attempt_at', '<=', now)]),
          eb.and([eb('status', '=', 'sending'), eb('lease_until', '<', now)]),
        ]),
      )
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) !== 1) return undefined; // another replica has it
    return this.#o.db
      .selectFrom('mail_outbox')
      .selectAll()
      .where('id', '=', id)
      .where('claimed_by', '=', this.#worker)
      .executeTakeFirst();
  }

  /** Records the outcome of a send, if this replica's claim still holds. */
  #finish(id: string, changes: Updateable<MailOutboxTable>) {
    return this.#o.db
      .updateTable('mail_outbox')
      .set(changes)
      .where('id', '=', id)
      .where('claimed_by', '=', this.#worker)
      .where('status', '=', 'sending')
      .executeTakeFirst();
  }

  async #send(row: Selectable<MailOutboxTable>) {
    const { metrics, logger } = this.#o;
    try {
      await this.#o.transport.send({
        messageId: `<${row.id}@${this.#o.domain}>`,
        from: this.#o.from,
        to: row.to_address,
        subject: row.subject,
        text: row.text_body,
        html: row.html_body,
      });
    } catch (err) {
      const attempts = Number(row.attempts);
      const giveUp = isPermanentFailure(err) || attempts >= this.#o.maxAttempts;
      const message = String((err as Error)?.message ?? err).slice(0, 500);
      const delay = Math.min(MAX_BACKOFF_MS, this.#o.retryInitialMs * 2 ** (attempts - 1));
      // ±10 % jitter: replicas retrying after one outage do not all reconnect in the same instant.
      const next = new Date(Date.now() + delay * (0.9 + Math.random() * 0.2)).toISOString();
      await this.#finish(
        row.id,
        giveUp
          ? {
              status: 'failed',
              text_body: '',
              html_body: '',
              last_error: message,
              claimed_by: null,
              lease_until: null,
            }
          : {
              status: 'pending',
              next_attempt_at: next,
              last_error: message,
              claimed_by: null,
              lease_until: null,
            },
      );
      metrics?.mailSent.inc({ kind: row.kind, result: giveUp ? 'failed' : 'retry' });
      logger?.[giveUp ? 'error' : 'warn'](
        { mailId: row.id, kind: row.kind, attempts, err: message },
        giveUp ? 'mail given up' : 'mail not sent; will retry',
      );
      return;
    }
    const marked = await this.#finish(row.id, {
      status: 'sent',
      sent_at: nowIso(),
      text_body: '',
      html_body: '',
      last_error: null,
      claimed_by: null,
      lease_until: null,
    });
    metrics?.mailSent.inc({ kind: row.kind, result: 'sent' });
    if (Number(marked.numUpdatedRows) !== 1)
      logger?.warn({ mailId: row.id }, 'a mail was sent after its claim lapsed; it may be sent twice');
  }

  /** Mails waiting (pending or being sent) and given up, for /metrics. */
  async depth(): Promise<{ pending: number; failed: number }> {
    const rows = await this.#o.db
      .selectFrom('mail_outbox')
      .select((eb) => ['status', eb.fn.countAll<number>().as('n')])
      .where('status', 'in', ['pending', 'sending', 'failed'])
      .groupBy('status')
      .execute();
    const count = (s: string) => rows.filter((r) => r.status === s).reduce((a, r) => a + Number(r.n), 0);
    return { pending: count('pending') + count('sending'), failed: count('failed') };
  }
}
