import { completion, type FakeServer, sendJson, sendSse, startServer, streamChunks } from './wire.js';

/**
 * A fake Hugging Face: the Inference Providers router's OpenAI-compatible chat
 * (https://huggingface.co/docs/inference-providers/index: `POST https://router.huggingface.co/v1/chat/completions`,
 * `Authorization: Bearer hf_…`, model `org/model` or `org/model:provider`), and Text Embeddings Inference
 * (https://huggingface.github.io/text-embeddings-inference/: `POST /embed` with `{ inputs, normalize }`, answered
 * by a bare list of vectors), also served at the router's hosted path
 * `/hf-inference/models/{org}/{model}/pipeline/feature-extraction`.
 * Function calling (https://huggingface.co/docs/inference-providers/guides/function-calling): a request whose
 * last turn is the user's and that offers `tools` is answered with an OpenAI-format `tool_calls` message, its
 * arguments streamed in pieces (https://platform.openai.com/docs/api-reference/chat/object).
 */
export async function startFakeHuggingFace(key: string): Promise<FakeServer> {
  return startServer((req, res) => {
    if (req.headers.authorization !== `Bearer ${key}`)
      return sendJson(res, 401, { error: 'Invalid credentials in Authorization header' });
    const embed =
      req.path === '/embed' ||
      /^\/hf-inference\/models\/[^/]+\/[^/]+\/pipeline\/feature-extraction$/.test(req.path);
    if (embed) {
      const inputs = req.body.inputs;
      const texts = Array.isArray(inputs) ? inputs : [inputs];
      res.setHeader('x-compute-tokens', String(3 * texts.length));
      return sendJson(
        res,
        200,
        texts.map((_, i) => [0.5, i, -0.25]),
      );
    }
    if (req.path !== '/v1/chat/completions') return sendJson(res, 404, { error: 'Not Found' });
    const model = String(req.body.model);
    if (!/^[\w.-]+\/[\w.-]+(:[\w-]+)?$/.test(model))
      return sendJson(res, 400, {
        error: { message: `Model ${model} is not supported`, type: 'invalid_request_error' },
      });
    const messages = (req.body.messages as { role?: string }[] | undefined) ?? [];
    const answer =
      Array.isArray(req.body.tools) && req.body.tools.length > 0 && messages.at(-1)?.role === 'user'
        ? { toolCalls: [{ id: 'call_hf_1', name: 'get_weather', arguments: '{"location":"Paris"}' }] }
        : { text: `Served ${model}.` };
    if (req.body.stream) return sendSse(res, streamChunks(model, answer));
    return sendJson(res, 200, completion(model, answer));
  });
}
