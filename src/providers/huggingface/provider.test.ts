import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { startFakeHuggingFace } from '../../../test/fake-upstream/clouds/huggingface.js';
import type { FakeServer } from '../../../test/fake-upstream/clouds/wire.js';
import { loadConfig } from '../../config/load-config.js';
import { CallController } from '../../core/call-signal.js';
import { createLogger } from '../../core/logger.js';
import { createGateway } from '../registry.js';
import type { CallOptions } from '../types.js';
import { HuggingFaceProvider } from './provider.js';

const KEY = 'hf_fakeToken0123456789';
const options = (): CallOptions => ({
  signal: new CallController().signal,
  requestId: 'req_hf',
  timeouts: { connectMs: 2_000, firstTokenMs: 5_000, idleMs: 5_000, totalMs: 30_000 },
});

describe('Hugging Face', () => {
  let fake: FakeServer;
  afterEach(() => fake?.close());

  it('huggingface/org/model:provider reaches the router with the model id whole (slash and colon kept)', async () => {
    fake = await startFakeHuggingFace(KEY);
    const config = loadConfig(
      { HUGGINGFACE_API_KEY: KEY, HUGGINGFACE_BASE_URL: `${fake.url}/v1`, DEMO_WORD_DELAY_MS: '0' },
      { dotenvDir: null },
    );
    const gateway = createGateway(config.providers, createLogger({ level: 'silent', format: 'json' }));
    const model = 'huggingface/meta-llama/Llama-3.1-8B-Instruct:cerebras';
    assert.ok(gateway.hasModel(model));
    const result = await gateway.complete({
      body: { model, messages: [{ role: 'user', content: 'hi' }] },
      requestId: 'req_hf_route',
    });
    assert.equal(result.route.provider, 'huggingface');
    assert.equal(result.route.upstreamModel, 'meta-llama/Llama-3.1-8B-Instruct:cerebras');
    assert.equal(fake.requests.at(-1)!.path, '/v1/chat/completions');
    assert.equal(fake.requests.at(-1)!.body.model, 'meta-llama/Llama-3.1-8B-Instruct:cerebras');
    assert.equal(
      result.completion.choices[0]?.message.content,
      'Served meta-llama/Llama-3.1-8B-Instruct:cerebras.',
    );
    const streamed = await gateway.stream({
      body: { model, messages: [{ role: 'user', content: 'hi' }], stream: true },
      requestId: 'req_hf_stream',
    });
    let text = '';
    for await (const { chunk } of streamed.events) text += chunk.choices[0]?.delta.content ?? '';
    assert.equal(text, 'Served meta-llama/Llama-3.1-8B-Instruct:cerebras.');
  });

  it('embeddings from Text Embeddings Inference: /embed on a TEI server, base64 encoded here, usage from TEI', async () => {
    fake = await startFakeHuggingFace(KEY);
    const hf = new HuggingFaceProvider({ apiKey: KEY, embeddingsUrl: fake.url });
    const floats = await hf.embed({ model: 'BAAI/bge-small-en-v1.5', input: ['a', 'b'] }, options());
    const sent = fake.requests.at(-1)!;
    assert.equal(sent.path, '/embed');
    assert.deepEqual(sent.body, { inputs: ['a', 'b'], normalize: true });
    assert.deepEqual(
      floats.data.map((d) => d.embedding),
      [
        [0.5, 0, -0.25],
        [0.5, 1, -0.25],
      ],
    );
    assert.deepEqual(floats.usage, { prompt_tokens: 6, total_tokens: 6 });
    const b64 = await hf.embed(
      { model: 'BAAI/bge-small-en-v1.5', input: 'a', encoding_format: 'base64' },
      options(),
    );
    const bytes = Buffer.from(b64.data[0]!.embedding as string, 'base64');
    assert.deepEqual([...new Float32Array(bytes.buffer, bytes.byteOffset, 3)], [0.5, 0, -0.25]);
  });

  it("the router's hosted TEI: the model's path segments encoded, its slash kept", async () => {
    fake = await startFakeHuggingFace(KEY);
    const hf = new HuggingFaceProvider({
      apiKey: KEY,
      embeddingsUrl: `${fake.url}/hf-inference/models/{model}/pipeline/feature-extraction`,
    });
    const result = await hf.embed({ model: 'BAAI/bge-small-en-v1.5', input: 'a' }, options());
    assert.equal(
      fake.requests.at(-1)!.path,
      '/hf-inference/models/BAAI/bge-small-en-v1.5/pipeline/feature-extraction',
    );
    assert.equal(result.data.length, 1);
  });
});
