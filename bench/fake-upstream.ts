/**
 * The fake OpenAI-compatible upstream of test/fake-upstream/server.ts in a process of its own, so it does
 * not share an event loop with the load generator. Prints one JSON line `{"url","baseUrl","pid"}` once
 * listening, then serves until SIGTERM.
 *
 *   node --import tsx bench/fake-upstream.ts --port 0 --reply-words 20 --words-per-chunk 1 \
 *     --first-token-delay-ms 0 --chunk-interval-ms 0 --api-key sk-…
 */
import { parseArgs } from 'node:util';
import { startFakeUpstream } from '../test/fake-upstream/server.js';
import { benchReply } from './lib.js';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    'reply-words': { type: 'string', default: '20' },
    'words-per-chunk': { type: 'string', default: '1' },
    'first-token-delay-ms': { type: 'string', default: '0' },
    'chunk-interval-ms': { type: 'string', default: '0' },
    'api-key': { type: 'string' },
  },
});

const upstream = await startFakeUpstream(
  {
    reply: benchReply(Number(values['reply-words'])),
    wordsPerChunk: Number(values['words-per-chunk']),
    firstTokenDelayMs: Number(values['first-token-delay-ms']),
    chunkIntervalMs: Number(values['chunk-interval-ms']),
    ...(values['api-key'] ? { apiKey: values['api-key'] } : {}),
  },
  Number(values.port),
);
// The fake keeps every request for inspection: a benchmark sends millions, so drop them as they come.
setInterval(() => {
  upstream.requests.length = 0;
}, 1_000).unref();
process.stdout.write(
  `${JSON.stringify({ url: upstream.url, baseUrl: upstream.baseUrl, pid: process.pid })}\n`,
);
const stop = () => {
  upstream.close().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
