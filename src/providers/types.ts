import type { LentDeadline } from './call-deadline.js';
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

/**
 * An Anthropic thinking block as carried in the OpenAI format (LiteLLM's convention): the signature (or the
 * redacted data) must go back to Anthropic unchanged on the next turn for the conversation to continue.
 */
export type ThinkingBlock =
  | { type: 'thinking'; thinking: string; signature?: string }
  | { type: 'redacted_thinking'; data: string };

export interface ChatMessage {
  role: Role;
  content: string | ContentPart[] | null;
  name?: string;
  tool_calls?: ToolCall[];
  tool_call_id?: string;
  /** Assistant turns: the model's reasoning as text (all thinking blocks joined). */
  reasoning_content?: string;
  /** Assistant turns: the thinking blocks themselves, signatures included. */
  thinking_blocks?: ThinkingBlock[];
  [key: string]: unknown;
}

/**
 * The client's own request, kept beside the internal one for an upstream that speaks the client's
 * protocol (issue 20's pass-through): a Messages request routed to an Anthropic deployment is forwarded as
 * the client sent it, only `model` replaced, so fields Colloquy does not model survive. A symbol key: never
 * serialized, so no other upstream ever sees it; object spreads (the router's `{...body, model}`) keep it.
 */
export const NATIVE_REQUEST: unique symbol = Symbol('colloquy.nativeRequest');
/** The upstream's own answer, set by a provider that served a NATIVE_REQUEST (non-streaming). */
export const NATIVE_RESPONSE: unique symbol = Symbol('colloquy.nativeResponse');

/** A client protocol some upstreams speak themselves (see NativeRequest). */
export type NativeProtocol = 'messages' | 'responses' | 'completions';

export interface NativeRequest {
  /**
   * The client's protocol: `messages` goes through to Anthropic deployments; `responses` and `completions`
   * (legacy text completions) to OpenAI-format ones (see src/providers/openai/native.ts).
   */
  protocol: NativeProtocol;
  body: Record<string, unknown>;
  /** Client headers allowed through to a same-protocol upstream (anthropic-version, anthropic-beta). */
  headers: Record<string, string>;
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
  [NATIVE_REQUEST]?: NativeRequest;
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
    message: {
      role: 'assistant';
      content: string | null;
      tool_calls?: ToolCall[];
      refusal?: string | null;
      reasoning_content?: string;
      thinking_blocks?: ThinkingBlock[];
    };
    finish_reason: FinishReason;
    logprobs?: unknown;
  }[];
  usage?: Usage;
  system_fingerprint?: string | null;
  [NATIVE_RESPONSE]?: unknown;
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
  /** Reasoning text, streamed (LiteLLM's convention). */
  reasoning_content?: string;
  /** A thinking block's signature, or a redacted block, once known. */
  thinking_blocks?: ThinkingBlock[];
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
  /** The upstream's own event, when it speaks the client's protocol (pass-through of a NATIVE_REQUEST). */
  native?: { event: string; data: string };
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
   * The attempt's deadline, lent by the gateway: how a provider enforces its own deadline (the response
   * headers) on the call's one signal and one timer instead of deriving another of each per call. Without
   * it, the provider derives them.
   */
  deadline?: LentDeadline;
  timeouts: Timeouts;
  /** The upstream model name (the route's deployment model), already set in `body.model`. */
  requestId: string;
}

/**
 * An embeddings request in OpenAI's format (https://platform.openai.com/docs/api-reference/embeddings/create):
 * text, texts, token ids or lists of token ids.
 */
export interface EmbeddingRequest {
  model: string;
  input: string | string[] | number[] | number[][];
  encoding_format?: 'float' | 'base64';
  dimensions?: number;
  user?: string;
  [key: string]: unknown;
}

export interface Embedding {
  object: 'embedding';
  index: number;
  /** Floats, or (encoding_format base64) the little-endian float32 bytes in base64. */
  embedding: number[] | string;
}

export interface EmbeddingResponse {
  object: 'list';
  data: Embedding[];
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

/** What a provider speaks upstream; OpenAI-compatible presets are `openai`. */
export type ProviderKind =
  | 'openai'
  | 'anthropic'
  | 'demo'
  | 'azure'
  | 'huggingface'
  | 'gemini'
  | 'vertex'
  | 'cohere'
  | 'bedrock';

export interface LlmProvider {
  /** The configured name: `openai`, `anthropic`, `demo`, `azure`, a preset, or a name from the config file. */
  readonly name: string;
  readonly kind: ProviderKind;
  /** Client protocols this upstream speaks itself: a request of one is passed through, not translated. */
  readonly nativeProtocols?: readonly NativeProtocol[];
  complete(body: ChatCompletionRequest, options: CallOptions): Promise<ChatCompletion>;
  /**
   * Starts a stream. Resolves once the upstream accepted the request (status 2xx); failures before that
   * reject with a ProviderError. Errors while iterating are ProviderErrors too.
   */
  stream(body: ChatCompletionRequest, options: CallOptions): Promise<AsyncIterable<StreamEvent>>;
  /** Model ids the upstream reports, for /v1/models. */
  listModels?(options: { signal: AbortSignal }): Promise<string[]>;
  /** Embeddings, for providers that offer them (`body.model` is the upstream model or deployment). */
  embed?(body: EmbeddingRequest, options: CallOptions): Promise<EmbeddingResponse>;
  /**
   * The upstream's own input-token count of a request that came by a protocol it speaks natively (the body
   * carries NATIVE_REQUEST): Anthropic's count_tokens.
   */
  countTokens?(body: ChatCompletionRequest, options: CallOptions): Promise<number>;
  /** Proves the upstream is reachable and accepts Colloquy's credentials (`colloquy doctor`); throws a ProviderError. */
  checkAccess?(signal: AbortSignal): Promise<void>;
}
