import type { Redis } from 'ioredis';
import { AppError } from '../../core/errors.js';
import { nowIso } from '../../core/ids.js';
import type { Logger } from '../../core/logger.js';
import {
  type RateLimiterAbstract,
  RateLimiterMemory,
  RateLimiterRedis,
  RateLimiterRes,
} from '../../core/rate-limiter-flexible.js';
import { type Db, isWriteRace } from '../../db/database.js';
import { assertPasswordAcceptable, hashPassword } from '../auth/passwords.js';
import type { RefreshTokenStore } from '../auth/refresh-tokens.js';
import { normaliseEmail, type Role, type UserRow, type UserStore } from '../users/store.js';
import { MailOutbox } from './outbox.js';
import { type Locale, type MailKind, type MailVars, renderMail } from './templates.js';
import { consumeToken, findUsableToken, issueToken, TOKEN_TTL_MINUTES, type TokenPurpose } from './tokens.js';

/** Where each mailed link lands: console pages that read `token` from the URL. */
export const LINK_PATHS: Record<TokenPurpose, string> = {
  reset: '/console/reset-password',
  verify: '/console/verify-email',
  invite: '/console/accept-invitation',
};

/** Requests for a mail (reset, verification again), per address and per client address. */
const PER_ADDRESS = { points: 3, duration: 3600 };
const PER_IP = { points: 30, duration: 3600 };

export const mailNotConfigured = () =>
  new AppError(
    'mail_not_configured',
    'this server sends no mail (SMTP_HOST is not set): ask an administrator to reset passwords, verify or invite users',
  );
const badLink = () =>
  new AppError(
    'invalid_mail_token',
    'this link is invalid, was already used, or has expired; ask for a new one',
    {
      param: 'token',
    },
  );

export interface AccountMailDeps {
  db: Db;
  users: UserStore;
  refreshTokens: RefreshTokenStore;
  /** Undefined without SMTP: every method that would mail answers 503 mail_not_configured. */
  outbox: MailOutbox | undefined;
  publicUrl: string | undefined;
  redis?: Redis | undefined;
  logger?: Logger | undefined;
}

/**
 * The account flows that go through the user's mailbox (issue 24): password reset, address verification,
 * invitations, and the notices of a changed password or API key. Each writes its token and its mail in one
 * transaction, so a mail is never sent for a token that was not stored, nor a token stored without its mail.
 */
export class AccountMail {
  readonly #perAddress: RateLimiterAbstract;
  readonly #perIp: RateLimiterAbstract;

  constructor(private readonly deps: AccountMailDeps) {
    const make = (keyPrefix: string, o: { points: number; duration: number }) =>
      deps.redis
        ? new RateLimiterRedis({
            storeClient: deps.redis,
            useRedisPackage: false,
            keyPrefix,
            ...o,
            insuranceLimiter: new RateLimiterMemory({ keyPrefix, ...o }),
          })
        : new RateLimiterMemory({ keyPrefix, ...o });
    this.#perAddress = make('mail_request_address', PER_ADDRESS);
    this.#perIp = make('mail_request_ip', PER_IP);
  }

  get enabled(): boolean {
    return this.deps.outbox !== undefined;
  }

  assertEnabled(): void {
    if (!this.enabled) throw mailNotConfigured();
  }

  #link(purpose: TokenPurpose, token: string) {
    return `${this.deps.publicUrl}${LINK_PATHS[purpose]}?token=${encodeURIComponent(token)}`;
  }

  async #enqueue(db: Db, kind: MailKind, locale: Locale, vars: MailVars): Promise<void> {
    await MailOutbox.enqueue(db, { kind, to: vars.email, ...renderMail(kind, locale, vars) });
  }

  /** After a commit: the local sender looks at once (other replicas at their next poll). */
  #kick() {
    this.deps.outbox?.kick();
  }

  /** Counts one request for a mail to `email` from `ip`; 429 past the limits (known and unknown alike). */
  async #throttle(email: string, ip: string): Promise<void> {
    const results = await Promise.allSettled([
      this.#perAddress.consume(email, 1),
      this.#perIp.consume(ip, 1),
    ]);
    let waitMs = -1;
    for (const r of results) {
      if (r.status === 'fulfilled') continue;
      if (!(r.reason instanceof RateLimiterRes)) throw r.reason;
      waitMs = Math.max(waitMs, r.reason.msBeforeNext);
    }
    if (waitMs >= 0) {
      const retryAfter = Math.max(1, Math.ceil(waitMs / 1000));
      throw new AppError(
        'rate_limited',
        `too many mail requests for this address or from this network; try again in ${retryAfter} s`,
        { headers: { 'retry-after': String(retryAfter) } },
      );
    }
  }

  /**
   * Mails a reset link to the account, if there is one and it is enabled. The caller answers the same
   * (202) either way: nothing tells whether the address has an account.
   */
  async requestReset(email: string, ip: string, locale: Locale): Promise<void> {
    this.assertEnabled();
    const address = normaliseEmail(email);
    await this.#throttle(address, ip);
    const user = await this.deps.users.findByEmail(address);
    if (!user || user.disabled_at) return;
    await this.mailReset(user, locale);
  }

  /** Mails the account a reset link (the admin's reset, or the user's own request once throttled). */
  async mailReset(user: UserRow, locale: Locale): Promise<void> {
    this.assertEnabled();
    await this.deps.db.transaction().execute(async (trx) => {
      const { token } = await issueToken(trx, { purpose: 'reset', email: user.email, userId: user.id });
      await this.#enqueue(trx, 'password_reset', locale, {
        email: user.email,
        link: this.#link('reset', token),
        minutes: TOKEN_TTL_MINUTES.reset,
      });
    });
    this.#kick();
  }

  /**
   * Sets the new password (the token used up in the same transaction), signs every session out and mails a
   * notice. A password the rules refuse leaves the token usable.
   */
  async confirmReset(token: string, password: string, locale: Locale): Promise<void> {
    const found = await findUsableToken(this.deps.db, 'reset', token);
    if (!found?.user_id) throw badLink();
    assertPasswordAcceptable(password, found.email);
    const passwordHash = await hashPassword(password);
    const userId = await this.deps.db.transaction().execute(async (trx) => {
      const row = await consumeToken(trx, 'reset', token);
      const user = row?.user_id
        ? await trx.selectFrom('users').selectAll().where('id', '=', row.user_id).executeTakeFirst()
        : undefined;
      if (!user || user.disabled_at) throw badLink();
      // A reset proves the address as well as a verification link would.
      await trx
        .updateTable('users')
        .set({ password_hash: passwordHash, verification_pending_at: null, updated_at: nowIso() })
        .where('id', '=', user.id)
        .execute();
      if (this.enabled) await this.#enqueue(trx, 'password_changed', locale, { email: user.email });
      return user.id;
    });
    await this.deps.refreshTokens.revokeAllForUser(userId);
    this.#kick();
  }

  /** A self sign-up that must confirm its address: the account and its verification mail, together. */
  async signUpPending(create: (db: Db) => Promise<UserRow>, locale: Locale): Promise<UserRow> {
    this.assertEnabled();
    const user = await this.deps.db.transaction().execute(async (trx) => {
      const created = await create(trx);
      await this.#mailVerification(trx, created, locale);
      return created;
    });
    this.#kick();
    return user;
  }

  async #mailVerification(db: Db, user: UserRow, locale: Locale) {
    const { token } = await issueToken(db, { purpose: 'verify', email: user.email, userId: user.id });
    await this.#enqueue(db, 'verify_email', locale, {
      email: user.email,
      link: this.#link('verify', token),
      minutes: TOKEN_TTL_MINUTES.verify,
    });
  }

  /** Mails a new verification link to an account still waiting for one (same answer otherwise). */
  async resendVerification(email: string, ip: string, locale: Locale): Promise<void> {
    this.assertEnabled();
    const address = normaliseEmail(email);
    await this.#throttle(address, ip);
    const user = await this.deps.users.findByEmail(address);
    if (!user || user.disabled_at || !user.verification_pending_at) return;
    await this.deps.db.transaction().execute((trx) => this.#mailVerification(trx, user, locale));
    this.#kick();
  }

  /** Confirms the address of the token's account: it may sign in from now on. */
  async verifyEmail(token: string): Promise<UserRow> {
    const userId = await this.deps.db.transaction().execute(async (trx) => {
      const row = await consumeToken(trx, 'verify', token);
      if (!row?.user_id) throw badLink();
      await trx
        .updateTable('users')
        .set({ verification_pending_at: null, updated_at: nowIso() })
        .where('id', '=', row.user_id)
        .execute();
      return row.user_id;
    });
    const user = await this.deps.users.findById(userId);
    if (!user) throw badLink();
    return user;
  }

  /** An admin invites an address with a role; 409 when it already has an account. */
  async invite(input: { email: string; role: Role; invitedBy: string | null; locale: Locale }) {
    this.assertEnabled();
    const email = normaliseEmail(input.email);
    if (await this.deps.users.findByEmail(email))
      throw new AppError('conflict', 'a user with this email already exists', { param: 'email' });
    const row = await this.deps.db.transaction().execute(async (trx) => {
      const issued = await issueToken(trx, {
        purpose: 'invite',
        email,
        role: input.role,
        createdBy: input.invitedBy,
      });
      await this.#enqueue(trx, 'invitation', input.locale, {
        email,
        role: input.role,
        link: this.#link('invite', issued.token),
        minutes: TOKEN_TTL_MINUTES.invite,
      });
      return issued.row;
    });
    this.#kick();
    return row;
  }

  /** Creates the invited account (the token used up with it); returns its email for signing in. */
  async acceptInvitation(token: string, password: string, displayName: string | null): Promise<string> {
    const found = await findUsableToken(this.deps.db, 'invite', token);
    if (!found) throw badLink();
    assertPasswordAcceptable(password, found.email);
    const passwordHash = await hashPassword(password);
    try {
      await this.deps.db.transaction().execute(async (trx) => {
        const row = await consumeToken(trx, 'invite', token);
        if (!row) throw badLink();
        await this.deps.users.create(
          { email: row.email, passwordHash, role: row.role ?? 'user', displayName },
          trx,
        );
      });
    } catch (err) {
      if (isWriteRace(err))
        throw new AppError('conflict', 'an account with this email already exists; sign in instead', {
          param: 'token',
        });
      throw err;
    }
    return found.email;
  }

  /**
   * A notice to the account's owner (a changed password, an API key created or revoked). Without mail it
   * is not sent, which `GET /api/auth/options` states; a failure to queue it is logged, the change stands.
   */
  async notify(userId: string, kind: MailKind, locale: Locale, vars: Omit<MailVars, 'email'> = {}) {
    if (!this.enabled) return;
    try {
      const user = await this.deps.users.findById(userId);
      if (!user) return;
      await this.#enqueue(this.deps.db, kind, locale, { ...vars, email: user.email });
      this.#kick();
    } catch (err) {
      this.deps.logger?.error({ err, kind }, 'could not queue a notice mail');
    }
  }
}
