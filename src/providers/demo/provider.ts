import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { truncateGraphemes } from '../../core/text-normalize.js';
import { ProviderError } from '../errors.js';
import { countTexts, countTextTokens, estimateUsage, messageText } from '../tokens.js';
import type {
  CallOptions,
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionRequest,
  FinishReason,
  LlmProvider,
  StreamEvent,
} from '../types.js';

export const DEMO_MODEL = 'demo';

const SENTENCES = [
  'Colloquy is answering with its built-in demo model, because no LLM provider is configured.',
  'Set OPENAI_API_KEY, ANTHROPIC_API_KEY or OPENAI_BASE_URL to talk to a real model.',
  'Everything around the model is real: authentication, storage, streaming and usage records.',
  'Replies are deterministic, so the same conversation always gets the same answer.',
  'Streaming arrives word by word, paced like a real model, to exercise clients end to end.',
  'Try the conversation API, the OpenAI-compatible endpoint, or the console.',
];

/**
 * An in-process model for development and tests: deterministic (the reply depends only on the request),
 * streamed word by word with realistic pacing, clearly labelled as a demo. Refused in production.
 */
export class DemoProvider implements LlmProvider {
  readonly kind = 'demo' as const;

  constructor(
    readonly name = 'demo',
    /** Milliseconds between streamed words; 0 in tests. */
    private readonly wordDelayMs = 15,
  ) {}

  async complete(body: ChatCompletionRequest, options: CallOptions): Promise<ChatCompletion> {
    const reply = await this.compose(body);
    if (this.wordDelayMs)
      await sleep(Math.min(200, this.wordDelayMs * 4), undefined, { signal: options.signal }).catch(
        cancelled,
      );
    return {
      id: `chatcmpl-${options.requestId}`,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: DEMO_MODEL,
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: reply.text, refusal: null },
          finish_reason: reply.finish,
          logprobs: null,
        },
      ],
      usage: reply.usage,
      system_fingerprint: 'colloquy-demo',
    };
  }

  async stream(body: ChatCompletionRequest, options: CallOptions): Promise<AsyncIterable<StreamEvent>> {
    const reply = await this.compose(body);
    const delay = this.wordDelayMs;
    const base = {
      id: `chatcmpl-${options.requestId}`,
      object: 'chat.completion.chunk' as const,
      created: Math.floor(Date.now() / 1000),
      model: DEMO_MODEL,
      system_fingerprint: 'colloquy-demo',
    };
    const chunk = (
      delta: ChatCompletionChunk['choices'][0]['delta'],
      finish: FinishReason = null,
    ): StreamEvent => ({
      chunk: { ...base, choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }] },
    });
    const words = reply.text.match(/\S+\s*/g) ?? [];
    async function* events(): AsyncGenerator<StreamEvent> {
      yield chunk({ role: 'assistant', content: '' });
      for (const word of words) {
        if (delay) await sleep(delay, undefined, { signal: options.signal }).catch(cancelled);
        else if (options.signal.aborted) cancelled();
        yield chunk({ content: word });
      }
      yield chunk({}, reply.finish);
      yield { chunk: { ...base, choices: [], usage: reply.usage } };
    }
    return events();
  }

  async listModels(): Promise<string[]> {
    return [DEMO_MODEL];
  }

  private async compose(body: ChatCompletionRequest) {
    const lastUser = [...body.messages].reverse().find((m) => m.role === 'user');
    const said = lastUser ? messageText(lastUser).replace(/\s+/g, ' ').trim() : '';
    const digest = createHash('sha256').update(JSON.stringify(body.messages)).digest();
    const count = 2 + (digest[0]! % 3);
    const picked = Array.from(
      { length: count },
      (_, i) => SENTENCES[(digest[i + 1]! + i) % SENTENCES.length],
    );
    const quote = said
      ? `You said: “${said.length > 200 ? `${truncateGraphemes(said, 200)}…` : said}”. `
      : '';
    let text = `[demo] ${quote}${picked.join(' ')}`;
    let finish: FinishReason = 'stop';

    const stops =
      body.stop === undefined || body.stop === null ? [] : Array.isArray(body.stop) ? body.stop : [body.stop];
    for (const stop of stops) {
      const at = stop ? text.indexOf(stop) : -1;
      if (at >= 0) text = text.slice(0, at);
    }
    const limit = body.max_completion_tokens ?? body.max_tokens;
    if (limit && (await countTextTokens(text)) > limit) {
      // One count per word-prefix, in one call to the counting worker; the longest that fits is kept.
      const prefixes: string[] = [];
      for (const word of text.match(/\S+\s*/g) ?? []) prefixes.push((prefixes.at(-1) ?? '') + word);
      const counts = await countTexts(prefixes);
      const over = counts.findIndex((count) => count > limit);
      text = (prefixes[(over < 0 ? prefixes.length : over) - 1] ?? '').trimEnd();
      finish = 'length';
    }
    return { text, finish, usage: await estimateUsage(body.messages, text) };
  }
}

function cancelled(): never {
  throw new ProviderError('request cancelled', {
    provider: 'demo',
    status: 499,
    code: 'cancelled',
    retryable: false,
    kind: 'cancelled',
  });
}
