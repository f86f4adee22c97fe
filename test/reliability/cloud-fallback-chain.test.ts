import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ChatMessage, ToolCall } from '../../src/providers/types.js';
import { type CloudGateway, startCloudGateway, weatherTool as weather } from '../helpers/cloud-gateway.js';

/**
 * Issue 21's fallback matrix across three families: Bedrock → Azure OpenAI → Gemini, one tool-calling
 * conversation whose turns land on each. The client's tool-call ids stay the same everywhere; Gemini's
 * thought signatures (extra_content.google.thought_signature) go back to Gemini and are left out for Azure,
 * whose API knows no such field; Bedrock gets the calls as toolUse / toolResult with the same ids.
 */
type ClientCall = ToolCall & { extra_content?: { google?: { thought_signature?: string } } };

describe('fallback chain Bedrock → Azure → Gemini with tool calls', () => {
  let clouds: CloudGateway;

  before(async () => {
    clouds = await startCloudGateway(
      [
        { provider: 'bedrock', model: 'anthropic.claude-3-5-sonnet-20240620-v1:0' },
        { provider: 'azure', model: 'gpt-4o-prod' },
        { provider: 'gemini', model: 'gemini-2.5-flash' },
      ],
      // Three deployments: the first attempt and two fallbacks.
      { UPSTREAM_RETRIES: '2' },
    );
  });
  after(async () => {
    await clouds?.close();
  });

  it('one conversation over all three: ids consistent, signatures kept for Gemini only', async () => {
    const { gateway, bedrock, azure, gemini } = clouds;
    const ask: ChatMessage[] = [{ role: 'user', content: 'Weather in Paris and London?' }];

    // Turn 1: Bedrock and Azure down, Gemini calls the tool twice (streamed).
    bedrock.faults.push({ kind: 'unavailable' });
    azure.faults.push({ kind: 'server_error' });
    const turn = await gateway.stream({
      body: { model: 'assistant', messages: ask, tools: [weather], stream: true },
      requestId: 'req_chain_1',
    });
    assert.equal(turn.route.provider, 'gemini');
    assert.equal(turn.route.attempts, 3);
    const calls: ClientCall[] = [];
    let finish: string | null = null;
    for await (const { chunk } of turn.events) {
      const choice = chunk.choices[0];
      if (choice?.finish_reason) finish = choice.finish_reason;
      for (const delta of choice?.delta.tool_calls ?? []) {
        calls[delta.index] ??= { id: '', type: 'function', function: { name: '', arguments: '' } };
        const call = calls[delta.index]!;
        if (delta.id) call.id = delta.id;
        if (delta.function?.name) call.function.name = delta.function.name;
        call.function.arguments += delta.function?.arguments ?? '';
        const extra = (delta as { extra_content?: ClientCall['extra_content'] }).extra_content;
        if (extra) call.extra_content = extra;
      }
    }
    assert.equal(finish, 'tool_calls');
    assert.equal(calls.length, 2);
    assert.ok(calls[0]!.extra_content?.google?.thought_signature, 'Gemini’s signature reaches the client');
    const ids = calls.map((c) => c.id);
    const history: ChatMessage[] = [
      ...ask,
      { role: 'assistant', content: null, tool_calls: calls },
      { role: 'tool', tool_call_id: ids[0]!, content: '18°C' },
      { role: 'tool', tool_call_id: ids[1]!, content: '12°C' },
    ];

    // Turn 2: Bedrock down, Azure answers; it sees the calls and ids but no Gemini extension.
    bedrock.faults.push({ kind: 'unavailable' });
    const second = await gateway.complete({
      body: { model: 'assistant', messages: history, tools: [weather] },
      requestId: 'req_chain_2',
    });
    assert.equal(second.route.provider, 'azure');
    const toAzure = azure.requests.at(-1)!;
    assert.deepEqual(
      (toAzure.body.messages as ChatMessage[])[1]!.tool_calls!.map((c) => c.id),
      ids,
    );
    assert.ok(!toAzure.text.includes('extra_content'), 'no Gemini extension sent to Azure');
    assert.ok(!toAzure.text.includes('thought_signature'));
    assert.deepEqual(
      (toAzure.body.messages as ChatMessage[]).slice(2).map((m) => m.tool_call_id),
      ids,
    );

    // Turn 3: Bedrock healthy: the same calls as toolUse / toolResult with the same ids.
    const third = await gateway.complete({
      body: { model: 'assistant', messages: history, tools: [weather] },
      requestId: 'req_chain_3',
    });
    assert.equal(third.route.provider, 'bedrock');
    const turns = bedrock.requests.at(-1)!.body.messages as {
      role: string;
      content: { toolUse?: { toolUseId: string }; toolResult?: { toolUseId: string } }[];
    }[];
    assert.deepEqual(
      turns[1]!.content.map((b) => b.toolUse?.toolUseId),
      ids,
    );
    assert.deepEqual(
      turns[2]!.content.map((b) => b.toolResult?.toolUseId),
      ids,
    );
    assert.deepEqual(bedrock.refused, []);

    // Turn 4: back on Gemini, which requires its own signatures on its calls: they are still there.
    bedrock.faults.push({ kind: 'unavailable' });
    azure.faults.push({ kind: 'server_error' });
    const fourth = await gateway.complete({
      body: { model: 'assistant', messages: history, tools: [weather] },
      requestId: 'req_chain_4',
    });
    assert.equal(fourth.route.provider, 'gemini');
    assert.match(fourth.completion.choices[0]!.message.content ?? '', /18°C/);
    const contents = gemini.requests.at(-1)!.body.contents as { parts: Record<string, unknown>[] }[];
    assert.equal(contents[1]!.parts[0]!.thoughtSignature, calls[0]!.extra_content!.google!.thought_signature);
  });
});
