import { createHash } from 'node:crypto';
import { AppError } from '../core/errors.js';
import { JSON_LIMITS } from '../core/json-shape.js';
import type { RouteInfo } from '../providers/router/types.js';
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionRequest,
  EmbeddingResponse,
  FinishReason,
  StreamEvent,
  Usage,
} from '../providers/types.js';
import { type Cache, type CacheKey, escapeGlob } from './cache.js';

/**
 * Whose answers an entry belongs to. Entries are never shared between tenants: `key:<apiKeyId>` or
 * `user:<userId>`, unless the caller deliberately picks a `shared:<name>` scope.
 */
export type CacheScope = `key:${string}` | `user:${string}` | `shared:${string}`;

export type CacheForm = 'completion' | 'stream';

export interface CacheLookupEvent {
  result: 'hit' | 'miss';
  /** What the caller asked for. */
  form: CacheForm;
  /** On a hit: the form that was recorded (a completion can be replayed as a stream and vice versa). */
  storedForm?: CacheForm;
  /** On a hit: the tokens the cached answer took, to price what the hit saved. */
  usage?: Usage | undefined;
  /** On a hit: the deployment that produced the answer (upstreamModel prices it). */
  route?: RouteInfo | undefined;
}

/** Who a cached answer is for, beyond its scope: what decides which guardrails applied to it. */
export interface CacheCaller {
  role?: string | undefined;
  apiKeyId?: string | null | undefined;
  assistantId?: string | null | undefined;
}

export interface ResponseCacheOptions {
  /** How long an answer is served from the cache (default 1 hour). */
  ttlMs?: number;
  /**
   * Mixed into every key; changing it orphans every entry (they expire by TTL). Pass something that
   * changes when answers would, such as a hash of the routing config.
   */
  salt?: string;
  /** Request fields that do not change the answer, on top of DEFAULT_IGNORED_FIELDS. */
  ignoreFields?: readonly string[];
  /**
   * A part of the key that depends on who asks, beyond the tenant scope: the fingerprint of the guardrails
   * that apply to the caller (issue 22), so an answer produced under other guardrails is never served.
   * '' leaves the key as it was.
   */
  variant?: (who: CacheCaller) => string;
  /** Told about every lookup: wire to metrics (cacheRequests, cacheSavedUsd). Exceptions are swallowed. */
  onLookup?: (event: CacheLookupEvent) => void;
}

export interface CachedCompletion {
  completion: ChatCompletion;
  usage: Usage | undefined;
  /** The deployment that produced the answer; attempts 1 and fallback false, as no upstream was called. */
  route: RouteInfo | undefined;
  storedForm: CacheForm;
  /** Epoch milliseconds. */
  storedAt: number;
}

export interface CachedStream {
  /** The recorded chunks in order; `raw` is the JSON text as first relayed, to be written as is. */
  events: AsyncIterable<StreamEvent>;
  usage: Usage | undefined;
  route: RouteInfo | undefined;
  storedForm: CacheForm;
  storedAt: number;
}

export interface StoreOptions {
  /** The deployment that answered, returned with hits (for usage records and pricing the savings). */
  route?: RouteInfo | undefined;
  ttlMs?: number;
}

/**
 * Request fields that never change the answer: transport (stream, stream_options), end-user ids and
 * bookkeeping. Everything else — model, messages, temperature, top_p, max tokens, stop, seed,
 * response_format, tools and any field Colloquy does not know — is part of the key.
 */
export const DEFAULT_IGNORED_FIELDS: readonly string[] = [
  'stream',
  'stream_options',
  'user',
  'safety_identifier',
  'prompt_cache_key',
  'prompt_cache_retention',
  'metadata',
  'store',
  'service_tier',
];

const SCOPE = /^(key|user|shared):[A-Za-z0-9_.-]{1,200}$/;
const CACHEABLE_FINISH: ReadonlySet<FinishReason> = new Set(['stop', 'length']);
const ENTRY_VERSION = 1;
const DEFAULT_TTL_MS = 60 * 60 * 1000;

interface EntryHeader {
  v: typeof ENTRY_VERSION;
  form: CacheForm;
  storedAt: number;
  route?: RouteInfo;
  /** The answer, for form `completion`. */
  completion?: ChatCompletion;
}
/**
 * Stored as text: the header's JSON on the first line; for a stream, then each chunk's JSON text on a line
 * of its own (JSON text has no raw newlines), so chunks are kept verbatim without a second escaping.
 */
type Entry =
  | { form: 'completion'; storedAt: number; route?: RouteInfo; completion: ChatCompletion }
  | { form: 'stream'; storedAt: number; route?: RouteInfo; events: StreamEvent[] };

/**
 * Whether a request's answer may be served from the cache: only deterministic requests — an explicit
 * `temperature: 0` — or ones the caller opted in (per request, assistant or API key), and only a single
 * choice (`n` absent or 1). Tools are allowed: answers that call a tool are never stored.
 */
export function isCacheable(request: ChatCompletionRequest, options: { optIn?: boolean } = {}): boolean {
  if (request.n !== undefined && request.n !== null && request.n !== 1) return false;
  return request.temperature === 0 || options.optIn === true;
}

/**
 * JSON with object keys sorted at every depth, so equal requests hash equally whatever their key order.
 * Recursive, so bounded: bodies are checked at the edge (core/json-shape.ts), and a value that got past it
 * deeper than that is refused here as the client's error rather than overflowing the stack into a 500.
 */
export function canonicalJson(value: unknown, depth = 0): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (depth >= JSON_LIMITS.maxDepth)
    throw new AppError('invalid_request', `JSON nesting deeper than ${JSON_LIMITS.maxDepth}`);
  if (Array.isArray(value)) {
    return `[${value.map((item) => (item === undefined || typeof item === 'function' ? 'null' : canonicalJson(item, depth + 1))).join(',')}]`;
  }
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record)
    .filter((k) => record[k] !== undefined && typeof record[k] !== 'function')
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(record[k], depth + 1)}`).join(',')}}`;
}

/**
 * The response cache for chat completions, over any Cache (namespace `responses`). Keys are
 * `responses:<scope>:<sha256 of the normalised request>`; entries are either a completion or a stream's
 * chunks, and either can be served in both forms.
 */
export class ResponseCache {
  readonly #cache: Cache;
  readonly #ttlMs: number;
  readonly #salt: string;
  readonly #ignored: ReadonlySet<string>;
  readonly #onLookup: ((event: CacheLookupEvent) => void) | undefined;
  readonly #variant: ((who: CacheCaller) => string) | undefined;

  constructor(cache: Cache, options: ResponseCacheOptions = {}) {
    this.#cache = cache;
    this.#ttlMs = options.ttlMs ?? DEFAULT_TTL_MS;
    this.#salt = options.salt ?? '';
    this.#ignored = new Set([...DEFAULT_IGNORED_FIELDS, ...(options.ignoreFields ?? [])]);
    this.#onLookup = options.onLookup;
    this.#variant = options.variant;
  }

  isCacheable(request: ChatCompletionRequest, options: { optIn?: boolean } = {}): boolean {
    return isCacheable(request, options);
  }

  /** The request as hashed: ignored fields, null top-level fields and `n: 1` dropped. */
  normalise(request: ChatCompletionRequest): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [field, value] of Object.entries(request)) {
      if (this.#ignored.has(field) || value === null || value === undefined) continue;
      if (field === 'n' && value === 1) continue;
      out[field] = value;
    }
    return out;
  }

  /**
   * `endpoint` separates requests of other endpoints (embeddings) that could normalise to the same JSON as
   * a chat request; chat keys are hashed without it, so they stay what they were.
   */
  key(
    scope: CacheScope,
    request: ChatCompletionRequest | Record<string, unknown>,
    endpoint?: 'embeddings',
    who?: CacheCaller,
  ): CacheKey {
    assertScope(scope);
    const variant = who && this.#variant ? this.#variant(who) : '';
    const hash = createHash('sha256')
      .update(`v${ENTRY_VERSION}\n${this.#salt}\n${endpoint ? `${endpoint}\n` : ''}`)
      .update(variant ? `guardrails:${variant}\n` : '')
      .update(canonicalJson(this.normalise(request as ChatCompletionRequest)))
      .digest('hex');
    return `responses:${scope}:${hash}`;
  }

  /** A cached embeddings answer (its key made with endpoint `embeddings`), or undefined. */
  async getEmbeddings(
    key: CacheKey,
  ): Promise<{ response: EmbeddingResponse; route: RouteInfo | undefined } | undefined> {
    const text = await this.#cache.get(key);
    let entry: { v?: number; form?: string; route?: RouteInfo; response?: EmbeddingResponse } | undefined;
    try {
      entry = text === undefined ? undefined : JSON.parse(text);
    } catch {
      entry = undefined;
    }
    if (entry?.v !== ENTRY_VERSION || entry.form !== 'embeddings' || !Array.isArray(entry.response?.data)) {
      if (text !== undefined) await this.#cache.delete(key);
      // Reported like a completion's lookup: the metrics count hits and misses and price what a hit saved.
      this.#report({ result: 'miss', form: 'completion' });
      return undefined;
    }
    const route = replayedRoute(entry.route);
    const usage = {
      prompt_tokens: entry.response.usage.prompt_tokens,
      completion_tokens: 0,
      total_tokens: 0,
    };
    usage.total_tokens = usage.prompt_tokens;
    this.#report({ result: 'hit', form: 'completion', storedForm: 'completion', usage, route });
    return { response: entry.response, route };
  }

  /** Stores an embeddings answer; false when it is larger than the cache takes. */
  async putEmbeddings(key: CacheKey, response: EmbeddingResponse, options: StoreOptions = {}) {
    const text = JSON.stringify({
      v: ENTRY_VERSION,
      form: 'embeddings',
      storedAt: Date.now(),
      ...(options.route && { route: options.route }),
      response,
    });
    if (Buffer.byteLength(text) > this.#cache.maxEntryBytes) return false;
    return this.#cache.set(key, text, options.ttlMs ?? this.#ttlMs);
  }

  /** A cached answer as a completion (converted when a stream was recorded), or undefined. */
  async getCompletion(key: CacheKey): Promise<CachedCompletion | undefined> {
    const entry = await this.#load(key);
    if (!entry) {
      this.#report({ result: 'miss', form: 'completion' });
      return undefined;
    }
    const completion =
      entry.form === 'completion' ? entry.completion : chunksToCompletion(entry.events.map((e) => e.chunk));
    const hit: CachedCompletion = {
      completion,
      usage: completion.usage,
      route: replayedRoute(entry.route),
      storedForm: entry.form,
      storedAt: entry.storedAt,
    };
    this.#report({
      result: 'hit',
      form: 'completion',
      storedForm: entry.form,
      usage: hit.usage,
      route: hit.route,
    });
    return hit;
  }

  /** A cached answer as stream events (converted when a completion was recorded), or undefined. */
  async replay(key: CacheKey): Promise<CachedStream | undefined> {
    const entry = await this.#load(key);
    if (!entry) {
      this.#report({ result: 'miss', form: 'stream' });
      return undefined;
    }
    const events = entry.form === 'stream' ? entry.events : completionToEvents(entry.completion);
    let usage: Usage | undefined;
    for (const { chunk } of events) if (chunk.usage) usage = chunk.usage;
    const route = replayedRoute(entry.route);
    this.#report({ result: 'hit', form: 'stream', storedForm: entry.form, usage, route });
    return { events: iterate(events), usage, route, storedForm: entry.form, storedAt: entry.storedAt };
  }

  /**
   * Stores a non-streamed answer when it is safe to serve again: a 2xx, one choice that finished with
   * `stop` or `length`, and no tool calls. Resolves whether it was stored.
   */
  async putCompletion(
    key: CacheKey,
    completion: ChatCompletion,
    options: StoreOptions & { status?: number } = {},
  ): Promise<boolean> {
    const status = options.status ?? 200;
    if (status < 200 || status > 299 || !isStorableCompletion(completion)) return false;
    const header: EntryHeader = {
      v: ENTRY_VERSION,
      form: 'completion',
      storedAt: Date.now(),
      ...(options.route && { route: options.route }),
      completion,
    };
    return this.#cache.set(key, JSON.stringify(header), options.ttlMs ?? this.#ttlMs);
  }

  /**
   * Records a stream while it is relayed: feed it every event, call `fail()` if the stream errors or is
   * cancelled, and `commit()` once it ended normally. Only complete, tool-free streams are stored.
   */
  recorder(key: CacheKey, options: StoreOptions = {}): StreamRecorder {
    return new StreamRecorder(this.#cache, key, options.ttlMs ?? this.#ttlMs, options.route);
  }

  async delete(key: CacheKey): Promise<boolean> {
    return this.#cache.delete(key);
  }

  /** Drops every cached answer of one tenant (a revoked key, a deleted user). */
  async invalidateScope(scope: CacheScope) {
    assertScope(scope);
    return this.#cache.invalidate(`responses:${escapeGlob(scope)}:*`);
  }

  async #load(key: CacheKey): Promise<Entry | undefined> {
    const text = await this.#cache.get(key);
    if (text === undefined) return undefined;
    const entry = decodeEntry(text);
    if (!entry) await this.#cache.delete(key); // unreadable (older format, corrupted): a miss, and gone
    return entry;
  }

  #report(event: CacheLookupEvent) {
    if (!this.#onLookup) return;
    try {
      this.#onLookup(event);
    } catch {
      // Metrics must never break a request.
    }
  }
}

export type RecorderState = 'recording' | 'rejected' | 'committed';

/** See ResponseCache.recorder(). */
export class StreamRecorder {
  readonly #cache: Cache;
  readonly #key: CacheKey;
  readonly #ttlMs: number;
  readonly #route: RouteInfo | undefined;
  #chunks: string[] = [];
  #bytes = 0;
  #finished = false;
  #state: RecorderState = 'recording';
  #reason: string | undefined;

  constructor(cache: Cache, key: CacheKey, ttlMs: number, route: RouteInfo | undefined) {
    this.#cache = cache;
    this.#key = key;
    this.#ttlMs = ttlMs;
    this.#route = route;
  }

  get state(): RecorderState {
    return this.#state;
  }

  /** Why the stream will not be stored, once it is rejected. */
  get reason(): string | undefined {
    return this.#reason;
  }

  /** Feed every event, in order, including the usage chunk. Cheap: keeps the raw text only. */
  record(event: StreamEvent): void {
    if (this.#state !== 'recording') return;
    const { chunk } = event;
    const problem = disqualification(chunk);
    if (problem) {
      this.#reject(problem);
      return;
    }
    if (chunk.choices?.some((c) => c.finish_reason)) this.#finished = true;
    // Kept verbatim unless it spans lines (pretty-printed upstream JSON): the stored format is line-based.
    const raw = event.raw !== undefined && !event.raw.includes('\n') ? event.raw : JSON.stringify(chunk);
    this.#bytes += Buffer.byteLength(raw) + 1;
    if (this.#bytes > this.#cache.maxEntryBytes) {
      this.#reject('too large');
      return;
    }
    this.#chunks.push(raw);
  }

  /** The stream failed, was cancelled or cut short: nothing will be stored. */
  fail(reason = 'stream failed'): void {
    if (this.#state === 'recording') this.#reject(reason);
  }

  /**
   * Call after the stream ended normally. Stores it when a finish_reason (stop or length) was seen and
   * nothing disqualified it; resolves whether it was stored. Later calls resolve false.
   */
  async commit(): Promise<boolean> {
    if (this.#state !== 'recording') return false;
    if (!this.#finished || this.#chunks.length === 0) {
      this.#reject('no finish_reason: incomplete stream');
      return false;
    }
    this.#state = 'committed';
    const header: EntryHeader = {
      v: ENTRY_VERSION,
      form: 'stream',
      storedAt: Date.now(),
      ...(this.#route && { route: this.#route }),
    };
    const text = `${JSON.stringify(header)}\n${this.#chunks.join('\n')}`;
    this.#chunks = [];
    return this.#cache.set(this.#key, text, this.#ttlMs);
  }

  #reject(reason: string): void {
    this.#state = 'rejected';
    this.#reason = reason;
    this.#chunks = [];
  }
}

/** Why a stream containing this chunk must not be stored, if it must not. */
function disqualification(chunk: ChatCompletionChunk): string | undefined {
  if ((chunk as { error?: unknown }).error !== undefined) return 'in-band error';
  for (const choice of chunk.choices ?? []) {
    if (choice.index !== 0) return 'more than one choice';
    const delta = choice.delta as ChatCompletionChunk['choices'][number]['delta'] & {
      function_call?: unknown;
    };
    if (delta?.tool_calls?.length || delta?.function_call) return 'tool calls';
    if (choice.finish_reason && !CACHEABLE_FINISH.has(choice.finish_reason)) {
      return `finish_reason ${choice.finish_reason}`;
    }
  }
  return undefined;
}

/** One choice that finished with stop/length and called no tool. */
export function isStorableCompletion(completion: ChatCompletion): boolean {
  if (completion?.object !== 'chat.completion' || completion.choices?.length !== 1) return false;
  if ((completion as { error?: unknown }).error !== undefined) return false;
  const choice = completion.choices[0]!;
  if (!CACHEABLE_FINISH.has(choice.finish_reason)) return false;
  const message = choice.message as ChatCompletion['choices'][number]['message'] & {
    function_call?: unknown;
  };
  if (!message || message.tool_calls?.length || message.function_call) return false;
  return typeof message.content === 'string' || typeof message.refusal === 'string';
}

/** A completion as the chunks an OpenAI stream of it would carry (role, content, finish, usage). */
export function completionToEvents(completion: ChatCompletion): StreamEvent[] {
  const base = {
    id: completion.id,
    object: 'chat.completion.chunk' as const,
    created: completion.created,
    model: completion.model,
    ...(completion.system_fingerprint !== undefined && { system_fingerprint: completion.system_fingerprint }),
  };
  const choice = completion.choices[0];
  const chunks: ChatCompletionChunk[] = [
    { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] },
  ];
  const content = choice?.message.content;
  if (content) {
    chunks.push({
      ...base,
      choices: [
        {
          index: 0,
          delta: { content },
          finish_reason: null,
          ...(choice?.logprobs != null && { logprobs: choice.logprobs }),
        },
      ],
    });
  }
  const refusal = choice?.message.refusal;
  if (typeof refusal === 'string') {
    chunks.push({ ...base, choices: [{ index: 0, delta: { refusal }, finish_reason: null }] });
  }
  chunks.push({
    ...base,
    choices: [{ index: 0, delta: {}, finish_reason: choice?.finish_reason ?? 'stop' }],
  });
  if (completion.usage) chunks.push({ ...base, choices: [], usage: completion.usage });
  return chunks.map((chunk) => ({ chunk, raw: JSON.stringify(chunk) }));
}

/** A recorded stream folded back into the completion a non-streamed call would have returned. */
export function chunksToCompletion(chunks: ChatCompletionChunk[]): ChatCompletion {
  const first = chunks[0];
  let content = '';
  let refusal: string | null = null;
  let finishReason: FinishReason = null;
  let usage: Usage | undefined;
  let systemFingerprint: unknown;
  const logprobs: unknown[] = [];
  for (const chunk of chunks) {
    if (chunk.usage) usage = chunk.usage;
    if (chunk.system_fingerprint != null) systemFingerprint = chunk.system_fingerprint;
    for (const choice of chunk.choices ?? []) {
      if (choice.index !== 0) continue;
      if (choice.delta?.content) content += choice.delta.content;
      if (typeof choice.delta?.refusal === 'string') refusal = (refusal ?? '') + choice.delta.refusal;
      if (choice.finish_reason) finishReason = choice.finish_reason;
      const parts = (choice.logprobs as { content?: unknown[] } | null | undefined)?.content;
      if (Array.isArray(parts)) logprobs.push(...parts);
    }
  }
  return {
    id: first?.id ?? 'chatcmpl-cached',
    object: 'chat.completion',
    created: first?.created ?? Math.floor(Date.now() / 1000),
    model: first?.model ?? '',
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: refusal !== null && content === '' ? null : content, refusal },
        finish_reason: finishReason,
        logprobs: logprobs.length > 0 ? { content: logprobs, refusal: null } : null,
      },
    ],
    ...(usage && { usage }),
    ...(systemFingerprint !== undefined && { system_fingerprint: systemFingerprint as string }),
  };
}

function assertScope(scope: string): asserts scope is CacheScope {
  if (typeof scope !== 'string' || !SCOPE.test(scope)) {
    throw new TypeError(
      `response cache scope must be key:<apiKeyId>, user:<userId> or shared:<name> (letters, digits, _ . -), got ${JSON.stringify(scope)}`,
    );
  }
}

function decodeEntry(text: string): Entry | undefined {
  try {
    const newline = text.indexOf('\n');
    const header = JSON.parse(newline < 0 ? text : text.slice(0, newline)) as EntryHeader;
    if (header?.v !== ENTRY_VERSION) return undefined;
    const base = { storedAt: header.storedAt, ...(header.route && { route: header.route }) };
    if (header.form === 'completion' && header.completion?.object === 'chat.completion') {
      return { ...base, form: 'completion', completion: header.completion };
    }
    if (header.form === 'stream' && newline > 0) {
      const events = text
        .slice(newline + 1)
        .split('\n')
        .map((raw) => ({ chunk: JSON.parse(raw) as ChatCompletionChunk, raw }));
      return { ...base, form: 'stream', events };
    }
  } catch {
    // fall through: unreadable
  }
  return undefined;
}

function replayedRoute(route: RouteInfo | undefined): RouteInfo | undefined {
  return route && { ...route, attempts: 1, fallback: false };
}

async function* iterate(events: StreamEvent[]): AsyncGenerator<StreamEvent> {
  yield* events;
}
