import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ChatCompletionRequest } from '../types.js';
import { servesGoogleExtensions, withoutGoogleExtensions } from './google-extensions.js';

/** Gemini's thought signatures on tool calls (https://ai.google.dev/gemini-api/docs/thought-signatures). */
describe('Gemini extensions on the way to an OpenAI-format upstream', () => {
  const call = {
    id: 'call_1',
    type: 'function' as const,
    function: { name: 'get_weather', arguments: '{}' },
    extra_content: { google: { thought_signature: 'sig-1' } },
  };

  it('left out of tool calls, the calls and their ids kept; the caller’s body untouched', () => {
    const body: ChatCompletionRequest = {
      model: 'gpt-4o',
      messages: [
        { role: 'user', content: 'Weather?' },
        { role: 'assistant', content: null, tool_calls: [call] },
        { role: 'tool', tool_call_id: 'call_1', content: '18°C' },
      ],
    };
    const out = withoutGoogleExtensions(body);
    assert.deepEqual(out.messages[1]!.tool_calls, [
      { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{}' } },
    ]);
    assert.equal(out.messages[0], body.messages[0]);
    assert.equal(body.messages[1]!.tool_calls![0], call, 'a copy: the caller keeps its signatures');
  });

  it('a body without any is returned as it is; Google’s own endpoint keeps them', () => {
    const body: ChatCompletionRequest = { model: 'gpt-4o', messages: [{ role: 'user', content: 'Hi' }] };
    assert.equal(withoutGoogleExtensions(body), body);
    assert.ok(servesGoogleExtensions('https://generativelanguage.googleapis.com/v1beta/openai/'));
    assert.ok(!servesGoogleExtensions('https://api.openai.com/v1'));
  });
});
