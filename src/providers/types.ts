/**
 * Colloquy speaks OpenAI's chat-completions format internally: requests, completions and stream chunks.
 * A provider maps that format to its upstream and back; `openai` (and every OpenAI-compatible server)
 * forwards it nearly untouched, `anthropic` translates, `demo` generates.
 */

export type Role = 'system' | 'developer' | 'user' | 'assistant' | 'tool';

export interface ContentPart {
  type: string; // 'text' | 'image_url' | 'input_audio' | 'file' | …
  text?: string;
  image_url?: { url: string; detail?: string };
  [key: string]: unknown;
}

export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export interface ChatMessage {
  role: Role;
  content: string | ContentPart[] | null;
  name?: string;
  tool_calls?: ToolCall[];
  tool_call_id?: string;
  [key: string]: unknown;
}

export interface ChatCompletionRequest {
  model: string;
  messages: ChatMessage[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean } | null;
  temperature?: number | null;
  top_p?: number | null;
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  stop?: string | string[] | null;
  seed?: number | null;
  n?: number | null;
  tools?: { type: 'function'; function: { name: string; description?: string; parameters?: unknown } }[];
  tool_choice?: unknown;
  response_format?: unknown;
  user?: string;
  /** Fields Colloquy does not know are forwarded untouched to OpenAI-compatible upstreams. */
  [key: string]: unknown;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export type FinishReason =
  | 'stop'
  | 'length'
  | 'tool_calls'
  | 'content_filter'
  | 'function_call'
  | 'error'
  | null;

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: {
    index: number;
    message: { role: 'assistant'; content: string | null; tool_calls?: ToolCall[]; refusal?: string | null };
    finish_reason: FinishReason;
    logprobs?: unknown;
  }[];
  usage?: Usage;
  system_fingerprint?: string | null;
  [key: string]: unknown;
}

export interface ChunkDelta {
  role?: 'assistant';
  content?: string | null;
  tool_calls?: {
    index: number;
    id?: string;
    type?: 'function';
    function?: { name?: string; arguments?: string };
  }[];
  refusal?: string | null;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: { index: number; delta: ChunkDelta; finish_reason: FinishReason; logprobs?: unknown }[];
  usage?: Usage | null;
  [key: string]: unknown;
}

/** One streamed chunk; `raw` is its JSON text when the upstream sent it as is, so it can be relayed unparsed. */
export interface StreamEvent {
  chunk: ChatCompletionChunk;
  raw?: string;
}

export interface Timeouts {
  /** Establishing the connection and receiving response headers. */
  connectMs: number;
  /** From sending the request to the first chunk (streams) or the whole answer (non-streaming). */
  firstTokenMs: number;
  /** The longest gap allowed between two chunks of a stream. */
  idleMs: number;
  /** The whole call, first byte to last. */
  totalMs: number;
}

export interface CallOptions {
  signal: AbortSignal;
  /**
   * Aborts `signal` with a reason: how a provider enforces its own deadlines (the response headers) on the
   * call's one signal instead of deriving another per call. Without it, the provider derives one.
   */
  abort?: (reason: unknown) => void;
  timeouts: Timeouts;
  /** The upstream model name (the route's deployment model), already set in `body.model`. */
  requestId: string;
}

export interface LlmProvider {
  /** The configured name: `openai`, `anthropic`, `demo`, or a name from the config file. */
  readonly name: string;
  readonly kind: 'openai' | 'anthropic' | 'demo';
  complete(body: ChatCompletionRequest, options: CallOptions): Promise<ChatCompletion>;
  /**
   * Starts a stream. Resolves once the upstream accepted the request (status 2xx); failures before that
   * reject with a ProviderError. Errors while iterating are ProviderErrors too.
   */
  stream(body: ChatCompletionRequest, options: CallOptions): Promise<AsyncIterable<StreamEvent>>;
  /** Model ids the upstream reports, for /v1/models. */
  listModels?(options: { signal: AbortSignal }): Promise<string[]>;
}
