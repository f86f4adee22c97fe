/**
 * The allocation sites of a sampling heap profile (bench/heap-sample.mjs), in bytes per request: by function
 * (self), then by package or file.   node bench/heap-top.mjs <file.heapprofile> <requests> [top]
 */
import { readFileSync } from 'node:fs';

const [file, requests, top = '40'] = process.argv.slice(2);
const profile = JSON.parse(readFileSync(file, 'utf8'));
const perRequest = (bytes) => (bytes / Number(requests)).toFixed(0).padStart(7);
const bySite = new Map();
const byOwner = new Map();
let total = 0;
const add = (map, key, bytes) => map.set(key, (map.get(key) ?? 0) + bytes);
(function walk(node) {
  const { functionName, url, lineNumber } = node.callFrame;
  const where = url.replace(/.*\/(node_modules|dist)\//, '$1/');
  add(bySite, `${functionName || '(anonymous)'} ${where}:${lineNumber + 1}`, node.selfSize);
  const owner = url.startsWith('node:')
    ? 'node:'
    : url.includes('node_modules/')
      ? url.split('node_modules/').pop().split('/')[0]
      : url.includes('/dist/')
        ? url.split('/dist/').pop()
        : url || '(native)';
  add(byOwner, owner, node.selfSize);
  total += node.selfSize;
  for (const child of node.children) walk(child);
})(profile.head);
const sorted = (map) => [...map].sort((a, b) => b[1] - a[1]).slice(0, Number(top));
console.log(`${(total / Number(requests) / 1024).toFixed(1)} KiB a request (${requests} requests)`);
console.log('--- by function (self, bytes a request)');
for (const [site, bytes] of sorted(bySite)) console.log(perRequest(bytes), site);
console.log('--- by package or file');
for (const [owner, bytes] of sorted(byOwner)) console.log(perRequest(bytes), owner);
