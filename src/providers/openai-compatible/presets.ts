import type { Logger } from '../../core/logger.js';
import type { OpenAiNativeProtocol } from '../openai/native.js';
import { OpenAiProvider } from '../openai/provider.js';
import type { Quirk } from '../openai/quirks.js';
import { PRESET_LIST, type PresetInfo, type PresetName } from './preset-list.js';
import { deepseekReasoningContent, dropParams, mistralToolCallIds, renameParams } from './quirks.js';

/**
 * What each preset changes in a request, from the vendors' API references (README "OpenAI-compatible
 * presets" lists the same). Everything else is forwarded as the client sent it.
 */
const QUIRKS: Record<PresetName, readonly Quirk[]> = {
  // https://console.groq.com/docs/openai: logprobs, logit_bias and top_logprobs are not supported (400).
  groq: [dropParams(['logprobs', 'top_logprobs', 'logit_bias'])],
  // https://docs.mistral.ai/api/: `random_seed`, `max_tokens`; unknown fields are refused (422), and the
  // last stream chunk carries usage without `stream_options`.
  mistral: [
    mistralToolCallIds,
    renameParams({ seed: 'random_seed', max_completion_tokens: 'max_tokens' }),
    dropParams([
      'stream_options',
      'logprobs',
      'top_logprobs',
      'logit_bias',
      'user',
      'store',
      'metadata',
      'service_tier',
    ]),
  ],
  // https://api-docs.deepseek.com/guides/reasoning_model: logprobs and top_logprobs are errors on the reasoner.
  deepseek: [
    deepseekReasoningContent,
    dropParams(['logprobs', 'top_logprobs'], (model) => model.includes('reasoner')),
  ],
  openrouter: [],
  together: [],
  fireworks: [],
  // https://docs.x.ai/docs/guides/reasoning: presence/frequency penalties and stop are errors on reasoning models.
  xai: [
    dropParams(['presence_penalty', 'frequency_penalty', 'stop'], (model) => /^grok-(3-mini|4)/.test(model)),
  ],
  ollama: [],
  vllm: [],
  lmstudio: [],
};

/**
 * Presets whose servers also answer legacy `POST /completions` (fill-in-the-middle autocomplete), per their
 * docs: vLLM, Ollama and LM Studio's OpenAI-compatible servers, Together and Fireworks. The others refuse it.
 */
const SERVES_COMPLETIONS: ReadonlySet<PresetName> = new Set([
  'vllm',
  'ollama',
  'lmstudio',
  'together',
  'fireworks',
]);

export const presetInfo = (name: string): PresetInfo | undefined => PRESET_LIST.find((p) => p.name === name);

export interface PresetProviderOptions {
  /** The provider's name: the preset's own, or the routing file's. */
  name: string;
  preset: PresetName;
  apiKey?: string | undefined;
  baseUrl?: string | undefined;
  headers?: Record<string, string> | undefined;
  logger?: Logger | undefined;
  /** The routing file's `pass_through`: what this server serves itself, instead of the preset's default. */
  passThrough?: readonly OpenAiNativeProtocol[] | undefined;
}

export function createPresetProvider(options: PresetProviderOptions): OpenAiProvider {
  const info = presetInfo(options.preset)!;
  return new OpenAiProvider({
    name: options.name,
    baseUrl: options.baseUrl ?? info.baseUrl,
    apiKey: options.apiKey,
    ...(options.headers ? { headers: options.headers } : {}),
    quirks: QUIRKS[options.preset],
    logger: options.logger,
    nativeProtocols: options.passThrough ?? (SERVES_COMPLETIONS.has(options.preset) ? ['completions'] : []),
  });
}
