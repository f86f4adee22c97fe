import { AppError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { Principal } from './principal.js';

/** Timers past this are not set (Node caps a delay at 2^31-1 ms, ~24.8 days): nothing streams that long. */
const MAX_TIMER_MS = 2_147_483_647;

interface Watched {
  principal: Principal;
  end: (reason: AppError) => void;
  timer: NodeJS.Timeout | undefined;
}

/**
 * Ends what a credential keeps open — /v1 and conversation streams, WebSockets, running generations — once
 * the credential stops being valid: its API key revoked, its user disabled, or (watched with `expiry`) its
 * access token or key expired. Revocations arrive through `notice()`, called for every invalidation the API
 * key cache applies: the local ones and, through its Redis channel, every other replica's, so a key revoked
 * on one replica ends its streams on all of them within moments. A notice is only a hint: the principal is
 * checked against the database (`stillValid`) before anything is ended, so a role change ends nothing.
 */
export class CredentialWatch {
  readonly #watched = new Set<Watched>();

  constructor(
    private readonly deps: {
      stillValid: (principal: Principal) => Promise<boolean>;
      logger?: Logger | undefined;
    },
  ) {}

  get size(): number {
    return this.#watched.size;
  }

  /**
   * Calls `end` (once) when the principal's credential is revoked or its user disabled, and with `expiry`
   * when the credential expires (principal.expiresAt). Returns the function that stops watching.
   */
  watch(
    principal: Principal,
    end: (reason: AppError) => void,
    options: { expiry?: boolean } = {},
  ): () => void {
    if (principal.via === 'master_key') return () => {};
    const entry: Watched = { principal, end, timer: undefined };
    this.#watched.add(entry);
    const expiresAt = options.expiry ? principal.expiresAt : undefined;
    if (expiresAt !== undefined) {
      const delay = Math.max(0, expiresAt - Date.now());
      if (delay <= MAX_TIMER_MS) {
        entry.timer = setTimeout(() => this.#end(entry, expired(principal)), delay);
        entry.timer.unref();
      }
    }
    return () => this.#forget(entry);
  }

  /** A key (`key`) or every key and token of a user (`user`) may have stopped being valid. */
  notice(kind: 'key' | 'user', id: string): void {
    const affected = [...this.#watched].filter((entry) =>
      kind === 'key' ? entry.principal.apiKeyId === id : entry.principal.userId === id,
    );
    if (affected.length === 0) return;
    // One check per distinct credential, however many streams it holds open.
    const checks = new Map<string, Promise<boolean>>();
    for (const entry of affected) {
      const { principal } = entry;
      const credential = principal.apiKeyId ? `key:${principal.apiKeyId}` : `user:${principal.userId}`;
      let check = checks.get(credential);
      if (!check) {
        check = this.deps.stillValid(principal);
        checks.set(credential, check);
      }
      check.then(
        (valid) => {
          if (!valid) this.#end(entry, revoked(principal));
        },
        (err: unknown) =>
          this.deps.logger?.warn({ err }, 'could not check a credential after a revocation notice'),
      );
    }
  }

  #end(entry: Watched, reason: AppError) {
    if (!this.#forget(entry)) return;
    try {
      entry.end(reason);
    } catch (err) {
      this.deps.logger?.error({ err }, 'ending a stream whose credential was revoked failed');
    }
  }

  #forget(entry: Watched): boolean {
    clearTimeout(entry.timer);
    return this.#watched.delete(entry);
  }
}

const revoked = (principal: Principal) =>
  principal.via === 'api_key'
    ? new AppError('invalid_api_key', 'the API key was revoked, or its user disabled')
    : new AppError('invalid_token', 'the user was disabled');

const expired = (principal: Principal) =>
  principal.via === 'api_key'
    ? new AppError('invalid_api_key', 'the API key has expired')
    : new AppError('invalid_token', 'access token has expired');
