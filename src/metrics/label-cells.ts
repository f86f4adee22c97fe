import { createRequire } from 'node:module';
import type { Counter, Histogram } from 'prom-client';

/*
 * prom-client 15 turns the labels object of every `inc`/`observe` into a string key (concatenated per label)
 * and validates it, and a histogram's `observe` makes a closure and two objects besides: ~2 KiB of garbage
 * per /v1 request for its 6–7 observations (sampling heap profile, issue 26), and pre-bound `labels()`
 * children hash just the same. A series' values live in one object of the metric's `hashMap`, which
 * prom-client itself mutates in place; so the first observation of a series goes through the public API
 * (validation, the entry's creation) and later ones find that entry by its label values through nested
 * Maps (no string built) and add to it as prom-client would. The entry is checked to still be the metric's
 * (`reset()` and `remove()` replace or drop it) before every use.
 */

const require = createRequire(import.meta.url);
const { hashObject } = require('prom-client/lib/util.js') as {
  hashObject(labels: Record<string, string>, names: readonly string[]): string;
};

interface Internals<E> {
  hashMap: Record<string, E | undefined>;
  sortedLabelNames: readonly string[];
}

interface Cell<E> {
  hash: string;
  entry: E;
}

type Tree<E> = Map<string, Tree<E> | Cell<E>>;

/** One metric's series by label values, in the order of `names` (at most five). */
class Cells<E> {
  readonly #root: Tree<E> = new Map();
  /** A metric with exemplars keeps them beside its values: it always goes through prom-client. */
  readonly #direct: boolean;

  constructor(
    private readonly metric: Internals<E>,
    readonly names: readonly string[],
  ) {
    if (names.length === 0 || names.length > 5) throw new Error('label cells take one to five labels');
    this.#direct = (metric as { enableExemplars?: boolean }).enableExemplars !== true;
  }

  /** The live entry of a series, or undefined when it has none yet (or prom-client replaced it). */
  find(a: string, b?: string, c?: string, d?: string, e?: string): E | undefined {
    if (!this.#direct) return undefined;
    let node: Tree<E> | Cell<E> | undefined = this.#root.get(a);
    const depth = this.names.length;
    if (depth > 1) node = (node as Tree<E> | undefined)?.get(b as string);
    if (depth > 2) node = (node as Tree<E> | undefined)?.get(c as string);
    if (depth > 3) node = (node as Tree<E> | undefined)?.get(d as string);
    if (depth > 4) node = (node as Tree<E> | undefined)?.get(e as string);
    const cell = node as Cell<E> | undefined;
    if (!cell || this.metric.hashMap[cell.hash] !== cell.entry) return undefined;
    return cell.entry;
  }

  /** The labels object of a series, for the public API. */
  labels(a: string, b?: string, c?: string, d?: string, e?: string): Record<string, string> {
    const values = [a, b, c, d, e];
    const labels: Record<string, string> = {};
    this.names.forEach((name, i) => {
      labels[name] = values[i] as string;
    });
    return labels;
  }

  /** Remembers the entry prom-client now holds for the series (after an observation through its API). */
  remember(labels: Record<string, string>) {
    const hash = hashObject(labels, this.metric.sortedLabelNames);
    const entry = this.metric.hashMap[hash];
    if (!entry) return;
    let tree = this.#root;
    const last = this.names.length - 1;
    for (let i = 0; i < last; i++) {
      const key = labels[this.names[i] as string] as string;
      let next = tree.get(key) as Tree<E> | undefined;
      if (!next) {
        next = new Map();
        tree.set(key, next);
      }
      tree = next;
    }
    tree.set(labels[this.names[last] as string] as string, { hash, entry });
  }
}

/** A counter's series by label values: `inc(value, …values)` in the order of `names`. */
export class CounterCells extends Cells<{ value: number }> {
  constructor(
    private readonly counter: Counter<string>,
    names: readonly string[],
  ) {
    super(counter as unknown as Internals<{ value: number }>, names);
  }

  inc(value: number, a: string, b?: string, c?: string, d?: string, e?: string) {
    const entry = Number.isFinite(value) && value >= 0 ? this.find(a, b, c, d, e) : undefined;
    if (entry) {
      entry.value += value;
      return;
    }
    const labels = this.labels(a, b, c, d, e);
    this.counter.inc(labels, value);
    this.remember(labels);
  }
}

interface HistogramEntry {
  bucketValues: Record<number, number>;
  sum: number;
  count: number;
}

/** A histogram's series by label values: `observe(value, …values)` in the order of `names`. */
export class HistogramCells extends Cells<HistogramEntry> {
  readonly #bounds: readonly number[];

  constructor(
    private readonly histogram: Histogram<string>,
    names: readonly string[],
  ) {
    super(histogram as unknown as Internals<HistogramEntry>, names);
    this.#bounds = (histogram as unknown as { upperBounds: readonly number[] }).upperBounds;
  }

  observe(value: number, a: string, b?: string, c?: string, d?: string, e?: string) {
    const entry = Number.isFinite(value) ? this.find(a, b, c, d, e) : undefined;
    if (entry) {
      // As prom-client's observe: the first bound at or above the value; above the last, +Inf only.
      let bound = -1;
      const bounds = this.#bounds;
      for (let i = 0; i < bounds.length; i++) {
        if (value <= (bounds[i] as number)) {
          bound = bounds[i] as number;
          break;
        }
      }
      entry.sum += value;
      entry.count += 1;
      if (Object.hasOwn(entry.bucketValues, bound)) entry.bucketValues[bound]! += 1;
      return;
    }
    const labels = this.labels(a, b, c, d, e);
    this.histogram.observe(labels, value);
    this.remember(labels);
  }
}
