// Saved presets of the chat's reply settings (issue 23): a preset saved, kept across a reload, applied, reaches the
// model (read from what the fake upstream received); a taken name asks before replacing; delete; at most 50;
// kept per user; at 390 px too, light and dark, with no axe or console errors.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import {
  ADMIN,
  assertAxeLightAndDark,
  axeViolations,
  DESKTOP,
  PHONE,
  PLAIN,
  repliesDone,
  scrollsSideways,
  sentToUpstream,
  skipBrowser,
  useHarness,
} from './harness.js';

describe('console: saved reply-settings presets', { skip: skipBrowser }, () => {
  const h = useHarness();

  const openPanel = async (page: Page) => {
    const panel = page.getByTestId('reply-settings');
    await panel.getByText('Reply settings').click();
    await panel.getByLabel('Preset', { exact: true }).waitFor();
    return panel;
  };
  const saveAs = async (page: Page, name: string) => {
    const panel = page.getByTestId('reply-settings');
    await panel.getByLabel('Preset name').fill(name);
    await panel.getByLabel('Preset name').press('Enter');
  };

  it('saves a preset, keeps it across a reload, applies it to a message, asks before replacing, deletes', async () => {
    const page = await h.newPage(DESKTOP, 'presets');
    await h.signIn(page, ADMIN);
    await page.getByLabel('Model or assistant').selectOption('model:fake-route');
    let panel = await openPanel(page);
    await panel.getByLabel('Temperature').fill('0.7');
    await panel.getByLabel('Max tokens').fill('33');
    await panel.getByLabel('Override the system prompt').check();
    await panel.getByLabel('System prompt', { exact: true }).fill('Reply in haiku.');
    await saveAs(page, '  ');
    await panel.getByRole('alert').getByText('A preset name has 1 to 60 characters.').waitFor();
    await saveAs(page, 'Poet');
    await panel.getByRole('status').getByText('Preset "Poet" saved.').waitFor();

    // A reload starts from the defaults; the preset is still offered.
    await page.reload();
    panel = await openPanel(page);
    assert.equal(await panel.getByLabel('Temperature').inputValue(), '');
    await page.getByLabel('Model or assistant').selectOption('model:fake-route');
    await panel.getByLabel('Preset', { exact: true }).selectOption('Poet');
    await panel.getByRole('button', { name: 'Apply' }).click();
    assert.equal(await panel.getByLabel('Temperature').inputValue(), '0.7');
    assert.match((await panel.locator('summary').textContent()) ?? '', /temperature 0\.7, max 33 tokens/);
    const from = h.upstream.requests.length;
    await page.getByLabel('Message', { exact: true }).fill('Describe the sea');
    await page.getByRole('button', { name: 'Send' }).click();
    const sent = await sentToUpstream(h, 'Describe the sea', from);
    assert.equal(sent.temperature, 0.7);
    assert.equal(sent.max_tokens, 33);
    assert.deepEqual(sent.messages[0], { role: 'system', content: 'Reply in haiku.' });
    await repliesDone(page, 1);

    // A taken name (any case): kept unless the user confirms, then replaced.
    await panel.getByLabel('Temperature').fill('0.1');
    await saveAs(page, 'poet');
    const ask = panel.getByRole('alert').filter({ hasText: 'A preset named "Poet" exists.' });
    await ask.waitFor();
    await ask.getByRole('button', { name: 'Keep the old one' }).click();
    await panel.getByLabel('Preset', { exact: true }).selectOption('Poet');
    await panel.getByLabel('Temperature').fill('');
    await panel.getByRole('button', { name: 'Apply' }).click();
    assert.equal(await panel.getByLabel('Temperature').inputValue(), '0.7', 'kept');
    await panel.getByLabel('Temperature').fill('0.1');
    await saveAs(page, 'poet');
    await ask.getByRole('button', { name: 'Replace' }).click();
    await panel.getByRole('status').getByText('Preset "poet" replaced.').waitFor();
    assert.deepEqual(
      await panel.getByLabel('Preset', { exact: true }).locator('option').allTextContents(),
      ['Choose a preset…', 'poet'],
      'one preset, not two',
    );
    await h.shot(page, 'chat-presets');

    // Delete: gone, after a reload too.
    await panel.getByLabel('Preset', { exact: true }).selectOption('poet');
    await panel.getByRole('button', { name: 'Delete' }).click();
    await panel.getByRole('status').getByText('Preset "poet" deleted.').waitFor();
    await page.reload();
    panel = await openPanel(page);
    assert.deepEqual(await panel.getByLabel('Preset', { exact: true }).locator('option').allTextContents(), [
      'No saved presets',
    ]);

    // At most 50: the 51st is refused with the reason.
    // (A string: the tests are type-checked without the DOM library.)
    await page.evaluate(`(() => {
      const key = Object.keys(localStorage).find((k) => k.startsWith('colloquy.presets.'));
      if (!key) throw new Error('no presets key');
      const settings = { temperature: '', maxTokens: '', system: '', overrideSystem: false };
      const list = Array.from({ length: 50 }, (_, i) => ({ name: 'p' + i, settings }));
      localStorage.setItem(key, JSON.stringify(list));
    })()`);
    await page.reload();
    panel = await openPanel(page);
    await saveAs(page, 'One more');
    await panel
      .getByRole('alert')
      .getByText('You have 50 presets, the most kept: delete one first.')
      .waitFor();
    assert.deepEqual(await axeViolations(page), [], 'axe: presets with an error');
    assert.deepEqual(
      h.consoleErrors.filter((e) => e.startsWith('presets:')),
      [],
    );
    await page.context().close();
  });

  it('fits a 390 px phone, light and dark, keyboard only', async () => {
    const page = await h.newPage(PHONE, 'presets-phone');
    await h.signIn(page, ADMIN);
    const panel = await openPanel(page);
    await panel.getByLabel('Max tokens').fill('12');
    // Keyboard: name, Enter saves; Tab to the picker's Apply works without a pointer.
    await panel.getByLabel('Preset name').focus();
    await page.keyboard.type('Short and sweet, a name that is fairly long');
    await page.keyboard.press('Enter');
    await panel.getByRole('status').getByText('saved.').waitFor();
    await panel.getByLabel('Max tokens').fill('');
    await panel.getByLabel('Preset', { exact: true }).focus();
    await page.keyboard.press('ArrowDown');
    await panel.getByRole('button', { name: 'Apply' }).focus();
    await page.keyboard.press('Enter');
    assert.equal(await panel.getByLabel('Max tokens').inputValue(), '12');
    await saveAs(page, 'Short and sweet, a name that is fairly long');
    await panel.getByRole('alert').getByRole('button', { name: 'Replace' }).waitFor();
    assert.equal(await scrollsSideways(page), false, 'the page scrolls sideways');
    await assertAxeLightAndDark(page, 'phone');
    await h.shot(page, 'chat-presets-phone');

    // Per user: another account in the same browser does not see them; the owner finds them after signing in again.
    const options = async () =>
      (await openPanel(page)).getByLabel('Preset', { exact: true }).locator('option').allTextContents();
    await page.getByRole('button', { name: 'Sign out' }).click();
    await h.signIn(page, PLAIN);
    assert.deepEqual(await options(), ['No saved presets']);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await h.signIn(page, ADMIN);
    assert.deepEqual(await options(), ['Choose a preset…', 'Short and sweet, a name that is fairly long']);
    assert.deepEqual(
      h.consoleErrors.filter((e) => e.startsWith('presets-phone:')),
      [],
    );
    await page.context().close();
  });
});
