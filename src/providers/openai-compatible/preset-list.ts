/**
 * The OpenAI-compatible services Colloquy knows by name: `type: mistral` (or MISTRAL_API_KEY alone) is all an
 * operator writes. Pure data, read by the environment schema too: each preset's key variable is the name its
 * vendor's own docs use, and `<PRESET>_BASE_URL` overrides the base URL (a proxy, a private endpoint, a test).
 * What each preset changes in a request is in presets.ts.
 */
export interface PresetInfo {
  /** The provider name and the routing file's `type`. */
  name: PresetName;
  label: string;
  baseUrl: string;
  /** The API key's variable; absent for local servers that take no key. */
  keyEnv?: string;
  baseUrlEnv: string;
  /** A local server: created from its base-URL variable alone, and a key is optional. */
  local?: boolean;
}

export const PRESET_NAMES = [
  'groq',
  'mistral',
  'deepseek',
  'openrouter',
  'together',
  'fireworks',
  'xai',
  'ollama',
  'vllm',
  'lmstudio',
] as const;
export type PresetName = (typeof PRESET_NAMES)[number];

export const PRESET_LIST: readonly PresetInfo[] = [
  {
    name: 'groq',
    label: 'Groq',
    baseUrl: 'https://api.groq.com/openai/v1',
    keyEnv: 'GROQ_API_KEY',
    baseUrlEnv: 'GROQ_BASE_URL',
  },
  {
    name: 'mistral',
    label: 'Mistral',
    baseUrl: 'https://api.mistral.ai/v1',
    keyEnv: 'MISTRAL_API_KEY',
    baseUrlEnv: 'MISTRAL_BASE_URL',
  },
  {
    name: 'deepseek',
    label: 'DeepSeek',
    baseUrl: 'https://api.deepseek.com',
    keyEnv: 'DEEPSEEK_API_KEY',
    baseUrlEnv: 'DEEPSEEK_BASE_URL',
  },
  {
    name: 'openrouter',
    label: 'OpenRouter',
    baseUrl: 'https://openrouter.ai/api/v1',
    keyEnv: 'OPENROUTER_API_KEY',
    baseUrlEnv: 'OPENROUTER_BASE_URL',
  },
  {
    name: 'together',
    label: 'Together AI',
    baseUrl: 'https://api.together.xyz/v1',
    keyEnv: 'TOGETHER_API_KEY',
    baseUrlEnv: 'TOGETHER_BASE_URL',
  },
  {
    name: 'fireworks',
    label: 'Fireworks AI',
    baseUrl: 'https://api.fireworks.ai/inference/v1',
    keyEnv: 'FIREWORKS_API_KEY',
    baseUrlEnv: 'FIREWORKS_BASE_URL',
  },
  {
    name: 'xai',
    label: 'xAI',
    baseUrl: 'https://api.x.ai/v1',
    keyEnv: 'XAI_API_KEY',
    baseUrlEnv: 'XAI_BASE_URL',
  },
  {
    name: 'ollama',
    label: 'Ollama',
    baseUrl: 'http://127.0.0.1:11434/v1',
    baseUrlEnv: 'OLLAMA_BASE_URL',
    local: true,
  },
  {
    name: 'vllm',
    label: 'vLLM',
    baseUrl: 'http://127.0.0.1:8000/v1',
    keyEnv: 'VLLM_API_KEY',
    baseUrlEnv: 'VLLM_BASE_URL',
    local: true,
  },
  {
    name: 'lmstudio',
    label: 'LM Studio',
    baseUrl: 'http://127.0.0.1:1234/v1',
    baseUrlEnv: 'LMSTUDIO_BASE_URL',
    local: true,
  },
];
