import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { type FakeServer, sendJson, startServer } from '../../../test/fake-upstream/clouds/wire.js';
import { CallController } from '../../core/call-signal.js';
import { ProviderError } from '../errors.js';
import type { CallOptions } from '../types.js';
import { OpenAiProvider } from './provider.js';

/**
 * embed() against a fake of OpenAI's embeddings API (https://platform.openai.com/docs/api-reference/embeddings:
 * `POST /v1/embeddings` with `input`, `model`, `encoding_format`, `dimensions`, `user`; answer
 * `{ object: "list", data: [{ object: "embedding", index, embedding }], model, usage }`), and OpenAI's 401,
 * which echoes part of the key ("Incorrect API key provided: sk-…").
 */
const KEY = 'sk-proj-embeddings-test-key-0123456789';
const options = (): CallOptions => ({
  signal: new CallController().signal,
  requestId: 'req_embed',
  timeouts: { connectMs: 2_000, firstTokenMs: 5_000, idleMs: 5_000, totalMs: 30_000 },
});

describe('OpenAiProvider.embed', () => {
  let fake: FakeServer;
  afterEach(() => fake?.close());

  const start = () =>
    startServer((req, res) => {
      if (req.headers.authorization !== `Bearer ${KEY}`)
        return sendJson(res, 401, {
          error: {
            message: `Incorrect API key provided: ${String(req.headers.authorization).slice(7)}. You can find your API key at https://platform.openai.com/account/api-keys.`,
            type: 'invalid_request_error',
            param: null,
            code: 'invalid_api_key',
          },
        });
      const input = req.body.input as unknown[];
      return sendJson(res, 200, {
        object: 'list',
        data: (Array.isArray(input) && Array.isArray(input[0]) ? input : [input]).map((_, index) => ({
          object: 'embedding',
          index,
          embedding: req.body.encoding_format === 'base64' ? 'AACAPwAAAEA=' : [1, 2],
        })),
        model: req.body.model,
        usage: { prompt_tokens: 5, total_tokens: 5 },
      });
    });

  it('posts the request as given to {baseUrl}/embeddings and returns OpenAI’s answer', async () => {
    fake = await start();
    const openai = new OpenAiProvider({ baseUrl: `${fake.url}/v1`, apiKey: KEY });
    const ids = await openai.embed(
      { model: 'text-embedding-3-small', input: [[1, 2, 3], [4]], dimensions: 2, user: 'u1' },
      options(),
    );
    const sent = fake.requests.at(-1)!;
    assert.equal(sent.path, '/v1/embeddings');
    assert.deepEqual(sent.body, {
      model: 'text-embedding-3-small',
      input: [[1, 2, 3], [4]],
      dimensions: 2,
      user: 'u1',
    });
    assert.equal(ids.data.length, 2);
    assert.deepEqual(ids.usage, { prompt_tokens: 5, total_tokens: 5 });
    const b64 = await openai.embed(
      { model: 'text-embedding-3-small', input: 'x', encoding_format: 'base64' },
      options(),
    );
    assert.equal(b64.data[0]?.embedding, 'AACAPwAAAEA=');
  });

  it('a 401 echoing the key becomes upstream_auth_failed without the key', async () => {
    fake = await start();
    const wrongKey = 'sk-proj-wrong-key-abcdefghijklmnop';
    const openai = new OpenAiProvider({ baseUrl: `${fake.url}/v1`, apiKey: wrongKey });
    await assert.rejects(
      openai.embed({ model: 'text-embedding-3-small', input: 'x' }, options()),
      (err: ProviderError) => {
        assert.ok(err instanceof ProviderError);
        assert.equal(err.details.code, 'upstream_auth_failed');
        assert.doesNotMatch(err.message, /wrong-key/);
        assert.match(err.message, /Incorrect API key provided/);
        return true;
      },
    );
  });
});
