// The chat's parameter panel (issue 23): temperature, max tokens and a system prompt override reach the model
// with each message and regeneration (read from what the fake upstream received), an invalid value is
// explained and not sent, Reset brings the defaults back; at 390 px too, with no axe or console errors.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import {
  ADMIN,
  assertAxeLightAndDark,
  axeViolations,
  DESKTOP,
  PHONE,
  repliesDone,
  scrollsSideways,
  sentToUpstream,
  skipBrowser,
  useHarness,
} from './harness.js';

describe('console: reply settings in the chat', { skip: skipBrowser }, () => {
  const h = useHarness();

  const sendText = async (page: Page, text: string) => {
    await page.getByLabel('Message', { exact: true }).fill(text);
    await page.getByRole('button', { name: 'Send' }).click();
  };

  it('sends temperature, max tokens and the system prompt with messages and regenerations', async () => {
    const page = await h.newPage(DESKTOP, 'settings');
    await h.signIn(page, ADMIN);
    await page.getByLabel('Model or assistant').selectOption('model:fake-route');
    const panel = page.getByTestId('reply-settings');
    await panel.getByText('Reply settings').click();
    await panel.getByLabel('Temperature').fill('0.3');
    await panel.getByLabel('Max tokens').fill('40');
    await panel.getByLabel('Override the system prompt').check();
    await panel.getByLabel('System prompt', { exact: true }).fill('Answer like a pirate.');
    assert.match(
      (await panel.locator('summary').textContent()) ?? '',
      /temperature 0\.3, max 40 tokens, own system prompt/,
    );
    assert.deepEqual(await axeViolations(page), [], 'axe: the open panel');
    await h.shot(page, 'chat-reply-settings');

    let from = h.upstream.requests.length;
    await sendText(page, 'Where is the treasure?');
    let sent = await sentToUpstream(h, 'Where is the treasure?', from);
    assert.equal(sent.temperature, 0.3);
    assert.equal(sent.max_tokens, 40);
    assert.deepEqual(sent.messages[0], { role: 'system', content: 'Answer like a pirate.' });
    await repliesDone(page, 1);

    from = h.upstream.requests.length;
    await page.getByTestId('msg-assistant').first().getByRole('button', { name: 'Regenerate' }).click();
    sent = await sentToUpstream(h, 'Where is the treasure?', from);
    assert.equal(sent.temperature, 0.3, 'a regeneration has the settings too');
    await page.getByTestId('msg-assistant').first().getByText('2 / 2').waitFor();

    // Out of range: said in the panel, and nothing can be sent.
    await panel.getByLabel('Temperature').fill('3');
    await panel.getByRole('alert').getByText('Temperature must be a number from 0 to 2.').waitFor();
    await page.getByLabel('Message', { exact: true }).fill('Not sent');
    assert.equal(await page.getByRole('button', { name: 'Send' }).isDisabled(), true);

    // Reset: the defaults (no settings sent).
    await panel.getByRole('button', { name: 'Reset to defaults' }).click();
    assert.equal(await panel.getByRole('alert').count(), 0);
    from = h.upstream.requests.length;
    await sendText(page, 'And now plainly?');
    sent = await sentToUpstream(h, 'And now plainly?', from);
    assert.equal(sent.temperature, undefined);
    assert.equal(sent.max_tokens, undefined);
    assert.notEqual(sent.messages[0]?.role, 'system');
    await repliesDone(page, 2);
    assert.deepEqual(
      h.consoleErrors.filter((e) => e.startsWith('settings:')),
      [],
    );
    await page.context().close();
  });

  it('fits a 390 px phone, light and dark', async () => {
    const page = await h.newPage(PHONE, 'settings-phone');
    await h.signIn(page, ADMIN);
    const panel = page.getByTestId('reply-settings');
    await panel.getByText('Reply settings').click();
    await panel.getByLabel('Override the system prompt').check();
    await panel.getByLabel('System prompt', { exact: true }).fill('Short answers.');
    assert.equal(await scrollsSideways(page), false, 'the page scrolls sideways');
    await assertAxeLightAndDark(page, 'phone');
    await h.shot(page, 'chat-reply-settings-phone');
    assert.deepEqual(
      h.consoleErrors.filter((e) => e.startsWith('settings-phone:')),
      [],
    );
    await page.context().close();
  });
});
