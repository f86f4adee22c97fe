import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ChatMessage } from '../../src/providers/types.js';
import { type CloudGateway, startCloudGateway, weatherTool as weather } from '../helpers/cloud-gateway.js';

/**
 * A tool-calling conversation that fails over between Azure OpenAI and Gemini keeps its tool calls and ids: a
 * call Azure made (no thought signature) goes to Gemini with Google's documented placeholder and its result by
 * name; calls Gemini made keep the ids Colloquy gave them when the next turn lands on Azure.
 */
describe('fallback between Azure OpenAI and Gemini with tool calls', () => {
  let clouds: CloudGateway;
  let azure: CloudGateway['azure'];
  let gemini: CloudGateway['gemini'];
  let gateway: CloudGateway['gateway'];

  before(async () => {
    clouds = await startCloudGateway([
      { provider: 'azure', model: 'gpt-4o-prod' },
      { provider: 'gemini', model: 'gemini-2.5-flash' },
    ]);
    ({ azure, gemini, gateway } = clouds);
  });
  after(async () => {
    await clouds?.close();
  });

  it("Azure fails mid tool turn: Gemini answers Azure's call; Gemini's calls keep their ids back on Azure", async () => {
    const history: ChatMessage[] = [
      { role: 'user', content: 'Weather in Paris?' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          {
            id: 'call_az1',
            type: 'function',
            function: { name: 'get_weather', arguments: '{"location":"Paris"}' },
          },
        ],
      },
      { role: 'tool', tool_call_id: 'call_az1', content: '18°C' },
    ];
    azure.faults.push({ kind: 'server_error' });
    const turn = await gateway.complete({
      body: { model: 'assistant', messages: history, tools: [weather] },
      requestId: 'req_fallback_1',
    });
    assert.equal(turn.route.provider, 'gemini');
    assert.equal(turn.route.fallback, true);
    const contents = gemini.requests.at(-1)!.body.contents as {
      role: string;
      parts: Record<string, unknown>[];
    }[];
    assert.deepEqual(contents[1]?.parts[0], {
      functionCall: { name: 'get_weather', args: { location: 'Paris' } },
      thoughtSignature: 'skip_thought_signature_validator',
    });
    assert.deepEqual(contents[2]?.parts[0], {
      functionResponse: { name: 'get_weather', response: { result: '18°C' } },
    });

    // Azure fails again on a new question: Gemini makes the calls, with ids Colloquy gave them.
    azure.faults.push({ kind: 'server_error' });
    const ask: ChatMessage[] = [{ role: 'user', content: 'Weather in Paris and London?' }];
    const stream = await gateway.stream({
      body: { model: 'assistant', messages: ask, tools: [weather], stream: true },
      requestId: 'req_fallback_2',
    });
    assert.equal(stream.route.provider, 'gemini');
    const calls: { id: string; name: string; arguments: string }[] = [];
    for await (const { chunk } of stream.events)
      for (const c of chunk.choices[0]?.delta.tool_calls ?? [])
        calls.push({ id: c.id!, name: c.function!.name!, arguments: c.function!.arguments! });
    assert.equal(calls.length, 2);

    // The next turn, Azure healthy: it gets the client's ids unchanged, each result paired with its call.
    const next: ChatMessage[] = [
      ...ask,
      {
        role: 'assistant',
        content: null,
        tool_calls: calls.map((c) => ({
          id: c.id,
          type: 'function' as const,
          function: { name: c.name, arguments: c.arguments },
        })),
      },
      { role: 'tool', tool_call_id: calls[0]!.id, content: '18°C' },
      { role: 'tool', tool_call_id: calls[1]!.id, content: '12°C' },
    ];
    const answer = await gateway.complete({
      body: { model: 'assistant', messages: next, tools: [weather] },
      requestId: 'req_fallback_3',
    });
    assert.equal(answer.route.provider, 'azure');
    const toAzure = azure.requests.at(-1)!.body.messages as ChatMessage[];
    assert.deepEqual(
      toAzure[1]!.tool_calls!.map((c) => c.id),
      calls.map((c) => c.id),
    );
    assert.equal(toAzure[2]!.tool_call_id, calls[0]!.id);
    assert.equal(toAzure[3]!.tool_call_id, calls[1]!.id);
  });
});
