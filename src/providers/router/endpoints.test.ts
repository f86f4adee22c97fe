import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LlmProvider } from '../types.js';
import { endpointsOf } from './endpoints.js';

const withEmbed = { embed: async () => ({}) } as unknown as LlmProvider;
const chatOnly = {} as LlmProvider;

describe('the endpoints that serve a model (GET /v1/models)', () => {
  it('legacy completions: only where every deployment serves them itself', () => {
    const openai = { nativeProtocols: ['responses', 'completions'] } as unknown as LlmProvider;
    assert.deepEqual(endpointsOf([{ provider: openai, model: 'gpt-3.5-turbo-instruct' }]), [
      'chat.completions',
      'messages',
      'responses',
      'completions',
    ]);
    assert.ok(
      !endpointsOf([
        { provider: openai, model: 'gpt-4o-mini' },
        { provider: chatOnly, model: 'claude-sonnet-4-5' },
      ]).includes('completions'),
    );
  });

  it('a chat model: chat completions and Messages, whatever its provider', () => {
    assert.deepEqual(endpointsOf([{ provider: withEmbed, model: 'gpt-4o-mini' }]), [
      'chat.completions',
      'messages',
      'responses',
    ]);
    assert.deepEqual(endpointsOf([{ provider: chatOnly, model: 'claude-sonnet-4-5' }]), [
      'chat.completions',
      'messages',
      'responses',
    ]);
  });

  it('an embedding model: embeddings only, and only on a provider with an embeddings API', () => {
    for (const model of ['text-embedding-3-small', 'BAAI/bge-small-en', 'mistral-embed', 'intfloat/e5-large'])
      assert.deepEqual(endpointsOf([{ provider: withEmbed, model }]), ['embeddings'], model);
    assert.deepEqual(endpointsOf([{ provider: chatOnly, model: 'text-embedding-3-small' }]), []);
  });

  it('a name that routes nowhere serves nothing', () => {
    assert.deepEqual(endpointsOf([]), []);
  });
});
