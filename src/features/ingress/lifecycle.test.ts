import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { sendWritten } from './lifecycle.js';

test('sendWritten hands a response write made in a promise job to the socket at once, not on the next tick', async () => {
  const seen: { corked: number; afterCorked: number; pending: number }[] = [];
  const server = http.createServer((_req, res) => {
    void Promise.resolve().then(() => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: first\n\n');
      const corked = res.socket?.writableCorked ?? -1;
      sendWritten(res);
      seen.push({
        corked,
        afterCorked: res.socket?.writableCorked ?? -1,
        pending: res.socket?.writableLength ?? -1,
      });
      // A second call finds nothing corked; the tick's own uncork after it is harmless.
      sendWritten(res);
      setTimeout(() => res.end('data: [DONE]\n\n'), 5);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const answer = await fetch(`http://127.0.0.1:${port}/`);
    assert.equal(await answer.text(), 'data: first\n\ndata: [DONE]\n\n');
    assert.deepEqual(seen, [{ corked: 1, afterCorked: 0, pending: 0 }]);
  } finally {
    server.close();
  }
});
