import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ChatMessage } from '../../src/providers/types.js';
import { type CloudGateway, startCloudGateway, weatherTool as weather } from '../helpers/cloud-gateway.js';

/**
 * A tool-calling conversation that fails over between Bedrock and Azure OpenAI keeps the client's tool-call
 * ids: Bedrock's `tooluse_…` ids reach Azure unchanged, and Azure's `call_…` ids reach Bedrock as the
 * `toolUseId` of both the toolUse and its toolResult.
 */
describe('fallback between Bedrock and Azure with tool calls', () => {
  let clouds: CloudGateway;
  let azure: CloudGateway['azure'];
  let bedrock: CloudGateway['bedrock'];
  let gateway: CloudGateway['gateway'];

  before(async () => {
    clouds = await startCloudGateway(
      [
        { provider: 'bedrock', model: 'anthropic.claude-3-5-sonnet-20240620-v1:0' },
        { provider: 'azure', model: 'gpt-4o-prod' },
      ],
      { UPSTREAM_RETRIES: '1' },
    );
    ({ azure, bedrock, gateway } = clouds);
  });
  after(async () => {
    await clouds?.close();
  });

  it('Bedrock is unavailable, Azure calls the tool; the next turn on Bedrock carries Azure ids as toolUseId', async () => {
    const history: ChatMessage[] = [{ role: 'user', content: 'Weather in Paris?' }];
    bedrock.faults.push({ kind: 'unavailable' });
    const turn = await gateway.stream({
      body: { model: 'assistant', messages: history, tools: [weather], stream: true },
      requestId: 'req_fallback_bedrock',
    });
    assert.equal(turn.route.provider, 'azure');
    assert.equal(turn.route.fallback, true);
    const calls = [];
    for await (const { chunk } of turn.events) calls.push(...(chunk.choices[0]?.delta.tool_calls ?? []));
    const azureId = calls.find((c) => c.id)?.id;
    assert.ok(azureId);
    const args = calls.map((c) => c.function?.arguments ?? '').join('');

    const next: ChatMessage[] = [
      ...history,
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: azureId, type: 'function', function: { name: 'get_weather', arguments: args } }],
      },
      { role: 'tool', tool_call_id: azureId, content: '18°C' },
    ];
    const answer = await gateway.complete({
      body: { model: 'assistant', messages: next, tools: [weather] },
      requestId: 'req_next',
    });
    assert.equal(answer.route.provider, 'bedrock');
    const turns = bedrock.requests.at(-1)!.body.messages as {
      role: string;
      content: Record<string, { toolUseId: string }>[];
    }[];
    assert.equal(turns[1]!.content[0]!.toolUse!.toolUseId, azureId);
    assert.equal(turns[2]!.content[0]!.toolResult!.toolUseId, azureId);
    assert.deepEqual(bedrock.refused, []);
  });

  it("Bedrock's tooluse ids reach Azure unchanged on a turn that falls over", async () => {
    const first = await gateway.complete({
      body: { model: 'assistant', messages: [{ role: 'user', content: 'Weather?' }], tools: [weather] },
      requestId: 'req_b1',
    });
    assert.equal(first.route.provider, 'bedrock');
    const call = first.completion.choices[0]!.message.tool_calls![0]!;
    assert.equal(call.id, 'tooluse_kZJMlvQmRJ6eAyJE5GIl7Q');
    bedrock.faults.push({ kind: 'unavailable' });
    const second = await gateway.complete({
      body: {
        model: 'assistant',
        tools: [weather],
        messages: [
          { role: 'user', content: 'Weather?' },
          { role: 'assistant', content: null, tool_calls: [call] },
          { role: 'tool', tool_call_id: call.id, content: '18°C' },
        ],
      },
      requestId: 'req_b2',
    });
    assert.equal(second.route.provider, 'azure');
    const toAzure = azure.requests.at(-1)!.body.messages as ChatMessage[];
    assert.equal(toAzure[1]!.tool_calls![0]!.id, call.id);
    assert.equal(toAzure[2]!.tool_call_id, call.id);
  });
});
