// The console's API client. Types come from the server's OpenAPI document (web/src/api/openapi.json, kept
// in sync with /openapi.json by test/console/plugin.test.ts), generated into schema.gen.ts at build time.
import type { components, paths } from './schema.gen';

export type Schemas = components['schemas'];
export type User = Schemas['User'];
export type ApiKey = Schemas['ApiKey'];
export type Conversation = Schemas['Conversation'];
export type Message = Schemas['Message'];
export type Assistant = Schemas['Assistant'];
export type FileMeta = Schemas['File'];

type JsonOf<R> = R extends { content: { 'application/json': infer J } } ? J : never;
type OkOf<Op> = Op extends { responses: infer R }
  ? R extends { 200: infer A }
    ? JsonOf<A>
    : R extends { 201: infer B }
      ? JsonOf<B>
      : null
  : never;
type BodyOf<Op> = Op extends { requestBody: { content: { 'application/json': infer B } } }
  ? B
  : Op extends { requestBody?: { content: { 'application/json': infer B } } }
    ? B
    : never;

export type Res<P extends keyof paths, M extends keyof paths[P]> = OkOf<paths[P][M]>;
export type Body<P extends keyof paths, M extends keyof paths[P]> = BodyOf<paths[P][M]>;
export type UsageRow = Res<'/api/usage', 'get'>['data'][number];
export type UsageGroup = 'day' | 'model' | 'api_key' | 'user' | 'protocol';
export type ProviderHealth = Res<'/api/admin/providers', 'get'>;
export type RouteHealth = ProviderHealth['routes'][number];
export type DeploymentHealth = RouteHealth['deployments'][number];
export type TokenPair = Res<'/api/auth/login', 'post'>;
export type Model = Res<'/v1/models', 'get'>['data'][number];

export type Scope = 'key' | 'user';
export type Guardrail = Res<'/api/guardrails', 'get'>['data'][number];
export type GuardrailBody = Body<'/api/guardrails', 'post'>;
export type GuardrailPreset = Res<'/api/guardrails/presets', 'get'>['data'][number];
export type EffectiveGuardrail = Res<'/api/guardrails/effective', 'get'>['data'][number];
export type Invitation = Res<'/api/invitations', 'post'>;

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** Seconds, from a Retry-After header (rate limits, sign-in throttling). */
    readonly retryAfter: number | null = null,
  ) {
    super(message);
  }
}

const REFRESH_KEY = 'colloquy.refresh_token';

export interface StreamHandlers {
  onEvent: (type: string, data: Record<string, unknown>, id: number | null) => void;
}

/** Access token in memory only; the refresh token in sessionStorage (this tab, until it closes). */
export class Api {
  #access: string | null = null;
  #refreshing: Promise<boolean> | null = null;
  onSignedOut: () => void = () => {};

  get hasSession() {
    return sessionStorage.getItem(REFRESH_KEY) !== null;
  }

  #store(pair: TokenPair) {
    this.#access = pair.access_token;
    sessionStorage.setItem(REFRESH_KEY, pair.refresh_token);
  }

  async login(email: string, password: string): Promise<User> {
    const pair = (await this.#raw('POST', '/api/auth/login', { email, password }, false)) as TokenPair;
    this.#store(pair);
    return pair.user as User;
  }

  /** Rotates the refresh token; one refresh runs at a time however many requests got a 401. */
  refresh(): Promise<boolean> {
    this.#refreshing ??= (async () => {
      const token = sessionStorage.getItem(REFRESH_KEY);
      if (!token) return false;
      try {
        this.#store(
          (await this.#raw('POST', '/api/auth/refresh', { refresh_token: token }, false)) as TokenPair,
        );
        return true;
      } catch {
        this.#access = null;
        sessionStorage.removeItem(REFRESH_KEY);
        return false;
      } finally {
        this.#refreshing = null;
      }
    })();
    return this.#refreshing;
  }

  async logout() {
    const token = sessionStorage.getItem(REFRESH_KEY);
    this.#access = null;
    sessionStorage.removeItem(REFRESH_KEY);
    if (token) await this.#raw('POST', '/api/auth/logout', { refresh_token: token }, false).catch(() => {});
  }

  #headers(json: boolean): Record<string, string> {
    const h: Record<string, string> = {};
    if (json) h['content-type'] = 'application/json';
    if (this.#access) h.authorization = `Bearer ${this.#access}`;
    return h;
  }

  async #fetch(method: string, path: string, body: unknown, auth: boolean, signal?: AbortSignal) {
    const init = (): RequestInit => ({
      method,
      headers: this.#headers(body !== undefined),
      body: body === undefined ? null : JSON.stringify(body),
      signal: signal ?? null,
    });
    let res = await fetch(path, init());
    if (res.status === 401 && auth) {
      if (await this.refresh()) res = await fetch(path, init());
      else this.onSignedOut();
    }
    if (!res.ok) {
      let code = 'http_error';
      let message = `${res.status} ${res.statusText}`;
      try {
        const e = (await res.json()) as Schemas['Error'];
        code = e.error.code;
        message = e.error.message;
      } catch {}
      const retryAfter = Number(res.headers.get('retry-after'));
      throw new ApiError(
        res.status,
        code,
        message,
        Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : null,
      );
    }
    return res;
  }

  async #raw(method: string, path: string, body: unknown, auth = true): Promise<unknown> {
    const res = await this.#fetch(method, path, body, auth);
    return res.status === 204 ? null : res.json();
  }

  get<P extends keyof paths>(
    path: P | string,
    query?: Record<string, string | number | boolean | undefined>,
  ) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== '') qs.set(k, String(v));
    const url = qs.size ? `${String(path)}?${qs}` : String(path);
    return this.#raw('GET', url, undefined);
  }

  // Typed helpers: the paths and bodies are checked against the OpenAPI document.
  me = () => this.#raw('GET', '/api/me', undefined) as Promise<Res<'/api/me', 'get'>>;
  models = () => this.#raw('GET', '/v1/models', undefined) as Promise<Res<'/v1/models', 'get'>>;
  usage = (q: {
    from?: string;
    to?: string;
    group_by: UsageGroup;
    user_id?: string | undefined;
    api_key_id?: string | undefined;
    model?: string | undefined;
  }) => this.get('/api/usage', q) as Promise<Res<'/api/usage', 'get'>>;
  providers = () => this.#raw('GET', '/api/admin/providers', undefined) as Promise<ProviderHealth>;

  conversations = (q?: string) =>
    this.get('/api/conversations', { limit: 100, q }) as Promise<Res<'/api/conversations', 'get'>>;
  conversation = (id: string) =>
    this.#raw('GET', `/api/conversations/${enc(id)}`, undefined) as Promise<Conversation>;
  createConversation = (body: Body<'/api/conversations', 'post'>) =>
    this.#raw('POST', '/api/conversations', body) as Promise<Conversation>;
  updateConversation = (id: string, body: Body<'/api/conversations/{id}', 'patch'>) =>
    this.#raw('PATCH', `/api/conversations/${enc(id)}`, body) as Promise<Conversation>;
  deleteConversation = (id: string) => this.#raw('DELETE', `/api/conversations/${enc(id)}`, undefined);
  messages = (id: string) =>
    this.get(`/api/conversations/${enc(id)}/messages`, { limit: 500 }) as Promise<
      Res<'/api/conversations/{id}/messages', 'get'>
    >;
  cancel = (generationId: string) =>
    this.#raw('POST', `/api/generations/${enc(generationId)}/cancel`, {}).catch(() => null);

  assistants = () => this.get('/api/assistants', { limit: 100 }) as Promise<Res<'/api/assistants', 'get'>>;
  createAssistant = (body: Body<'/api/assistants', 'post'>) =>
    this.#raw('POST', '/api/assistants', body) as Promise<Assistant>;
  updateAssistant = (id: string, body: Body<'/api/assistants/{id}', 'patch'>) =>
    this.#raw('PATCH', `/api/assistants/${enc(id)}`, body) as Promise<Assistant>;
  deleteAssistant = (id: string) => this.#raw('DELETE', `/api/assistants/${enc(id)}`, undefined);

  /** Admins list every key (`all`), anyone else their own. */
  keys = (all = false) =>
    this.get('/api/keys', { limit: 100, all: all || undefined }) as Promise<Res<'/api/keys', 'get'>>;
  createKey = (body: Body<'/api/keys', 'post'>) =>
    this.#raw('POST', '/api/keys', body) as Promise<Res<'/api/keys', 'post'>>;
  revokeKey = (id: string) => this.#raw('DELETE', `/api/keys/${enc(id)}`, undefined);
  updateKey = (id: string, body: Body<'/api/keys/{id}', 'patch'>) =>
    this.#raw('PATCH', `/api/keys/${enc(id)}`, body) as Promise<ApiKey>;

  users = () => this.get('/api/users', { limit: 100 }) as Promise<Res<'/api/users', 'get'>>;
  createUser = (body: Body<'/api/users', 'post'>) => this.#raw('POST', '/api/users', body) as Promise<User>;
  updateUser = (id: string, body: Body<'/api/users/{id}', 'patch'>) =>
    this.#raw('PATCH', `/api/users/${enc(id)}`, body) as Promise<User>;
  deleteUser = (id: string) =>
    this.#raw('DELETE', `/api/users/${enc(id)}`, undefined) as Promise<Res<'/api/users/{id}', 'delete'>>;
  resetPassword = (id: string, body: Body<'/api/users/{id}/password', 'post'>) =>
    this.#raw('POST', `/api/users/${enc(id)}/password`, body) as Promise<
      Res<'/api/users/{id}/password', 'post'>
    >;

  budgets = (scope: Scope, id: string) =>
    this.#raw('GET', `/api/budgets/${scope}/${enc(id)}`, undefined) as Promise<
      Res<'/api/budgets/{scope}/{subject_id}', 'get'>
    >;
  setBudget = (scope: Scope, id: string, body: Body<'/api/budgets/{scope}/{subject_id}', 'put'>) =>
    this.#raw('PUT', `/api/budgets/${scope}/${enc(id)}`, body);
  removeBudget = (scope: Scope, id: string, period: 'day' | 'month') =>
    this.#raw('DELETE', `/api/budgets/${scope}/${enc(id)}?period=${period}`, undefined);
  limits = (scope: Scope, id: string) =>
    this.#raw('GET', `/api/limits/${scope}/${enc(id)}`, undefined) as Promise<
      Res<'/api/limits/{scope}/{subject_id}', 'get'>
    >;
  setLimit = (scope: Scope, id: string, body: Body<'/api/limits/{scope}/{subject_id}', 'put'>) =>
    this.#raw('PUT', `/api/limits/${scope}/${enc(id)}`, body);
  removeLimit = (scope: Scope, id: string, limit: string) =>
    this.#raw('DELETE', `/api/limits/${scope}/${enc(id)}?limit=${enc(limit)}`, undefined);
  audit = (q: { before?: string; action?: string; actor_user_id?: string; limit?: number }) =>
    this.get('/api/admin/audit', { limit: 50, ...q }) as Promise<Res<'/api/admin/audit', 'get'>>;
  invalidateCache = (pattern: string) =>
    this.#raw('POST', '/api/admin/cache/invalidate', { pattern }) as Promise<
      Res<'/api/admin/cache/invalidate', 'post'>
    >;
  // Signed-out flows (issue 24): what the sign-in page may offer, and the pages mailed links open.
  guardrails = () => this.#raw('GET', '/api/guardrails', undefined) as Promise<Res<'/api/guardrails', 'get'>>;
  createGuardrail = (body: GuardrailBody) => this.#raw('POST', '/api/guardrails', body) as Promise<Guardrail>;
  updateGuardrail = (id: string, body: GuardrailBody) =>
    this.#raw('PUT', `/api/guardrails/${enc(id)}`, body) as Promise<Guardrail>;
  deleteGuardrail = (id: string) => this.#raw('DELETE', `/api/guardrails/${enc(id)}`, undefined);
  guardrailPresets = () =>
    this.#raw('GET', '/api/guardrails/presets', undefined) as Promise<Res<'/api/guardrails/presets', 'get'>>;
  applyPreset = (
    preset: 'child-safe' | 'wellbeing',
    body: Body<'/api/guardrails/presets/{preset}/apply', 'post'>,
  ) =>
    this.#raw('POST', `/api/guardrails/presets/${preset}/apply`, body) as Promise<
      Res<'/api/guardrails/presets/{preset}/apply', 'post'>
    >;
  effectiveGuardrails = (q: { role?: string; key_id?: string; assistant_id?: string }) =>
    this.get('/api/guardrails/effective', q) as Promise<Res<'/api/guardrails/effective', 'get'>>;
  referrals = (q: { from?: string; to?: string; days?: number }) =>
    this.get('/api/guardrails/referrals', q) as Promise<Res<'/api/guardrails/referrals', 'get'>>;
  invite = (body: Body<'/api/invitations', 'post'>) =>
    this.#raw('POST', '/api/invitations', body) as Promise<Invitation>;

  authOptions = () =>
    this.#raw('GET', '/api/auth/options', undefined, false) as Promise<Res<'/api/auth/options', 'get'>>;
  requestPasswordReset = (body: Body<'/api/auth/password-reset', 'post'>) =>
    this.#raw('POST', '/api/auth/password-reset', body, false);
  confirmPasswordReset = (body: Body<'/api/auth/password-reset/confirm', 'post'>) =>
    this.#raw('POST', '/api/auth/password-reset/confirm', body, false);
  verifyEmail = (body: Body<'/api/auth/verify-email', 'post'>) =>
    this.#raw('POST', '/api/auth/verify-email', body, false) as Promise<User>;
  async acceptInvitation(body: Body<'/api/invitations/accept', 'post'>): Promise<User> {
    const pair = (await this.#raw('POST', '/api/invitations/accept', body, false)) as TokenPair;
    this.#store(pair);
    return pair.user as User;
  }

  // Files (issue 24): uploads go by XMLHttpRequest for its progress events (web/src/pages/attachments.ts).
  /** The current access token, refreshed first when there is none (for requests made outside fetch). */
  async bearer(): Promise<string | null> {
    if (!this.#access) await this.refresh();
    return this.#access;
  }
  file = (id: string) => this.#raw('GET', `/api/files/${enc(id)}`, undefined) as Promise<FileMeta>;
  fileText = (id: string) =>
    this.#raw('GET', `/api/files/${enc(id)}/text`, undefined) as Promise<Res<'/api/files/{id}/text', 'get'>>;
  /** A file's bytes with the bearer token (an <img src> cannot send it): shown through an object URL. */
  fileBlob = async (id: string) =>
    (await this.#fetch('GET', `/api/files/${enc(id)}/content`, undefined, true)).blob();

  /** POSTs and reads the server-sent events until the stream ends. */
  async stream(path: string, body: unknown, handlers: StreamHandlers, signal?: AbortSignal) {
    await readSse(await this.#fetch('POST', path, body, true, signal), handlers);
  }

  /** Re-joins a generation (after a reload, or a stream the server closed): the events after `after`. */
  async rejoin(generationId: string, after: number, handlers: StreamHandlers, signal?: AbortSignal) {
    const path = `/api/generations/${enc(generationId)}/events${after ? `?after=${after}` : ''}`;
    await readSse(await this.#fetch('GET', path, undefined, true, signal), handlers);
  }
}

async function readSse(res: Response, handlers: StreamHandlers) {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut = buffer.indexOf('\n\n');
    while (cut >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      cut = buffer.indexOf('\n\n');
      let type = 'message';
      let data = '';
      let id: number | null = null;
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) type = line.slice(6).trim();
        else if (line.startsWith('data:')) data += line.slice(5).trim();
        else if (line.startsWith('id:')) id = Number(line.slice(3).trim()) || null;
      }
      if (data) handlers.onEvent(type, JSON.parse(data) as Record<string, unknown>, id);
    }
  }
}

const enc = encodeURIComponent;
export const api = new Api();
