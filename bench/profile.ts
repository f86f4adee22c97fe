/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): top functions by self time.
 *   node --import tsx bench/profile.ts <file.cpuprofile> [top]
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

export interface SelfTime {
  fn: string;
  where: string;
  selfMs: number;
  selfPct: number;
}

export function summariseProfile(file: string, top = 25): SelfTime[] {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as {
    nodes: ProfileNode[];
    samples: number[];
    timeDeltas: number[];
  };
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<string, { fn: string; where: string; us: number }>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const node = byId.get(id);
    const dt = profile.timeDeltas[i] ?? 0;
    if (!node) return;
    total += dt;
    const f = node.callFrame;
    const where = f.url
      ? `${f.url.replace(/^file:\/\/.*?\/node_modules\//, 'node_modules/').replace(/^file:\/\/.*?\/dist\//, 'dist/')}:${f.lineNumber + 1}`
      : '';
    const key = `${f.functionName}|${where}`;
    const e = self.get(key) ?? { fn: f.functionName || '(anonymous)', where, us: 0 };
    e.us += dt;
    self.set(key, e);
  });
  // Shares of busy time: (idle) is the process waiting for work (e.g. while another arm was measured).
  const idle = [...self.values()].filter((e) => e.fn === '(idle)').reduce((a, e) => a + e.us, 0);
  const busy = total - idle;
  return [...self.values()]
    .filter((e) => e.fn !== '(idle)')
    .sort((a, b) => b.us - a.us)
    .slice(0, top)
    .map((e) => ({ fn: e.fn, where: e.where, selfMs: e.us / 1000, selfPct: busy ? (100 * e.us) / busy : 0 }));
}

/** Busy self time grouped by package (node_modules/<name>), Colloquy folder (dist/<dir>) or Node internals. */
export function summariseByPackage(file: string): { group: string; selfMs: number; selfPct: number }[] {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as {
    nodes: ProfileNode[];
    samples: number[];
    timeDeltas: number[];
  };
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const groups = new Map<string, number>();
  let busy = 0;
  profile.samples.forEach((id, i) => {
    const f = byId.get(id)?.callFrame;
    const dt = profile.timeDeltas[i] ?? 0;
    if (!f || f.functionName === '(idle)') return;
    busy += dt;
    let group: string;
    const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(f.url);
    const dist = /\/dist\/([^/]+)/.exec(f.url);
    if (nm) group = nm[1] as string;
    else if (dist) group = `colloquy dist/${dist[1]}`;
    else if (f.url.startsWith('node:')) group = 'node internals (JS)';
    else if (f.functionName.startsWith('(')) group = f.functionName;
    else group = 'native (no script)';
    groups.set(group, (groups.get(group) ?? 0) + dt);
  });
  return [...groups.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([group, us]) => ({ group, selfMs: us / 1000, selfPct: busy ? (100 * us) / busy : 0 }));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: bench/profile.ts <file.cpuprofile> [top]');
    process.exit(2);
  }
  console.log('top functions by self time (% of busy time):');
  for (const t of summariseProfile(file, Number(process.argv[3] ?? 25)))
    console.log(
      `${t.selfPct.toFixed(1).padStart(5)}%  ${t.selfMs.toFixed(0).padStart(7)} ms  ${t.fn}  ${t.where}`,
    );
  console.log('\nby package:');
  for (const g of summariseByPackage(file))
    console.log(`${g.selfPct.toFixed(1).padStart(5)}%  ${g.selfMs.toFixed(0).padStart(7)} ms  ${g.group}`);
}
