/**
 * A credential that expires (an Entra ID or Google access token, temporary AWS keys), cached and renewed
 * ahead of expiry so no upstream call goes out with one about to lapse. Concurrent callers share one
 * renewal; a failed renewal while the cached credential is still valid keeps using it (the next call tries
 * again) rather than failing the request — issue 21: "expired credentials are refreshed without a failed
 * request". One helper for the Azure, Vertex and Bedrock providers.
 */
export interface Expiring<T> {
  value: T;
  /** Epoch ms; absent: it never expires (static keys). */
  expiresAt?: number | undefined;
  /**
   * Epoch ms the credential was asked for, when its lifetime is known: a short-lived one is then renewed at
   * half its lifetime if that comes before the margin.
   */
  issuedAt?: number | undefined;
}

/** Renewed this long before expiry by default. */
export const REFRESH_MARGIN_MS = 5 * 60_000;

export class RefreshingCredential<T> {
  readonly #fetch: () => Promise<Expiring<T>>;
  readonly #now: () => number;
  readonly #marginMs: number;
  #current: { value: T; expiresAt: number; refreshAt: number } | undefined;
  #pending: Promise<T> | undefined;

  constructor(
    fetch: () => Promise<Expiring<T>>,
    options: { now?: (() => number) | undefined; marginMs?: number } = {},
  ) {
    this.#fetch = fetch;
    this.#now = options.now ?? Date.now;
    this.#marginMs = options.marginMs ?? REFRESH_MARGIN_MS;
  }

  /** The credential in use now, if one was fetched (for scrubbing it from messages). */
  get current(): T | undefined {
    return this.#current?.value;
  }

  async get(): Promise<T> {
    const cached = this.#current;
    if (cached && this.#now() < cached.refreshAt) return cached.value;
    this.#pending ??= this.#fetch()
      .then((fresh) => {
        this.#current = this.#entry(fresh);
        return fresh.value;
      })
      .finally(() => {
        this.#pending = undefined;
      });
    try {
      return await this.#pending;
    } catch (err) {
      if (cached && this.#now() < cached.expiresAt) return cached.value;
      throw err;
    }
  }

  #entry({ value, expiresAt = Number.POSITIVE_INFINITY, issuedAt }: Expiring<T>) {
    const margin =
      issuedAt === undefined ? this.#marginMs : Math.min(this.#marginMs, (expiresAt - issuedAt) / 2);
    return { value, expiresAt, refreshAt: expiresAt - margin };
  }
}
