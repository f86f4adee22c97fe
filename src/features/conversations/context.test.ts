import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { countPromptTokens, tokenCounts } from '../../providers/tokens.js';
import type { ChatMessage } from '../../providers/types.js';
import { MessageTree } from './branches.js';
import { contextWindowFor, DEFAULT_CONTEXT_WINDOW, fitToContext, replyReserve } from './context.js';
import { deriveTitle } from './title.js';

const words = (n: number, tag: string) => `${tag} ${'word '.repeat(n)}`.trim();

describe('context windows', () => {
  it('matches known models by their longest prefix, with a default for unknown ones', () => {
    assert.equal(contextWindowFor('gpt-4o-mini'), 128_000);
    assert.equal(contextWindowFor('gpt-4'), 8_192);
    assert.equal(contextWindowFor('gpt-4-turbo-2024-04-09'), 128_000);
    assert.equal(contextWindowFor('openai/gpt-4.1-mini'), 1_047_576);
    assert.equal(contextWindowFor('claude-sonnet-4'), 200_000);
    assert.equal(contextWindowFor('my-local-llama'), DEFAULT_CONTEXT_WINDOW);
    assert.equal(
      contextWindowFor('custom', () => 32_000),
      32_000,
    );
  });

  it('reserves max_tokens for the reply, or a default share of the window', () => {
    assert.equal(replyReserve(8192, 500), 500);
    assert.equal(replyReserve(8192, undefined), 1024);
    assert.equal(replyReserve(2048, null), 512);
  });
});

describe('fitToContext', () => {
  const history: ChatMessage[] = [
    { role: 'user', content: words(300, 'u1') },
    { role: 'assistant', content: words(300, 'a1') },
    { role: 'user', content: words(300, 'u2') },
    { role: 'assistant', content: words(300, 'a2') },
    { role: 'user', content: words(300, 'u3') },
  ];

  it('keeps everything that fits, and counts no tokens when its bytes already fit', async () => {
    const before = { ...tokenCounts() };
    const out = await fitToContext({ system: 'sys', history, window: 128_000, reserve: 1024 });
    assert.equal(out.dropped, 0);
    assert.equal(out.messages.length, 6);
    assert.deepEqual(tokenCounts(), before, 'the tokenizer was not asked');
  });

  it('keeps everything whose tokens fit though its bytes do not', async () => {
    const before = { ...tokenCounts() };
    const out = await fitToContext({ system: 'sys', history, window: 8192, reserve: 1024 });
    const after = tokenCounts();
    assert.equal(
      after.counted + after.cached,
      before.counted + before.cached + 6,
      'each message was counted',
    );
    assert.equal(out.dropped, 0);
    assert.equal(out.messages.length, 6);
    assert.ok((await countPromptTokens(out.messages)) <= 8192 - 1024);
  });

  it('drops the oldest first, keeps the system prompt, and starts on a user turn', async () => {
    const out = await fitToContext({ system: 'You are a test.', history, window: 1200, reserve: 200 });
    assert.deepEqual(out.messages[0], { role: 'system', content: 'You are a test.' });
    const tags = out.messages.slice(1).map((m) => String(m.content).split(' ')[0]);
    assert.deepEqual(tags, ['u2', 'a2', 'u3']);
    assert.equal(out.dropped, 2);
    assert.ok((await countPromptTokens(out.messages)) <= 1000);
  });

  it('skips an assistant turn left at the front after trimming', async () => {
    const out = await fitToContext({ system: null, history, window: 1000, reserve: 0 });
    const tags = out.messages.map((m) => String(m.content).split(' ')[0]);
    assert.equal(out.messages[0]!.role, 'user');
    assert.deepEqual(tags, ['u2', 'a2', 'u3']);
  });

  it('always keeps the newest message, even when it alone is too long', async () => {
    const out = await fitToContext({ system: 'sys', history, window: 100, reserve: 50 });
    assert.equal(out.messages.length, 2);
    assert.equal(String(out.messages[1]!.content).split(' ')[0], 'u3');
  });
});

describe('deriveTitle', () => {
  it('keeps short messages whole, collapsing whitespace', () => {
    assert.equal(deriveTitle('  Hello\n  there  '), 'Hello there');
    assert.equal(deriveTitle('   '), null);
  });

  it('cuts long messages at a word boundary to about 60 characters', () => {
    const title = deriveTitle(
      'Explain the difference between optimistic and pessimistic locking in databases, with examples',
    )!;
    assert.equal(title, 'Explain the difference between optimistic and pessimistic…');
    assert.ok(title.length <= 61);
  });

  it('cuts one very long word hard', () => {
    const title = deriveTitle('x'.repeat(200))!;
    assert.equal(title, `${'x'.repeat(60)}…`);
  });
});

describe('MessageTree', () => {
  const tree = new MessageTree([
    { id: 'm1', parent_id: null },
    { id: 'm2', parent_id: 'm1' },
    { id: 'm3', parent_id: 'm2' },
    { id: 'm4', parent_id: 'm1' },
    { id: 'm5', parent_id: 'm4' },
    { id: 'm6', parent_id: null },
  ]);

  it('walks a branch root to leaf', () => {
    assert.deepEqual(tree.pathTo('m3'), ['m1', 'm2', 'm3']);
    assert.deepEqual(tree.pathTo('m5'), ['m1', 'm4', 'm5']);
    assert.deepEqual(tree.pathTo('nope'), []);
  });

  it('finds the newest leaf under a message and the siblings of each', () => {
    assert.equal(tree.newestLeafUnder('m1'), 'm5');
    assert.equal(tree.newestLeafUnder('m2'), 'm3');
    assert.equal(tree.newestLeafUnder('m6'), 'm6');
    assert.deepEqual(tree.siblingsOf('m2'), ['m2', 'm4']);
    assert.deepEqual(tree.siblingsOf('m1'), ['m1', 'm6']);
    assert.deepEqual(tree.siblingsOf('m3'), ['m3']);
  });
});
