// The usage page's cost chart (issue 23 #11): its y-axis labels were clipped ("000015" for 0.000015) and
// rounded to "0". uPlot draws them on a canvas, so the page's fillText calls are recorded (an init script,
// injected through DevTools: the console's CSP does not apply to it) and each label is checked whole inside
// the canvas, in full decimals, at desktop and phone widths.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { ADMIN, DESKTOP, PHONE, skipBrowser, until, useHarness } from './harness.js';

interface Label {
  text: string;
  left: number;
  right: number;
  canvasWidth: number;
}

/** Wraps fillText: every text drawn on a canvas is recorded on it with where it starts and ends, in pixels. */
const RECORD_LABELS = `(() => {
  const fill = CanvasRenderingContext2D.prototype.fillText;
  CanvasRenderingContext2D.prototype.fillText = function (text, x, y, ...rest) {
    const t = this.getTransform();
    const width = this.measureText(String(text)).width * t.a;
    const at = t.a * x + t.e;
    const align = this.textAlign;
    const left = align === 'right' || align === 'end' ? at - width : align === 'center' ? at - width / 2 : at;
    (this.canvas.__labels ??= []).push({ text: String(text), left, right: left + width, canvasWidth: this.canvas.width });
    return fill.call(this, text, x, y, ...rest);
  };
})()`;

describe('console: the usage cost axis', { skip: skipBrowser }, () => {
  const h = useHarness();

  before(async () => {
    const token = await h.login(ADMIN);
    // One small request: a cost of a fraction of a cent (gpt-4o-mini's price), the case that was clipped.
    assert.equal((await h.chat(token)).status, 200);
  });

  for (const [name, viewport] of [
    ['desktop', DESKTOP],
    ['phone', PHONE],
  ] as const) {
    it(`shows whole cost labels in full decimals (${name})`, async () => {
      const page = await h.newPage(viewport, `usage-axis-${name}`);
      await page.addInitScript(RECORD_LABELS);
      await h.signIn(page, ADMIN, '#/usage');
      const canvas = page.locator('figure.chart', { hasText: 'Cost' }).locator('canvas');
      const labels = () => canvas.evaluate((c) => (c as unknown as { __labels?: Label[] }).__labels ?? []);
      // The y labels are decimals (the x labels are dates): wait until the cost axis is drawn.
      await until(async () => (await labels()).some((l) => /^0\.0+[1-9]/.test(l.text)), 'the cost labels');
      const costs = (await labels()).filter((l) => /^[\d.,]+$/.test(l.text));
      assert.ok(costs.length >= 2, JSON.stringify(costs));
      for (const l of costs) {
        assert.ok(
          l.left >= 0 && l.right <= l.canvasWidth,
          `"${l.text}" is drawn whole (from ${l.left.toFixed(1)} to ${l.right.toFixed(1)} px)`,
        );
        assert.doesNotMatch(l.text, /e-/, 'no exponent');
      }
      // Distinct values, not all rounded to the same "0".
      assert.ok(new Set(costs.map((l) => l.text)).size >= 2, JSON.stringify(costs));
      await h.shot(page, `usage-cost-axis-${name}`);
      assert.deepEqual(
        h.consoleErrors.filter((e) => e.startsWith(`usage-axis-${name}:`)),
        [],
      );
      await page.context().close();
    });
  }
});
