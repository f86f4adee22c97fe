/**
 * A sampling heap profile of a running server's traffic, objects collected by GC included (what a request
 * allocates, not what it keeps). Preload it, then send SIGUSR2 to start and again to stop and write:
 *   HEAP_PROFILE_OUT=/tmp/x.heapprofile node --import ./bench/heap-sample.mjs dist/main.js serve
 *   kill -USR2 <pid>; <load>; kill -USR2 <pid>
 *   node bench/heap-top.mjs /tmp/x.heapprofile <requests sent meanwhile> [top]
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';

const session = new Session();
session.connect();
let sampling = false;
process.on('SIGUSR2', () => {
  sampling = !sampling;
  if (sampling) {
    session.post('HeapProfiler.startSampling', {
      samplingInterval: 256,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
    return;
  }
  session.post('HeapProfiler.stopSampling', (err, result) => {
    if (err) return console.error(err);
    writeFileSync(process.env.HEAP_PROFILE_OUT ?? 'heap.heapprofile', JSON.stringify(result.profile));
  });
});
