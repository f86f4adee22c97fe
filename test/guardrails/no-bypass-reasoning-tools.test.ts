import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { guardedStack, HOUSE_RULES } from './stack.js';

/**
 * Issue 22's "no bypass" for what is not the answer's text: the model's reasoning and its tool-call arguments
 * go through the output guardrails too, on every protocol, streaming or not. The fake upstream streams
 * reasoning as DeepSeek does (https://api-docs.deepseek.com/guides/reasoning_model) and tool calls as OpenAI
 * does (https://platform.openai.com/docs/api-reference/chat-streaming), arguments split across chunks.
 * Every assertion is over the raw bytes the client received.
 */
const PHRASE = 'forbidden phrase';
/** Any 4 characters of the phrase: a split phrase leaks by its pieces. */
const PIECES = new RegExp(
  [...Array(PHRASE.length - 3).keys()].map((i) => PHRASE.slice(i, i + 4).replace(' ', '\\s')).join('|'),
  'i',
);
const REASONING_BAD = `Let me think. The user wants the ${PHRASE} so I will say it. Done thinking.`;
const ARGS_BAD = JSON.stringify({ note: `say the ${PHRASE} now` });
const ARGS_OK = JSON.stringify({ city: 'Paris', days: 3 });

describe('guardrails: reasoning and tool-call arguments are checked on every protocol', () => {
  const s = guardedStack({
    fakeOptions: { wordsPerChunk: 1, argumentsChunkChars: 4 },
    guardrails: [HOUSE_RULES],
  });
  const protocols = {
    chat: (stream: boolean) =>
      s.post('/v1/chat/completions', {
        model: 'gpt-4o-mini',
        stream,
        messages: [{ role: 'user', content: 'hi' }],
      }),
    messages: (stream: boolean) =>
      s.post(
        '/v1/messages',
        { model: 'gpt-4o-mini', max_tokens: 100, stream, messages: [{ role: 'user', content: 'hi' }] },
        { 'anthropic-version': '2023-06-01' },
      ),
    responses: (stream: boolean) => s.post('/v1/responses', { model: 'gpt-4o-mini', input: 'hi', stream }),
  };
  /** The blocked answer: a 400 when not streaming, the protocol's in-band error when streaming. */
  const assertBlocked = (name: string, stream: boolean, status: number, text: string) => {
    assert.doesNotMatch(text, PIECES, `${name}: a piece of the phrase reached the client`);
    if (!stream) assert.equal(status, 400, text);
    assert.match(text, /guardrail_blocked|house-rules/, text);
  };

  for (const [name, call] of Object.entries(protocols))
    for (const stream of [false, true]) {
      it(`${name} (stream: ${stream}): reasoning holding the phrase never reaches the client`, async () => {
        s.fake.set({ reply: 'A harmless answer.', reasoning: REASONING_BAD, toolCall: null });
        const res = await call(stream);
        assertBlocked(name, stream, res.status, await res.text());
      });

      it(`${name} (stream: ${stream}): tool-call arguments holding the phrase, split across chunks, never reach the client`, async () => {
        s.fake.set({ reasoning: '', toolCall: { name: 'note', arguments: ARGS_BAD } });
        const res = await call(stream);
        assertBlocked(name, stream, res.status, await res.text());
      });

      it(`${name} (stream: ${stream}): a benign tool call and reasoning arrive intact, with the call's id`, async () => {
        s.fake.set({ reasoning: 'Plain thoughts here.', toolCall: { name: 'weather', arguments: ARGS_OK } });
        const res = await call(stream);
        const text = await res.text();
        assert.equal(res.status, 200, text);
        assert.match(text, /call_fake_1/);
        assert.doesNotMatch(text, /guardrail_blocked|"type":"error"|response\.failed/);
        assert.deepEqual(argumentsOf(name, stream, text), JSON.parse(ARGS_OK));
      });
    }
});

/** The tool call's arguments as the client reassembles them, per protocol. */
function argumentsOf(protocol: string, stream: boolean, text: string): unknown {
  if (!stream) {
    const body = JSON.parse(text);
    if (protocol === 'chat') return JSON.parse(body.choices[0].message.tool_calls[0].function.arguments);
    if (protocol === 'messages')
      return body.content.find((b: { type: string }) => b.type === 'tool_use').input;
    return JSON.parse(body.output.find((o: { type: string }) => o.type === 'function_call').arguments);
  }
  const events = text
    .split('\n')
    .filter((l) => l.startsWith('data: {'))
    .map((l) => JSON.parse(l.slice(6)));
  if (protocol === 'chat')
    return JSON.parse(
      events.map((e) => e.choices?.[0]?.delta?.tool_calls?.[0]?.function?.arguments ?? '').join(''),
    );
  if (protocol === 'messages')
    return JSON.parse(
      events
        .filter((e) => e.type === 'content_block_delta' && e.delta.type === 'input_json_delta')
        .map((e) => e.delta.partial_json)
        .join(''),
    );
  return JSON.parse(
    events
      .filter((e) => e.type === 'response.function_call_arguments.delta')
      .map((e) => e.delta)
      .join(''),
  );
}
