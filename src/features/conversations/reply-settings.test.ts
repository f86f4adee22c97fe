import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  assertError,
  bearer,
  createUser,
  startTestApp,
  type TestApp,
  type TestUser,
} from '../../../test/helpers/app.js';
import { createTestDatabase, type TestDatabase } from '../../../test/helpers/databases.js';
import { FakeGateway } from './testing/fake-gateway.js';

/**
 * Per-request reply settings (issue 23, the console's parameter panel): `temperature`, `max_tokens` and
 * `system_prompt` on send, edit, regenerate and continue reach the model for that reply, over the assistant's;
 * out-of-range values and null are refused with 400 before anything is stored or sent.
 */
describe('conversations: reply settings per request', () => {
  let testDb: TestDatabase;
  let h: TestApp;
  let gateway: FakeGateway;
  let a: TestUser;
  let assistantId: string;

  const call = (method: string, url: string, payload?: unknown) =>
    h.inject({
      method: method as 'POST',
      url,
      headers: bearer(a.accessToken),
      ...(payload === undefined ? {} : { payload: payload as object }),
    });
  const conversation = async (payload: Record<string, unknown> = { model: 'fake-model' }) => {
    const res = await call('POST', '/api/conversations', payload);
    assert.equal(res.statusCode, 201, res.body);
    return res.json().id as string;
  };
  const sent = () => gateway.calls.at(-1)!.body;

  before(async () => {
    testDb = await createTestDatabase('sqlite');
    gateway = new FakeGateway();
    h = await startTestApp({ testDb, gateway });
    a = await createUser(h, 'settings@example.com');
    const assistant = await call('POST', '/api/assistants', {
      name: 'Tutor',
      system_prompt: 'You are a patient tutor.',
      model: 'fake-model',
      params: { temperature: 0.9, max_tokens: 500 },
    });
    assert.equal(assistant.statusCode, 201, assistant.body);
    assistantId = assistant.json().id;
  });
  after(async () => {
    await h?.close();
    await testDb?.drop();
  });

  it('sends the settings of the request, over the assistant’s, for that reply only', async () => {
    const id = await conversation({ assistant_id: assistantId });
    const url = `/api/conversations/${id}/messages`;
    const first = await call('POST', url, {
      content: 'Bonjour',
      stream: false,
      temperature: 0.2,
      max_tokens: 64,
      system_prompt: 'Answer in French.',
    });
    assert.equal(first.statusCode, 201, first.body);
    assert.equal(sent().temperature, 0.2);
    assert.equal(sent().max_tokens, 64);
    assert.deepEqual(sent().messages[0], { role: 'system', content: 'Answer in French.' });

    // Without settings: the assistant's again (nothing was stored).
    assert.equal((await call('POST', url, { content: 'And now?', stream: false })).statusCode, 201);
    assert.equal(sent().temperature, 0.9);
    assert.equal(sent().max_tokens, 500);
    assert.deepEqual(sent().messages[0], { role: 'system', content: 'You are a patient tutor.' });

    // An empty system prompt sends none; the boundaries 0 and 2 are accepted.
    const none = await call('POST', url, {
      content: 'Plain',
      stream: false,
      system_prompt: '',
      temperature: 0,
    });
    assert.equal(none.statusCode, 201, none.body);
    assert.equal(sent().messages[0]!.role, 'user');
    assert.equal(sent().temperature, 0);
    const reply = none.json().message.id as string;
    const regen = await call('POST', `/api/conversations/${id}/messages/${reply}/regenerate`, {
      stream: false,
      temperature: 2,
      max_tokens: 1,
    });
    assert.equal(regen.statusCode, 201, regen.body);
    assert.equal(sent().temperature, 2);
    assert.equal(sent().max_tokens, 1);

    const userId = none.json().user_message.id as string;
    const edit = await call('POST', `/api/conversations/${id}/messages/${userId}/edit`, {
      content: 'Plain, edited',
      stream: false,
      system_prompt: 'Be brief.',
    });
    assert.equal(edit.statusCode, 201, edit.body);
    assert.deepEqual(sent().messages[0], { role: 'system', content: 'Be brief.' });
  });

  it('refuses null and out-of-range settings with 400, storing and sending nothing', async () => {
    const id = await conversation();
    const url = `/api/conversations/${id}/messages`;
    const before = gateway.callCount;
    const cases: [Record<string, unknown>, string][] = [
      [{ temperature: null }, 'temperature'],
      [{ temperature: -0.1 }, 'temperature'],
      [{ temperature: 2.01 }, 'temperature'],
      [{ temperature: '0.5' }, 'temperature'],
      [{ max_tokens: null }, 'max_tokens'],
      [{ max_tokens: 0 }, 'max_tokens'],
      [{ max_tokens: 1.5 }, 'max_tokens'],
      [{ max_tokens: 1_000_001 }, 'max_tokens'],
      [{ system_prompt: null }, 'system_prompt'],
      [{ system_prompt: 'x'.repeat(32_001) }, 'system_prompt'],
    ];
    for (const [extra, param] of cases) {
      const res = await call('POST', url, { content: 'hi', stream: false, ...extra });
      const error = assertError(res, 400, 'validation_error');
      assert.match(`${error.param ?? ''} ${error.message}`, new RegExp(param), JSON.stringify(extra));
    }
    // Valid by type, but no room left for the prompt: fake-model's window is 8,192 tokens.
    assertError(
      await call('POST', url, { content: 'hi', stream: false, max_tokens: 8_192 }),
      400,
      'invalid_request',
      'max_tokens',
    );
    assert.equal(gateway.callCount, before, 'nothing sent upstream');
    const messages = await call('GET', url);
    assert.deepEqual(messages.json().data, [], 'nothing stored');
  });
});
