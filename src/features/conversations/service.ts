import { setTimeout as sleep } from 'node:timers/promises';
import { AppError, notFound } from '../../core/errors.js';
import { newId, nowIso } from '../../core/ids.js';
import { isWriteRace } from '../../db/database.js';
import type { ChatGateway } from '../../providers/router/types.js';
import type { ChatCompletionRequest, ChatMessage } from '../../providers/types.js';
import { assertUsable } from '../assistants/access.js';
import { assertModelExists } from '../assistants/routes.js';
import { type AssistantRow, type AssistantStore, parseParams } from '../assistants/store.js';
import type { Attachments } from '../files/attachments.js';
import type { FileRow } from '../files/store.js';
import { contextWindowFor, fitToContext, replyReserve } from './context.js';
import { type GenerationSpec, generationCaller, type LiveGeneration } from './events.js';
import type { GenerationManager } from './generation-manager.js';
import { type GenerationRef, type IdempotencyClaim, IdempotencyStore } from './idempotency.js';
import type { ReplyOptions } from './schemas.js';
import type { ConversationRow, ConversationStore, Executor, MessageRow } from './store.js';
import type { GenerationKind } from './tables.js';

export interface Caller {
  userId: string;
  apiKeyId: string | null;
  /** The caller's role: guardrails attached to it apply to its generations (absent: `user`). */
  role?: 'admin' | 'user' | undefined;
  /** The key's allowed models (absent: every model): checked with the limits, before anything is stored. */
  allowedModels?: string[] | null | undefined;
}

export interface StartedGeneration {
  ref: GenerationRef;
  /** True when an Idempotency-Key matched an earlier request: nothing new was created. */
  replayed: boolean;
  live: LiveGeneration | undefined;
}

export interface ConversationServiceDeps {
  store: ConversationStore;
  assistants: AssistantStore;
  idempotency: IdempotencyStore;
  manager: GenerationManager;
  gateway: ChatGateway;
  /** The model used when neither the request, the conversation nor its assistant names one. */
  defaultModel?: string | undefined;
  /** Context windows known from configuration (routing-file aliases); the built-in table otherwise. */
  contextWindow?: ((model: string) => number | undefined) | undefined;
  /** With Redis: finishes a generation whose replica died (its lease expired); true when it did. */
  finishAbandoned?: ((generationId: string) => Promise<boolean>) | undefined;
  /** Files attached to user messages (issue 24); without it `attachments` are refused. */
  attachments?: Attachments | undefined;
}

/** A turn of the prompt with the files its message carried, expanded into content parts by #body. */
const FILES: unique symbol = Symbol('colloquy.files');
type Turn = ChatMessage & { [FILES]?: FileRow[] };

/** What a generation writes before the provider is called; `write` runs inside the committing transaction. */
interface Plan {
  kind: GenerationKind;
  body: ChatCompletionRequest;
  /** The assistant opted its replies into the response cache. */
  cacheOptIn?: boolean;
  prefix: string;
  priorCompletionTokens: number;
  titleSource: string | null;
  write(
    trx: Executor,
    generationId: string,
  ): Promise<{ userMessage: MessageRow | null; message: MessageRow }>;
}

/**
 * Starting generations: every request that leads to a model call commits its rows first (the user's
 * message, the assistant message as 'streaming', the generation, the idempotency key) in one transaction,
 * then hands the generation to the manager, which runs it independently of the HTTP request.
 */
export class ConversationService {
  constructor(private readonly deps: ConversationServiceDeps) {}

  async conversation(userId: string, id: string): Promise<ConversationRow> {
    const row = await this.deps.store.findOwned(userId, id);
    if (!row) throw notFound('conversation');
    return row;
  }

  async message(conversationId: string, id: string, db?: Executor): Promise<MessageRow> {
    const row = await this.deps.store.findMessage(conversationId, id, db);
    if (!row) throw notFound('message');
    return row;
  }

  /**
   * A reply still 'streaming' whose replica died is finished now (saved partial from its event log) rather
   * than refusing the conversation's next message until the orphan sweep; the row as it is afterwards.
   */
  async #settled(row: MessageRow): Promise<MessageRow> {
    const finish = this.deps.finishAbandoned;
    if (row.status !== 'streaming' || !finish) return row;
    const running = await this.deps.store.db
      .selectFrom('generations')
      .select('id')
      .where('message_id', '=', row.id)
      .where('status', '=', 'running')
      .execute();
    let finished = false;
    for (const { id } of running) if (await finish(id)) finished = true;
    return finished ? await this.message(row.conversation_id, row.id) : row;
  }

  /** An assistant the user may attach: shared or their own; anything else is "not found". */
  async usableAssistant(userId: string, id: string): Promise<AssistantRow> {
    return assertUsable(userId, await this.deps.assistants.findById(id));
  }

  assertModel(model: string) {
    assertModelExists(this.deps.gateway, model);
  }

  async resolveModel(
    requested: string | null | undefined,
    conversation: ConversationRow,
    assistant?: AssistantRow,
  ) {
    const model =
      requested ??
      conversation.model ??
      assistant?.model ??
      this.deps.defaultModel ??
      (await this.deps.gateway.listModels().catch(() => []))[0]?.id;
    if (!model) {
      throw new AppError(
        'invalid_request',
        'no model: pass `model`, or set one on the conversation or its assistant',
        {
          param: 'model',
        },
      );
    }
    assertModelExists(this.deps.gateway, model);
    return model;
  }

  /** A new user message (under `parentId`, the active leaf when undefined, a new root when null) and its reply. */
  async send(
    caller: Caller,
    conversationId: string,
    input: {
      content: string;
      parentId?: string | null | undefined;
      model?: string | undefined;
      attachments?: string[] | undefined;
      options?: ReplyOptions | undefined;
    },
    idempotencyKey?: string,
  ): Promise<StartedGeneration> {
    const conversation = await this.conversation(caller.userId, conversationId);
    const claim = this.#claim(idempotencyKey, `send:${conversationId}`, {
      content: input.content,
      parent_id: input.parentId,
      model: input.model ?? null,
      ...(input.attachments?.length ? { attachments: input.attachments } : {}),
      ...withOptions(input.options),
    });
    return this.#start(caller, conversation, claim, () =>
      this.#planReply(
        conversation,
        input.content,
        input.parentId === undefined ? conversation.active_leaf_id : input.parentId,
        input.model,
        input.attachments,
        input.options,
      ),
    );
  }

  /** Editing a user message forks a branch: a new sibling message under the same parent, and its reply. */
  async edit(
    caller: Caller,
    conversationId: string,
    messageId: string,
    input: {
      content: string;
      model?: string | undefined;
      attachments?: string[] | undefined;
      options?: ReplyOptions | undefined;
    },
    idempotencyKey?: string,
  ): Promise<StartedGeneration> {
    const conversation = await this.conversation(caller.userId, conversationId);
    const claim = this.#claim(idempotencyKey, `edit:${conversationId}:${messageId}`, {
      content: input.content,
      model: input.model ?? null,
      ...(input.attachments?.length ? { attachments: input.attachments } : {}),
      ...withOptions(input.options),
    });
    return this.#start(caller, conversation, claim, async () => {
      const edited = await this.message(conversation.id, messageId);
      if (edited.role !== 'user') {
        throw new AppError('invalid_request', 'only user messages can be edited; regenerate a reply instead');
      }
      return this.#planReply(
        conversation,
        input.content,
        edited.parent_id,
        input.model,
        input.attachments,
        input.options,
      );
    });
  }

  /** Another reply to the same user message: a sibling of the given reply (or a child of the given user message). */
  async regenerate(
    caller: Caller,
    conversationId: string,
    messageId: string,
    input: { model?: string | undefined; options?: ReplyOptions | undefined },
    idempotencyKey?: string,
  ): Promise<StartedGeneration> {
    const conversation = await this.conversation(caller.userId, conversationId);
    const claim = this.#claim(idempotencyKey, `regenerate:${conversationId}:${messageId}`, {
      model: input.model ?? null,
      ...withOptions(input.options),
    });
    return this.#start(caller, conversation, claim, async () => {
      const target = await this.message(conversation.id, messageId);
      const userMessage =
        target.role === 'user'
          ? target
          : target.role === 'assistant' && target.parent_id
            ? await this.message(conversation.id, target.parent_id)
            : undefined;
      if (userMessage?.role !== 'user') {
        throw new AppError('invalid_request', 'only a reply to a user message can be regenerated');
      }
      const assistant = await this.#assistantOf(conversation);
      const model = await this.resolveModel(input.model, conversation, assistant);
      const history = await this.deps.store.branch(conversation.id, userMessage.id);
      return {
        kind: 'regenerate',
        body: await this.#body(model, assistant, await this.#chat(history), input.options),
        prefix: '',
        priorCompletionTokens: 0,
        titleSource: conversation.title === null ? firstUserText(history) : null,
        write: async (trx, generationId) => {
          const message = await this.#insertReply(trx, conversation, userMessage.id, model, generationId, {
            kind: 'regenerate',
            userMessageId: userMessage.id,
          });
          return { userMessage: null, message };
        },
      };
    });
  }

  /** Resumes a partial (or failed) reply from its text so far, with the same or another model. */
  async continue(
    caller: Caller,
    conversationId: string,
    messageId: string,
    input: { model?: string | undefined; options?: ReplyOptions | undefined },
    idempotencyKey?: string,
  ): Promise<StartedGeneration> {
    const conversation = await this.conversation(caller.userId, conversationId);
    const claim = this.#claim(idempotencyKey, `continue:${conversationId}:${messageId}`, {
      model: input.model ?? null,
      ...withOptions(input.options),
    });
    return this.#start(caller, conversation, claim, async () => {
      const target = await this.#settled(await this.message(conversation.id, messageId));
      if (target.role !== 'assistant')
        throw new AppError('invalid_request', 'only assistant replies can be continued');
      assertResumable(target);
      const assistant = await this.#assistantOf(conversation);
      const model = await this.resolveModel(input.model ?? target.model, conversation, assistant);
      const history = target.parent_id ? await this.deps.store.branch(conversation.id, target.parent_id) : [];
      const soFar: ChatMessage[] = target.content ? [{ role: 'assistant', content: target.content }] : [];
      return {
        kind: 'continue',
        body: await this.#body(model, assistant, [...(await this.#chat(history)), ...soFar], input.options),
        prefix: target.content,
        priorCompletionTokens: target.completion_tokens ?? 0,
        titleSource: conversation.title === null ? firstUserText(history) : null,
        write: async (trx, generationId) => {
          const now = nowIso();
          const updated = await trx
            .updateTable('messages')
            .set({ status: 'streaming', error: null, model, updated_at: now })
            .where('id', '=', target.id)
            .where('status', 'in', ['partial', 'error'])
            .executeTakeFirst();
          // Someone else resumed it between the check and now.
          if (Number(updated.numUpdatedRows) !== 1)
            assertResumable(await this.message(conversation.id, target.id, trx));
          await this.#insertGeneration(trx, conversation, target.id, model, generationId, {
            kind: 'continue',
            userMessageId: target.parent_id,
          });
          await this.deps.store.update(conversation.id, { active_leaf_id: target.id }, trx);
          return {
            userMessage: null,
            message: { ...target, status: 'streaming', error: null, model, updated_at: now },
          };
        },
      };
    });
  }

  #claim(key: string | undefined, scope: string, request: unknown): IdempotencyClaim | undefined {
    return key ? IdempotencyStore.claim(key, scope, request) : undefined;
  }

  async #start(
    caller: Caller,
    conversation: ConversationRow,
    claim: IdempotencyClaim | undefined,
    prepare: () => Promise<Plan>,
  ): Promise<StartedGeneration> {
    const { idempotency, store, manager } = this.deps;
    const replay = async (): Promise<StartedGeneration | undefined> => {
      if (!claim) return undefined;
      const ref = await idempotency.find(caller.userId, claim);
      return ref ? { ref, replayed: true, live: manager.get(ref.generation_id) } : undefined;
    };
    const earlier = await replay();
    if (earlier) return earlier;
    if (!manager.accepting) {
      throw new AppError('service_unavailable', 'the server is shutting down; retry on another instance', {
        headers: { 'retry-after': '5' },
      });
    }

    const plan = await prepare();
    const generationId = newId('gen');
    // Rate limits and budgets refuse (429 with Retry-After, as on /v1) before anything is stored: a refused
    // message leaves no user message and no empty reply behind.
    const admission = await this.deps.gateway.admitStream?.({
      body: plan.body,
      requestId: generationId,
      caller: generationCaller(caller),
    });
    let written: { userMessage: MessageRow | null; message: MessageRow };
    try {
      written = await store.db.transaction().execute(async (trx) => {
        const rows = await plan.write(trx, generationId);
        if (claim) {
          await idempotency.insert(trx, caller.userId, claim, {
            conversation_id: conversation.id,
            generation_id: generationId,
            user_message_id: rows.userMessage?.id ?? null,
            message_id: rows.message.id,
          });
        }
        return rows;
      });
    } catch (err) {
      void admission?.release().catch(() => {});
      // The same key raced in concurrently and won: answer with its result.
      if (claim && isWriteRace(err)) {
        // On MySQL the loser of the race is a deadlock victim, rolled back while the winner may not have
        // committed yet: its result is looked for again, briefly, before giving up.
        for (let attempt = 0; attempt < 40; attempt++) {
          const winner = await replay();
          if (winner) return winner;
          await sleep(25 * Math.min(attempt + 1, 4));
        }
      }
      manager.abandon(generationId);
      throw err;
    }

    const spec: GenerationSpec = {
      id: generationId,
      kind: plan.kind,
      userId: caller.userId,
      apiKeyId: caller.apiKeyId,
      role: caller.role,
      conversationId: conversation.id,
      assistantId: conversation.assistant_id,
      userMessage: written.userMessage,
      message: written.message,
      prefix: plan.prefix,
      priorCompletionTokens: plan.priorCompletionTokens,
      body: plan.body,
      titleSource: plan.titleSource,
      cacheOptIn: plan.cacheOptIn ?? false,
      admission,
    };
    const live = manager.start(spec);
    return {
      ref: {
        conversation_id: conversation.id,
        generation_id: generationId,
        user_message_id: written.userMessage?.id ?? null,
        message_id: written.message.id,
      },
      replayed: false,
      live,
    };
  }

  async #planReply(
    conversation: ConversationRow,
    content: string,
    parentId: string | null,
    requestedModel: string | undefined,
    attachmentIds?: string[] | undefined,
    options?: ReplyOptions | undefined,
  ): Promise<Plan> {
    const { store } = this.deps;
    const files = attachmentIds?.length ? await this.#ownedFiles(conversation.user_id, attachmentIds) : [];
    let history = await store.branch(conversation.id, parentId);
    if (parentId) {
      // The branch ends with the parent, so it is read once: a parent of another conversation has no branch.
      let parent = history.at(-1);
      if (!parent) throw notFound('message');
      if (parent.status === 'streaming') {
        parent = await this.#settled(parent);
        history = [...history.slice(0, -1), parent];
      }
      if (parent.status === 'streaming') {
        throw new AppError(
          'generation_in_progress',
          'that reply is still being generated; wait or cancel it',
          {
            param: 'parent_id',
          },
        );
      }
    }
    const assistant = await this.#assistantOf(conversation);
    const model = await this.resolveModel(requestedModel, conversation, assistant);
    return {
      kind: 'reply',
      body: await this.#body(
        model,
        assistant,
        [...(await this.#chat(history)), { role: 'user', content, [FILES]: files }],
        options,
      ),
      cacheOptIn: assistant ? parseParams(assistant).cache_responses === true : false,
      prefix: '',
      priorCompletionTokens: 0,
      titleSource: conversation.title === null ? (firstUserText(history) ?? content) : null,
      write: async (trx, generationId) => {
        const userMessage = await store.insertMessage(trx, {
          conversation_id: conversation.id,
          parent_id: parentId,
          role: 'user',
          content,
          status: 'complete',
          model: null,
          error: null,
          prompt_tokens: null,
          completion_tokens: null,
        });
        if (files.length)
          await this.deps.attachments!.link(
            trx,
            userMessage.id,
            conversation.id,
            files.map((f) => f.id),
          );
        const message = await this.#insertReply(trx, conversation, userMessage.id, model, generationId, {
          kind: 'reply',
          userMessageId: userMessage.id,
        });
        return { userMessage, message };
      },
    };
  }

  async #insertReply(
    trx: Executor,
    conversation: ConversationRow,
    parentId: string,
    model: string,
    generationId: string,
    generation: { kind: GenerationKind; userMessageId: string | null },
  ): Promise<MessageRow> {
    const message = await this.deps.store.insertMessage(trx, {
      conversation_id: conversation.id,
      parent_id: parentId,
      role: 'assistant',
      content: '',
      status: 'streaming',
      model,
      error: null,
      prompt_tokens: null,
      completion_tokens: null,
    });
    await this.#insertGeneration(trx, conversation, message.id, model, generationId, generation);
    await this.deps.store.update(conversation.id, { active_leaf_id: message.id }, trx);
    return message;
  }

  async #insertGeneration(
    trx: Executor,
    conversation: ConversationRow,
    messageId: string,
    model: string,
    generationId: string,
    generation: { kind: GenerationKind; userMessageId: string | null },
  ) {
    const now = nowIso();
    await trx
      .insertInto('generations')
      .values({
        id: generationId,
        user_id: conversation.user_id,
        conversation_id: conversation.id,
        message_id: messageId,
        user_message_id: generation.userMessageId,
        kind: generation.kind,
        model,
        status: 'running',
        error: null,
        last_event_id: null,
        created_at: now,
        updated_at: now,
        finished_at: null,
      })
      .execute();
  }

  async #assistantOf(conversation: ConversationRow): Promise<AssistantRow | undefined> {
    return conversation.assistant_id ? this.deps.assistants.findById(conversation.assistant_id) : undefined;
  }

  async #ownedFiles(userId: string, ids: string[]): Promise<FileRow[]> {
    if (!this.deps.attachments)
      throw new AppError('invalid_request', 'file attachments are not available on this server', {
        param: 'attachments',
      });
    return this.deps.attachments.owned(userId, ids);
  }

  /** Branch messages as the model sees them, each with the files it carried (those not deleted since). */
  async #chat(rows: MessageRow[]): Promise<Turn[]> {
    const kept = rows.filter((row) => row.content.length > 0 && row.status !== 'streaming');
    const attachments = this.deps.attachments;
    if (!attachments) return toChat(kept);
    const byMessage = await attachments.filesOfMessages(
      kept.filter((r) => r.role === 'user').map((r) => r.id),
    );
    const files = byMessage.size ? await attachments.existing([...byMessage.values()].flat()) : [];
    const byId = new Map(files.map((f) => [f.id, f]));
    return kept.map((row) => {
      const turn: Turn = { role: row.role, content: row.content };
      const ids = byMessage.get(row.id);
      if (ids) turn[FILES] = ids.flatMap((id) => (byId.has(id) ? [byId.get(id)!] : []));
      return turn;
    });
  }

  /** Turns with files get content parts: documents (cut to the window, with a note), images, then the text. */
  async #expand(model: string, history: Turn[], budget: number): Promise<ChatMessage[]> {
    const out: ChatMessage[] = [];
    for (const turn of history) {
      const files = turn[FILES];
      const { [FILES]: _files, ...message } = turn;
      if (!files?.length || !this.deps.attachments || typeof message.content !== 'string') {
        out.push(message);
        continue;
      }
      const own = Buffer.byteLength(message.content);
      const parts = await this.deps.attachments.parts(files, {
        model,
        documentBudgetTokens: Math.max(64, budget - own),
      });
      out.push({ ...message, content: [...parts, { type: 'text', text: message.content }] });
    }
    return out;
  }

  /** The model request: the assistant's system prompt and params, the history trimmed to the context window. */
  async #body(
    model: string,
    assistant: AssistantRow | undefined,
    turns: Turn[],
    options: ReplyOptions = {},
  ): Promise<ChatCompletionRequest> {
    const { cache_responses: _notForTheModel, ...saved } = assistant ? parseParams(assistant) : {};
    // The request's settings win over the assistant's, for this reply only.
    const { system_prompt: systemOverride, ...overrides } = options;
    const params = { ...saved, ...overrides };
    const window = contextWindowFor(model, this.deps.contextWindow);
    if (overrides.max_tokens !== undefined && overrides.max_tokens >= window)
      throw new AppError(
        'invalid_request',
        `max_tokens must be less than the context window of ${model} (${window} tokens)`,
        { param: 'max_tokens' },
      );
    const reserve = replyReserve(window, params.max_tokens);
    const system = (systemOverride ?? assistant?.system_prompt) || null;
    // Documents share what the window leaves after the reply, the system prompt and some room for the turn.
    const budget = window - reserve - Buffer.byteLength(system ?? '') - 64;
    const history = await this.#expand(model, turns, budget);
    const { messages } = await fitToContext({ system, history, window, reserve });
    return { ...params, model, messages, stream: true, stream_options: { include_usage: true } };
  }
}

function assertResumable(message: MessageRow) {
  if (message.status === 'streaming') {
    throw new AppError('generation_in_progress', 'that reply is still being generated; wait or cancel it');
  }
  if (message.status !== 'partial' && message.status !== 'error') {
    throw new AppError('message_not_resumable', 'only a partial or failed reply can be continued');
  }
}

/** Branch messages as the model sees them: failed replies (no text) and unfinished ones are left out. */
function toChat(rows: MessageRow[]): ChatMessage[] {
  return rows
    .filter((row) => row.content.length > 0 && row.status !== 'streaming')
    .map((row) => ({ role: row.role, content: row.content }));
}

function firstUserText(rows: MessageRow[]): string | null {
  return rows.find((row) => row.role === 'user')?.content ?? null;
}

/** Reply settings in an idempotency fingerprint: none adds nothing (keys stored before them still match). */
function withOptions(options: ReplyOptions | undefined): { options?: ReplyOptions } {
  return options && Object.keys(options).length ? { options } : {};
}
