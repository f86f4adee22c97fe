import { setTimeout as sleep } from 'node:timers/promises';
import { ProviderError } from '../../../providers/errors.js';
import type {
  ChatGateway,
  CompletionResult,
  GatewayRequest,
  RouteInfo,
  StreamResult,
} from '../../../providers/router/types.js';
import type { ChatCompletionChunk, StreamEvent, Usage } from '../../../providers/types.js';

/** A point a scripted stream stops at until the test opens it; `reached` resolves when the stream gets there. */
export class Gate {
  readonly reached: Promise<void>;
  readonly #opened: Promise<void>;
  #markReached!: () => void;
  #open!: () => void;

  constructor() {
    this.reached = new Promise((resolve) => {
      this.#markReached = resolve;
    });
    this.#opened = new Promise((resolve) => {
      this.#open = resolve;
    });
  }

  open() {
    this.#open();
  }

  /** Called by the stream: marks the gate reached, then waits for it to open (or the call to be aborted). */
  async pass(signal: AbortSignal | undefined) {
    this.#markReached();
    await new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(cancelled());
      const onAbort = () => reject(cancelled());
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#opened.then(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      });
    });
  }
}

export interface FakeScript {
  /** Text chunks streamed in order. */
  chunks?: string[];
  /** Milliseconds before each chunk. */
  delayMs?: number;
  /** Fails the call before the stream starts (nothing streamed). */
  failBeforeStart?: ProviderError;
  /** Fails the stream after this many chunks. */
  failAfter?: number;
  failWith?: ProviderError;
  /** Stops after this many chunks until `gate` is opened. */
  holdAfter?: number;
  gate?: Gate;
  /** The usage chunk the upstream reports; null: none (the caller must count tokens itself). */
  usage?: Usage | null;
  /** Tool calls the reply makes after its chunks, each streamed in two pieces; it finishes with `tool_calls`. */
  toolCalls?: { id: string; name: string; arguments: string }[];
  /** Runs when the call arrives, before anything else: tests look at the database from here. */
  onCall?: (request: GatewayRequest) => Promise<void> | void;
}

export const upstreamFailure = (message = 'upstream exploded', status = 502) =>
  new ProviderError(message, {
    provider: 'fake',
    upstreamStatus: status,
    status,
    code: status === 429 ? 'upstream_rate_limited' : 'upstream_error',
    type: 'server_error',
    retryable: status >= 500 || status === 429,
    kind: 'upstream',
  });

const cancelled = () =>
  new ProviderError('request cancelled', {
    provider: 'fake',
    status: 499,
    code: 'cancelled',
    retryable: false,
    kind: 'cancelled',
  });

/**
 * A ChatGateway for tests: streams scripted chunks (queued per call with `script()`, else `defaultScript`)
 * with optional delays, holds at a gate, fails before the start or after k chunks, and records every call.
 */
export class FakeGateway implements ChatGateway {
  readonly calls: GatewayRequest[] = [];
  defaultScript: FakeScript = { chunks: ['Hello', ' there', '!'] };
  readonly models = new Set(['fake-model', 'other-model']);
  readonly #queue: FakeScript[] = [];

  get callCount(): number {
    return this.calls.length;
  }

  /** Queues the script of the next call. */
  script(script: FakeScript): this {
    this.#queue.push(script);
    return this;
  }

  hasModel(model: string): boolean {
    return this.models.has(model);
  }

  async listModels() {
    return [...this.models].map((id) => ({ id, owned_by: 'fake' }));
  }

  async complete(request: GatewayRequest): Promise<CompletionResult> {
    const started = performance.now();
    const stream = await this.stream(request);
    let text = '';
    let usage: Usage | undefined;
    for await (const { chunk } of stream.events) {
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    return {
      route: stream.route,
      latencyMs: performance.now() - started,
      completion: {
        id: `chatcmpl-${request.requestId}`,
        object: 'chat.completion',
        created: Math.floor(Date.now() / 1000),
        model: request.body.model,
        choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }],
        ...(usage ? { usage } : {}),
      },
    };
  }

  async stream(request: GatewayRequest): Promise<StreamResult> {
    this.calls.push(request);
    const script = this.#queue.shift() ?? this.defaultScript;
    await script.onCall?.(request);
    if (script.delayMs) await sleep(script.delayMs);
    if (script.failBeforeStart) throw script.failBeforeStart;
    const model = request.body.model;
    const route: RouteInfo = {
      requestedModel: model,
      provider: 'fake',
      deployment: `fake/${model}`,
      upstreamModel: model,
      attempts: 1,
      fallback: false,
    };
    const chunks = script.chunks ?? [];
    const signal = request.signal;
    const base = { id: `chatcmpl-${request.requestId}`, object: 'chat.completion.chunk' as const, model };
    const toolCallChunk = (delta: ChatCompletionChunk['choices'][number]['delta']): StreamEvent => ({
      chunk: {
        ...base,
        created: Math.floor(Date.now() / 1000),
        choices: [{ index: 0, delta, finish_reason: null }],
      },
    });
    const chunk = (content: string | null, finish: 'stop' | 'tool_calls' | null = null): StreamEvent => ({
      chunk: {
        ...base,
        created: Math.floor(Date.now() / 1000),
        choices: [{ index: 0, delta: content === null ? {} : { content }, finish_reason: finish }],
      } satisfies ChatCompletionChunk,
    });
    async function* events(): AsyncGenerator<StreamEvent> {
      for (let i = 0; i < chunks.length; i++) {
        if (script.holdAfter === i && script.gate) await script.gate.pass(signal);
        if (script.failAfter === i) throw script.failWith ?? upstreamFailure('stream broke');
        if (i > 0 && script.delayMs)
          await sleep(script.delayMs, undefined, signal ? { signal } : {}).catch(() => {
            throw cancelled();
          });
        if (signal?.aborted) throw cancelled();
        yield chunk(chunks[i]!);
      }
      if (script.holdAfter === chunks.length && script.gate) await script.gate.pass(signal);
      if (script.failAfter === chunks.length) throw script.failWith ?? upstreamFailure('stream broke');
      for (const [index, call] of (script.toolCalls ?? []).entries()) {
        const half = Math.floor(call.arguments.length / 2);
        yield toolCallChunk({
          tool_calls: [
            {
              index,
              id: call.id,
              type: 'function',
              function: { name: call.name, arguments: call.arguments.slice(0, half) },
            },
          ],
        });
        yield toolCallChunk({ tool_calls: [{ index, function: { arguments: call.arguments.slice(half) } }] });
      }
      yield chunk(null, script.toolCalls?.length ? 'tool_calls' : 'stop');
      const usage =
        script.usage === undefined
          ? { prompt_tokens: 11, completion_tokens: chunks.length, total_tokens: 11 + chunks.length }
          : script.usage;
      if (usage) yield { chunk: { ...base, created: Math.floor(Date.now() / 1000), choices: [], usage } };
    }
    return { route, ttftMs: 1, events: events() };
  }
}
