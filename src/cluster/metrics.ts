import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';

/** One registry's metrics as JSON (what getMetricsAsJSON resolves to). */
type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

/**
 * One /metrics for every worker of `serve` (WORKERS > 1). The worker a scrape lands on asks the primary;
 * the primary asks every worker for its registry as JSON (each refreshes its read-on-scrape gauges first),
 * adds its own (live workers, restarts) and aggregates them with prom-client's AggregatorRegistry: counters
 * and histograms are summed, gauges by the `aggregator` each declares (sum unless said otherwise).
 */
const SCRAPE = 'colloquy:metrics-scrape'; // worker → primary: the aggregated text, please
const SCRAPED = 'colloquy:metrics-scraped'; // primary → worker
const COLLECT = 'colloquy:metrics-collect'; // primary → each worker: your registry as JSON
const COLLECTED = 'colloquy:metrics-collected'; // worker → primary

/** A worker that has not answered by then is left out of that scrape (it is exiting or stuck). */
const COLLECT_TIMEOUT_MS = 3_000;
const SCRAPE_TIMEOUT_MS = 5_000;

interface Message {
  type?: string;
  id?: number;
  text?: string;
  error?: string;
  metrics?: MetricsJson;
}

/** True in a worker process of a clustered `serve`: /metrics then answers for every worker. */
export const isClusterWorker = () => cluster.isWorker && typeof process.send === 'function';

/** Worker side: answers the primary's collect requests. Returns the function that stops answering. */
export function answerMetricsCollection(registry: Registry, beforeScrape?: () => Promise<void> | void) {
  const onMessage = (message: Message) => {
    if (message?.type !== COLLECT) return;
    Promise.resolve(beforeScrape?.())
      .then(() => registry.getMetricsAsJSON())
      .then(
        (metrics) => process.send?.({ type: COLLECTED, id: message.id, metrics }),
        (err: Error) => process.send?.({ type: COLLECTED, id: message.id, error: err.message }),
      );
  };
  process.on('message', onMessage);
  return () => {
    process.off('message', onMessage);
  };
}

let scrapes = 0;
/** Worker side: the metrics of every worker, aggregated by the primary (rejects if it does not answer). */
export function scrapeCluster(): Promise<string> {
  const id = ++scrapes;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => done(new Error('the primary did not answer with the workers’ metrics')),
      SCRAPE_TIMEOUT_MS,
    );
    const onMessage = (message: Message) => {
      if (message?.type !== SCRAPED || message.id !== id) return;
      done(message.error ? new Error(message.error) : undefined, message.text);
    };
    function done(err?: Error, text?: string) {
      clearTimeout(timer);
      process.off('message', onMessage);
      if (err) reject(err);
      else resolve(text ?? '');
    }
    process.on('message', onMessage);
    process.send?.({ type: SCRAPE, id });
  });
}

/** Primary side: answers workers' scrapes with every worker's metrics plus `own` (the supervisor's). */
export function aggregateWorkerMetrics(own: Registry): () => void {
  let collections = 0;
  const waiting = new Map<number, (metrics: MetricsJson | undefined) => void>();

  const collectFrom = (worker: Worker): Promise<MetricsJson | undefined> => {
    const id = ++collections;
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(undefined), COLLECT_TIMEOUT_MS);
      const finish = (metrics: MetricsJson | undefined) => {
        clearTimeout(timer);
        waiting.delete(id);
        resolve(metrics);
      };
      waiting.set(id, finish);
      try {
        worker.send({ type: COLLECT, id });
      } catch {
        finish(undefined);
      }
    });
  };

  const onMessage = (worker: Worker, message: Message) => {
    if (message?.type === COLLECTED && message.id !== undefined) {
      waiting.get(message.id)?.(message.error ? undefined : message.metrics);
      return;
    }
    if (message?.type !== SCRAPE) return;
    const live = Object.values(cluster.workers ?? {}).filter((w): w is Worker => Boolean(w?.isConnected()));
    Promise.all([...live.map(collectFrom), own.getMetricsAsJSON()])
      .then((all) =>
        AggregatorRegistry.aggregate(all.filter((m): m is MetricsJson => Array.isArray(m))).metrics(),
      )
      .then(
        (text) => worker.isConnected() && worker.send({ type: SCRAPED, id: message.id, text }),
        (err: Error) =>
          worker.isConnected() && worker.send({ type: SCRAPED, id: message.id, error: err.message }),
      );
  };
  cluster.on('message', onMessage);
  return () => {
    cluster.off('message', onMessage);
  };
}
