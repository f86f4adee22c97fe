import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ChatMessage } from '../../src/providers/types.js';
import { type CloudGateway, startCloudGateway, weatherTool as weather } from '../helpers/cloud-gateway.js';

/**
 * A tool-calling conversation that fails over between provider families (Azure OpenAI → Mistral) keeps the
 * client's tool-call ids: Mistral sees its own 9-character form, the client never does, and the next turn
 * back on Azure carries the client's ids unchanged.
 */
describe('fallback across clouds with tool calls', () => {
  let clouds: CloudGateway;
  let azure: CloudGateway['azure'];
  let mistral: CloudGateway['mistral'];
  let gateway: CloudGateway['gateway'];

  before(async () => {
    clouds = await startCloudGateway([
      { provider: 'azure', model: 'gpt-4o-prod' },
      { provider: 'mistral', model: 'mistral-large-latest' },
    ]);
    ({ azure, mistral, gateway } = clouds);
  });
  after(async () => {
    await clouds?.close();
  });

  it('Azure fails, Mistral answers a conversation with OpenAI-style ids, and the next turn on Azure keeps them', async () => {
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
      { role: 'user', content: 'And in Lyon?' },
    ];
    azure.faults.push({ kind: 'server_error' });
    const turn = await gateway.stream({
      body: { model: 'assistant', messages: history, tools: [weather], stream: true },
      requestId: 'req_fallback',
    });
    assert.equal(turn.route.provider, 'mistral');
    assert.equal(turn.route.fallback, true);
    const calls = [];
    for await (const { chunk } of turn.events) calls.push(...(chunk.choices[0]?.delta.tool_calls ?? []));
    const newId = calls.find((c) => c.id)?.id;
    assert.equal(newId, 'D681PevKs');
    assert.equal(calls.map((c) => c.function?.arguments ?? '').join(''), '{"location":"Paris"}');
    const toMistral = mistral.requests.at(-1)!.body.messages as ChatMessage[];
    assert.match(toMistral[1]!.tool_calls![0]!.id, /^[A-Za-z0-9]{9}$/);
    assert.equal(toMistral[2]!.tool_call_id, toMistral[1]!.tool_calls![0]!.id);

    // The next turn, Azure healthy again: the client's ids (OpenAI's and Mistral's) reach it unchanged.
    const next: ChatMessage[] = [
      ...history,
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          {
            id: newId!,
            type: 'function',
            function: { name: 'get_weather', arguments: '{"location":"Lyon"}' },
          },
        ],
      },
      { role: 'tool', tool_call_id: newId!, content: '21°C' },
    ];
    const answer = await gateway.complete({
      body: { model: 'assistant', messages: next, tools: [weather] },
      requestId: 'req_next',
    });
    assert.equal(answer.route.provider, 'azure');
    const toAzure = azure.requests.at(-1)!.body.messages as ChatMessage[];
    assert.equal(toAzure[1]!.tool_calls![0]!.id, 'call_az1');
    assert.equal(toAzure[2]!.tool_call_id, 'call_az1');
    assert.equal(toAzure[4]!.tool_calls![0]!.id, 'D681PevKs');
  });
});
