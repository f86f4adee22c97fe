// Files in the console chat (issue 24): attach by button and by drag-and-drop, upload progress and cancel,
// image previews, a document's text, the files reaching the model, and the server's refusals explained.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import sharp from 'sharp';
import {
  ADMIN,
  assertAxeLightAndDark,
  axeViolations,
  DESKTOP,
  PHONE,
  scrollsSideways,
  skipBrowser,
  until,
  useHarness,
} from './harness.js';

const MAX = 1_000_000;
const DOC_TEXT = 'The worksheet asks: why do leaves need sunlight for photosynthesis?';

describe('files in the console chat', { skip: skipBrowser }, () => {
  const h = useHarness({ MAX_UPLOAD_SIZE: String(MAX) });
  let png: Buffer;

  before(async () => {
    png = await sharp({
      create: { width: 96, height: 64, channels: 3, background: { r: 200, g: 30, b: 30 } },
    })
      .png()
      .toBuffer();
  });

  /** Console errors of the pages labelled `label`, less the HTTP refusals a test provokes on purpose. */
  const errorsOf = (label: string, expected?: RegExp) =>
    h.consoleErrors.filter((e) => e.startsWith(`${label}:`) && !expected?.test(e));
  const composer = (page: Page) => page.getByLabel('Message', { exact: true });
  const chips = (page: Page) => page.getByTestId('attachment-chip');
  const attachInput = (page: Page) => page.getByLabel('Attach files');
  /** Drops files on the composer the way a browser does: dragover, then drop with a DataTransfer. */
  // Page scripts are strings: the tests are type-checked without the DOM library.
  const drop = (page: Page, files: { name: string; type: string; text: string }[]) =>
    page.evaluate(`(() => {
      const dt = new DataTransfer();
      for (const f of ${JSON.stringify(files)}) dt.items.add(new File([f.text], f.name, { type: f.type }));
      const form = document.querySelector('form.composer');
      form.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
      form.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    })()`);
  /** The image has loaded (an object URL of the bytes fetched with the token), not just an <img> tag. */
  const imageShown = (page: Page, scope = page.locator('body')) =>
    until(
      async () =>
        (await scope
          .getByTestId('attachment-thumb')
          .first()
          .evaluate(
            (img: { complete: boolean; naturalWidth: number }) => img.complete && img.naturalWidth > 0,
          )) === true,
      'the image preview',
    );

  it('attaches by button and by drop, previews both, and the model receives the image and the text', async () => {
    const page = await h.newPage(DESKTOP, 'attach');
    await h.signIn(page, ADMIN);
    await page.getByLabel('Model or assistant').selectOption('model:fake-route');
    await attachInput(page).setInputFiles({ name: 'worksheet.png', mimeType: 'image/png', buffer: png });
    await drop(page, [{ name: 'notes.txt', type: 'text/plain', text: DOC_TEXT }]);
    await until(async () => (await chips(page).count()) === 2, 'two chips');
    await imageShown(page);
    // The document's extracted text, in a dialog.
    await chips(page)
      .filter({ hasText: 'notes.txt' })
      .getByRole('button', { name: /View text/ })
      .click();
    const dialog = page.getByRole('dialog', { name: 'notes.txt' });
    await dialog.getByText(DOC_TEXT).waitFor();
    assert.deepEqual(await axeViolations(page), [], 'axe: the text dialog');
    await dialog.getByRole('button', { name: 'Close' }).click();
    await dialog.waitFor({ state: 'hidden' });
    assert.deepEqual(await axeViolations(page), [], 'axe: the composer with attachments');
    await h.shot(page, 'chat-attachments-composer');

    const before = h.upstream.requests.length;
    await composer(page).fill('Please help with this worksheet');
    await composer(page).press('Enter');
    // The reply has arrived (the conversation is created first: "streaming" is not there at once).
    await page
      .getByTestId('msg-assistant')
      .getByText(/word by word\./)
      .waitFor({ timeout: 30_000 });
    await page.getByTestId('streaming').waitFor({ state: 'detached', timeout: 30_000 });
    assert.equal(await chips(page).count(), 0, 'the composer is cleared once sent');
    // What the fake upstream received for this message (not a title request): the image as an image part,
    // the document as its text, then the message's own text. OpenAI's content parts:
    // https://platform.openai.com/docs/api-reference/chat/create (messages[].content, image_url parts).
    type Part = { type: string; text?: string; image_url?: { url: string } };
    const asked = h.upstream.requests
      .slice(before)
      .filter((r) => r.path === '/v1/chat/completions')
      .map((r) => (r.body.messages as { role: string; content: string | Part[] }[]).at(-1)!)
      .find(
        (m) => m.role === 'user' && JSON.stringify(m.content).includes('Please help with this worksheet'),
      );
    assert.ok(asked, 'the message reached the model');
    const parts = asked.content as Part[];
    assert.ok(Array.isArray(parts), 'content parts, not a bare string');
    const image = parts.find((p) => p.type === 'image_url');
    assert.match(image?.image_url?.url ?? '', /^data:image\/png;base64,/, 'the image went as an image part');
    const seen = await sharp(Buffer.from(image!.image_url!.url.split(',')[1]!, 'base64')).metadata();
    assert.deepEqual([seen.width, seen.height], [96, 64], 'the uploaded image itself');
    assert.ok(
      parts.some((p) => p.type === 'text' && p.text?.includes(DOC_TEXT)),
      'the document went as its text',
    );
    assert.equal(parts.at(-1)?.text, 'Please help with this worksheet');

    // The sent message shows its files, after a reload too.
    await page.reload();
    const message = page.getByTestId('msg-user').first();
    await message.getByTestId('message-attachment').nth(1).waitFor();
    await imageShown(page, message);
    await message.getByRole('button', { name: /View text/ }).click();
    await page.getByRole('dialog', { name: 'notes.txt' }).getByText(DOC_TEXT).waitFor();
    await page.keyboard.press('Escape');
    await h.shot(page, 'chat-attachments-sent');
    assert.deepEqual(errorsOf('attach'), []);
    await page.context().close();
  });

  it('shows upload progress, and Cancel stops the upload', async () => {
    const page = await h.newPage(DESKTOP, 'progress');
    await h.signIn(page, ADMIN);
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Network.enable');
    // ~100 KB/s: a 900 KB upload takes several seconds, long enough to watch and cancel.
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false,
      latency: 20,
      downloadThroughput: 1_000_000,
      uploadThroughput: 100_000,
    });
    const files = async () => (await h.api('GET', '/api/files', await h.login(ADMIN))).body.data.length;
    const stored = await files();
    await attachInput(page).setInputFiles({
      name: 'long.txt',
      mimeType: 'text/plain',
      buffer: Buffer.from('a line of text\n'.repeat(60_000)),
    });
    const progress = page.getByTestId('upload-progress');
    await progress.waitFor();
    await until(async () => Number(await progress.getAttribute('value')) > 0, 'progress above zero');
    assert.ok(Number(await progress.getAttribute('value')) < 1, 'still uploading');
    await chips(page)
      .getByRole('button', { name: /Cancel/ })
      .click();
    await until(async () => (await chips(page).count()) === 0, 'the chip gone');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await files(), stored, 'a cancelled upload is not stored');
    assert.deepEqual(errorsOf('progress'), []);
    await page.context().close();
  });

  it('explains refusals: too large, a type the server does not accept, a model without vision', async () => {
    const page = await h.newPage(DESKTOP, 'refusals');
    await h.signIn(page, ADMIN);
    await attachInput(page).setInputFiles({
      name: 'huge.txt',
      mimeType: 'text/plain',
      buffer: Buffer.alloc(MAX + 50_000, 'a'),
    });
    await chips(page)
      .filter({ hasText: 'huge.txt' })
      .getByText(/“huge\.txt” is too large/)
      .waitFor();
    const exe = Buffer.alloc(4096);
    exe.write('MZ', 0, 'latin1');
    await attachInput(page).setInputFiles({
      name: 'setup.exe',
      mimeType: 'application/octet-stream',
      buffer: exe,
    });
    await chips(page)
      .filter({ hasText: 'setup.exe' })
      .getByText(/“setup\.exe” is not a file type the server accepts/)
      .waitFor();
    assert.deepEqual(await axeViolations(page), [], 'axe: errors in the composer');
    // Removed, the errors go.
    for (let i = 0; i < 2; i++)
      await chips(page)
        .first()
        .getByRole('button', { name: /Remove/ })
        .click();
    assert.equal(await chips(page).count(), 0);

    // An image to a model without vision: the server's 400 is shown, and the file stays attached.
    await page.getByLabel('Model or assistant').selectOption('model:demo');
    await attachInput(page).setInputFiles({ name: 'photo.png', mimeType: 'image/png', buffer: png });
    await imageShown(page);
    await composer(page).fill('What is in this photo?');
    await composer(page).press('Enter');
    await page
      .getByRole('alert')
      .getByText(/does not accept images/)
      .waitFor();
    assert.equal(await chips(page).count(), 1, 'the image is still attached');
    assert.equal(await composer(page).inputValue(), 'What is in this photo?');
    // Only the refusals themselves (413, 415, 400) are logged by the browser.
    assert.deepEqual(errorsOf('refusals', /Failed to load resource: .*status of (400|413|415)/), []);
    await page.context().close();
  });

  it('fits a 390 px phone with files attached, light and dark', async () => {
    const page = await h.newPage(PHONE, 'phone');
    await h.signIn(page, ADMIN);
    await attachInput(page).setInputFiles([
      { name: 'photo.png', mimeType: 'image/png', buffer: png },
      {
        name: `a-document-with-a-very-long-name-${'x'.repeat(80)}.txt`,
        mimeType: 'text/plain',
        buffer: Buffer.from(DOC_TEXT),
      },
    ]);
    await until(
      async () =>
        (await chips(page)
          .getByRole('button', { name: /Remove/ })
          .count()) === 2,
      'uploads',
    );
    await imageShown(page);
    const sideways = await scrollsSideways(page);
    await h.shot(page, 'chat-attachments-phone');
    assert.equal(sideways, false, 'the page scrolls sideways');
    const send = page.getByRole('button', { name: 'Send' });
    const box = (await send.boundingBox())!;
    assert.ok(box.x >= 0 && box.x + box.width <= PHONE.width, 'Send stays on screen');
    await assertAxeLightAndDark(page, 'phone');
    assert.deepEqual(errorsOf('phone'), []);
    await page.context().close();
  });
});
