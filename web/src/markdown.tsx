import DOMPurify from 'dompurify';
import { Marked } from 'marked';
import { memo, useEffect, useRef } from 'react';

const marked = new Marked({ gfm: true, breaks: true, async: false });

// Model output is untrusted: Markdown is rendered to HTML, then DOMPurify removes anything active
// (scripts, event handlers, javascript: URLs, styles, forms). The CSP (script-src 'self') backs this up.
export function renderMarkdown(text: string): string {
  const html = marked.parse(text) as string;
  return DOMPurify.sanitize(html, {
    USE_PROFILES: { html: true },
    FORBID_TAGS: ['style', 'form', 'input', 'button', 'textarea', 'select', 'iframe', 'img'],
    FORBID_ATTR: ['style'],
  });
}

/**
 * Memoised on the text: while a reply streams the thread re-renders per chunk, and only the growing
 * reply may be parsed and sanitised again (every finished message is rendered once).
 */
export const Markdown = memo(function Markdown({ text }: { text: string }) {
  const ref = useRef<HTMLDivElement>(null);
  // A Copy button on each code block. DOMPurify forbids buttons in the HTML (model output): these are
  // added here, after each render (React replaces the HTML when the text grows).
  useEffect(() => {
    for (const pre of ref.current?.querySelectorAll('pre') ?? []) {
      if (pre.querySelector(':scope > button.copy')) continue;
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'copy';
      button.textContent = 'Copy';
      button.setAttribute('aria-label', 'Copy code');
      button.addEventListener('click', () =>
        copyText((pre.querySelector('code') ?? pre).textContent ?? '', button),
      );
      pre.prepend(button);
    }
    const blocks = [...(ref.current?.querySelectorAll<HTMLElement>('pre > code[class*="language-"]') ?? [])];
    if (blocks.length) void highlightBlocks(blocks);
  }); // after every render: memo renders this only when the text changed
  // biome-ignore lint/security/noDangerouslySetInnerHtml: sanitised by DOMPurify just above
  return <div ref={ref} className="md" dangerouslySetInnerHTML={{ __html: renderMarkdown(text) }} />;
});

// highlight.js and its languages load with the first code block that names a language (a chunk of its own).
let highlighter: Promise<typeof import('./highlight')> | null = null;

/** Colours fenced code blocks of a known language; the others stay plain. */
async function highlightBlocks(blocks: HTMLElement[]) {
  highlighter ??= import('./highlight');
  let module: typeof import('./highlight');
  try {
    module = await highlighter;
  } catch {
    highlighter = null; // a failed load (a new deployment's chunk names) is tried again next time
    return;
  }
  for (const code of blocks) {
    // React replaces the HTML when the text changes: a block gone meanwhile, or done already, is left alone.
    if (!code.isConnected || code.dataset.highlighted) continue;
    const language = /(?:^|\s)language-([\w+#.-]+)/.exec(code.className)?.[1]?.toLowerCase();
    const html = language ? module.highlight(code.textContent ?? '', language) : null;
    code.dataset.highlighted = html ? 'yes' : 'no';
    if (html) code.innerHTML = html;
  }
}

/** Copies `text`; the button says "Copied" (or why not) for two seconds, announced by screen readers. */
export async function copyText(text: string, button: HTMLElement) {
  const label = button.textContent;
  button.setAttribute('aria-live', 'polite');
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = 'Copied';
  } catch {
    button.textContent = 'Copy failed';
  }
  setTimeout(() => {
    button.textContent = label;
  }, 2000);
}
