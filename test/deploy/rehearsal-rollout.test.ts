import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { type FakeUpstream, startFakeUpstream } from '../fake-upstream/server.js';
import { eventually } from './helpers.js';
import { runAnalysis, shippedAnalysis } from './rehearsal-analysis.js';
import {
  addressOf,
  assertRollingRestart,
  describeFailures,
  failures,
  inFlightOn,
  type Outcome,
  rollingRestart,
  sleep,
  steadyLoad,
} from './rehearsal-load.js';
import {
  NAMESPACE,
  RehearsalStack,
  type Replica,
  rehearsalSkip,
  startFaultyUpstream,
  type TurnResult,
  UPSTREAM_KEY,
  UPSTREAM_REPLY,
} from './rehearsal-stack.js';

/**
 * Production rehearsal, rollout half: three stable replicas on PostgreSQL + Redis behind the kit's nginx,
 * scraped by its Prometheus. Proves what an operator relies on when changing the fleet: a per-key rate
 * limit holds across replicas, `kill -9` costs only the requests in flight on the dead replica (and its
 * orphaned replies are swept on restart), a rolling restart under streaming load loses nothing, and the
 * shipped Argo canary analysis rolls back a faulty canary but not a healthy one.
 */
describe('production rehearsal: rate limits, kill -9, rolling restart and canary analysis across replicas', {
  skip: rehearsalSkip,
  timeout: 300_000,
}, () => {
  const stack = new RehearsalStack();
  let db: pg.Client;
  /** What step 2 leaves for the restart step: when the replica died and the replies it left streaming. */
  let killed: { replica: Replica; at: number; orphans: string[] } | undefined;

  const createConversation = async (title: string) => {
    const res = await stack.api('POST', '/api/conversations', { title });
    const body = (await res.body.json()) as { id: string };
    assert.equal(res.statusCode, 201, JSON.stringify(body));
    return body.id;
  };

  before(async () => {
    await stack.open({
      tracks: ['stable', 'stable', 'stable'],
      // Limits on, every default off: only the per-key override set in the rate-limit step applies
      // (the admin key used for background load is never limited).
      env: {
        RATE_LIMIT_ENABLED: 'true',
        RATE_LIMIT_PER_MINUTE: '0',
        RATE_LIMIT_PER_HOUR: '0',
        RATE_LIMIT_TOKENS_PER_MINUTE: '0',
        RATE_LIMIT_CONCURRENT_STREAMS: '0',
        RATE_LIMIT_IP_PER_MINUTE: '0',
      },
    });
    db = new pg.Client({ connectionString: stack.db.url });
    await db.connect();
  });

  after(async () => {
    await db?.end();
    await stack.close();
  });

  it('holds a per-key limit of 50 requests a minute across the three replicas; the rest get 429, Retry-After and rate_limited', async () => {
    const LIMIT = 50;
    const created = JSON.parse(
      await stack.cli(['keys', 'create', '--user', 'rehearsal@example.com', '--name', 'limited', '--json']),
    ) as { id: string; key: string };
    const set = await stack.api(
      'PUT',
      `/api/limits/key/${created.id}`,
      { limit: 'requests_per_minute', value: LIMIT },
      { authorization: `Bearer ${stack.adminKey}` },
    );
    assert.equal(set.statusCode, 204, await set.body.text());

    // 3× the limit at 40 requests/s, well inside one minute's window and under nginx's per-address
    // 50 r/s, so every refusal is Colloquy's.
    const statuses: { id: string; status: number; retryAfter: string; limit: string; code: string }[] = [];
    await Promise.all(
      Array.from({ length: LIMIT * 3 }, async (_, i) => {
        await sleep(i * 25);
        const id = `rate-limit-${i}`;
        const res = await stack.chat(
          { stream: false },
          { authorization: `Bearer ${created.key}`, 'x-request-id': id },
        );
        const body = (await res.body.json()) as { error?: { code: string } };
        statuses.push({
          id,
          status: res.statusCode,
          retryAfter: String(res.headers['retry-after'] ?? ''),
          limit: String(res.headers['x-ratelimit-limit'] ?? ''),
          code: body.error?.code ?? '',
        });
      }),
    );
    const accepted = statuses.filter((s) => s.status === 200);
    const refused = statuses.filter((s) => s.status === 429);
    assert.equal(statuses.length, LIMIT * 3);
    assert.ok(accepted.length <= Math.floor(LIMIT * 1.02), `${accepted.length} accepted, limit ${LIMIT}`);
    assert.ok(accepted.length >= LIMIT, `${accepted.length} accepted: the limit refused requests under it`);
    assert.equal(accepted.length + refused.length, statuses.length, 'every other answer is a 429');
    for (const r of refused) {
      assert.equal(r.code, 'rate_limited', `${r.id}: the machine-readable code`);
      assert.match(r.retryAfter, /^\d+$/, `${r.id}: Retry-After`);
      assert.ok(
        Number(r.retryAfter) >= 1 && Number(r.retryAfter) <= 60,
        `${r.id}: Retry-After ${r.retryAfter}`,
      );
      assert.equal(r.limit, String(LIMIT), `${r.id}: Colloquy's 429 (nginx's own has no X-RateLimit-Limit)`);
    }
    // nginx spread them over every replica, and each replica both served and refused: the count is shared.
    const log = await stack.accessLogOf(statuses.map((st) => st.id));
    const perReplica = new Map<string, { ok: number; refused: number }>();
    for (const s of statuses) {
      const upstream = log.get(s.id)?.upstream_addr ?? '?';
      const counts = perReplica.get(upstream) ?? { ok: 0, refused: 0 };
      if (s.status === 200) counts.ok++;
      else counts.refused++;
      perReplica.set(upstream, counts);
    }
    assert.deepEqual(
      [...perReplica.keys()].sort(),
      stack.replicas.map(addressOf).sort(),
      JSON.stringify([...perReplica]),
    );
    for (const [upstream, counts] of perReplica) {
      assert.ok(
        counts.ok > 0 && counts.refused > 0,
        `${upstream} served and refused: ${JSON.stringify(counts)}`,
      );
    }
  });

  it('kill -9 of a replica under load: errors only for requests in flight on it, none after, InstanceDown fires', async () => {
    const victim = stack.replicas[0]!;
    // Requests take ≥ 0.3 s (streams ≈ 1.3 s) so some are in flight on the victim when it dies.
    stack.fake.set({ firstTokenDelayMs: 300, chunkIntervalMs: 150 });
    const conversations = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => createConversation(`kill-${i}`)));
    const turns = new Map<string, string | undefined>();
    const load = steadyLoad('kill', 10, async (id, worker, n) => {
      if (worker < conversations.length) {
        const turn = await stack.sendMessage(conversations[worker]!, `message ${n}`, id);
        turns.set(id, turn.assistantMessageId);
        // A reply cut off stays 'streaming' until swept, and the conversation refuses new messages after
        // it (409 generation_in_progress): carry on in a new conversation, as the console would.
        if (turn.failure) conversations[worker] = await createConversation(`kill-${worker}-${n}`);
        return turn.failure;
      }
      const res = await stack.chat({ stream: false }, { 'x-request-id': id });
      const text = await res.body.text();
      return res.statusCode === 200 ? undefined : `${res.statusCode} ${text.slice(0, 200)}`;
    });
    await sleep(4000);
    // Two clients streaming straight from the victim (as if nginx had sent them there) when it dies, so
    // its replies certainly include some left 'streaming' in PostgreSQL.
    const direct = await Promise.all([0, 1].map((i) => createConversation(`kill-direct-${i}`)));
    const directTurns = direct.map((c, i) => stack.sendMessage(c, 'cut me off', `kill-direct-${i}`, victim));
    await sleep(700);
    const killedAt = Date.now();
    victim.proc!.child.kill('SIGKILL');
    await victim.proc!.exited;
    // The process takes a moment to die (longer on a busy machine): a request nginx forwarded in between is
    // as much in flight as one sent before the signal.
    const diedAt = Date.now();
    killed = { replica: victim, at: killedAt, orphans: [] };
    await sleep(4000);
    const outcomes = await load.stop();
    stack.fake.set({ firstTokenDelayMs: 0, chunkIntervalMs: 0 });

    // In flight on the victim at the kill: started before it died, ended after the signal, and nginx sent it
    // there first.
    const log = await stack.accessLogOf(outcomes.map((o) => o.id));
    const inFlight = inFlightOn(outcomes, log, victim, killedAt, diedAt);
    const failed = failures(outcomes);
    const unexplained = failed.filter((f) => !inFlight.includes(f));
    const afterKill = outcomes.filter((o) => o.start > diedAt);
    console.log(
      `# kill -9: ${outcomes.length} requests through nginx, ${inFlight.length} in flight on the victim, ` +
        `${failed.length} failed, ${afterKill.length} started after the kill (${failures(afterKill).length} failed)`,
    );
    assert.ok(inFlight.length > 0, 'requests were in flight on the victim when it was killed');
    assert.equal(
      unexplained.length,
      0,
      `errors beyond the in-flight requests:\n${describeFailures(unexplained)}`,
    );
    assert.ok(failed.length <= inFlight.length);
    assert.equal(failures(afterKill).length, 0, 'no error once the replica was dead');
    assert.ok(afterKill.length >= 20, `${afterKill.length} requests served after the kill`);

    // The replies it was streaming: those of the conversation turns in flight on it. Nothing on the victim
    // can finish them; a surviving replica takes each over once the victim's lease in Redis expires.
    const inFlightTurns = inFlight.filter((o) => turns.has(o.id));
    const cut = await Promise.all(directTurns);
    for (const turn of cut) {
      assert.ok(turn.failure, `${turn.requestId} was cut off`);
      assert.ok(turn.assistantMessageId, `${turn.requestId} had started its reply`);
      turns.set(turn.requestId, turn.assistantMessageId);
      inFlightTurns.push({ id: turn.requestId, start: 0, end: 0, failure: turn.failure });
    }
    killed.orphans = inFlightTurns.flatMap((o) => turns.get(o.id) ?? []);

    const alert = await eventually(
      async () =>
        (await stack.prom('/api/v1/alerts')).alerts.find(
          (a) =>
            a.labels.alertname === 'ColloquyInstanceDown' &&
            a.labels.instance === addressOf(victim) &&
            a.state === 'firing',
        ),
      'ColloquyInstanceDown firing for the killed replica',
      30_000,
    );
    assert.equal(alert.labels.severity, 'P2');
  });

  it('canary analysis: the shipped AnalysisTemplate passes a healthy canary and rolls back a faulty one', async () => {
    const stable = stack.replicas.filter((r) => r.track === 'stable' && r !== killed?.replica);
    const { template, rolloutArgs } = shippedAnalysis();
    // The Rollout's own arguments; the Prometheus address is the one argument a test has to give.
    const args = [...rolloutArgs, { name: 'prometheus-address', value: stack.promUrl }];
    const canaryUpstream: FakeUpstream = await startFakeUpstream({
      apiKey: UPSTREAM_KEY,
      reply: UPSTREAM_REPLY,
      models: ['gpt-4o-mini'],
    });
    const faulty = await startFaultyUpstream(canaryUpstream, 4);
    try {
      /** Traffic through nginx for `ms`: chat with varied prompts, and the model list (an API route). */
      const traffic = async (label: string, ms: number) => {
        const load = steadyLoad(label, 4, async (id, worker, n) => {
          const res =
            worker === 3
              ? await stack.api('GET', '/v1/models', undefined, { 'x-request-id': id })
              : await stack.chat(
                  {
                    stream: worker === 2,
                    messages: [{ role: 'user', content: `${label} prompt ${worker}.${n}` }],
                  },
                  { 'x-request-id': id },
                );
          const text = await res.body.text();
          await sleep(100); // ≈ 30 requests/s in all: under nginx's per-address limit
          return res.statusCode === 200 ? undefined : `${res.statusCode} ${text.slice(0, 120)}`;
        });
        await sleep(ms);
        const outcomes = await load.stop();
        // Two more scrapes, so Prometheus holds every request counted.
        await sleep(2500);
        const log = await stack.accessLogOf(outcomes.map((o) => o.id));
        return outcomes.map((o) => ({ ...o, upstream: log.get(o.id)?.upstream_addr ?? '?' }));
      };
      const deployCanary = async (env: Record<string, string>, previous?: Replica) => {
        const canary = await stack.addReplica('canary', env);
        await stack.startReplica(canary);
        if (previous) await stack.stop(previous.proc!);
        await stack.reconfigure([...stable, canary], [...stable, canary]);
        return canary;
      };

      // A healthy canary first: the template's [5m] windows would still hold a faulty run's errors.
      const healthy = await deployCanary({ OPENAI_BASE_URL: canaryUpstream.baseUrl });
      const healthyTraffic = await traffic('healthy', 12_000);
      const onHealthy = healthyTraffic.filter((o) => o.upstream === addressOf(healthy));
      assert.equal(failures(healthyTraffic).length, 0, describeFailures(healthyTraffic));
      assert.ok(
        onHealthy.length >= healthyTraffic.length * 0.15,
        `the canary got a slice: ${onHealthy.length} of ${healthyTraffic.length}`,
      );
      const pass = await runAnalysis(template, args);
      const report = (a: typeof pass) =>
        a.measurements.map((m) => `${m.metric}=${JSON.stringify(m.result)} ${m.phase}`).join('; ');
      console.log(`# canary analysis, healthy canary (${onHealthy.length} requests): ${report(pass)}`);
      for (const m of pass.measurements) assert.equal(m.phase, 'Successful', report(pass));
      assert.equal(pass.phase, 'Successful', 'no rollback for a healthy canary');
      // The template's error ratio is empty, not 0, when the canary answered no 5xx at all (its numerator
      // has no series): make sure the canary's requests were there to be measured.
      const measured = await stack.query(
        `sum(rate(colloquy_http_request_duration_seconds_count{namespace="${NAMESPACE}", track="canary", route!~"/health.*"}[1m]))`,
      );
      assert.ok(Number(measured[0]?.value[1]) > 0, 'Prometheus counted the canary’s requests');

      // The next canary fails one prompt in four: the same analysis must abort the rollout.
      const bad = await deployCanary({ OPENAI_BASE_URL: faulty.baseUrl }, healthy);
      const badTraffic = await traffic('faulty', 12_000);
      const onBad = badTraffic.filter((o) => o.upstream === addressOf(bad));
      const badFailures = failures(badTraffic);
      assert.ok(faulty.failed() > 0, 'the fault was injected');
      assert.ok(badFailures.length > 0, 'clients saw the canary’s errors');
      assert.deepEqual(
        [...new Set(badFailures.map((o) => o.upstream))],
        [addressOf(bad)],
        'only the canary failed requests',
      );
      const verdict = await runAnalysis(template, args);
      console.log(
        `# canary analysis, faulty canary (${badFailures.length} of ${onBad.length} requests failed): ${report(verdict)}`,
      );
      const badRatio = verdict.measurements.find((m) => m.metric === 'error-ratio')!;
      assert.equal(badRatio.phase, 'Failed', report(verdict));
      assert.ok((badRatio.result as number[])[0]! > 0.01, report(verdict));
      assert.equal(verdict.phase, 'Failed', 'the analysis fails: Argo aborts the rollout and rolls back');

      await stack.stop(bad.proc!);
      await stack.reconfigure(stable, stable);
    } finally {
      await faulty.close();
      await canaryUpstream.close();
    }
  });

  it("a surviving replica finishes the killed one's replies as interrupted; the killed replica rejoins", async () => {
    assert.ok(killed, 'the kill -9 step ran');
    const { replica, orphans } = killed;
    // Each running generation holds a 3 s lease in Redis; once the victim's expire, a surviving replica's
    // scan (every 2 s) saves each reply with what was streamed, marked interrupted (docs/conversations.md).
    const rows = await eventually(async () => {
      const { rows } = await db.query<{ id: string; status: string; error: string | null }>(
        'select id, status, error from messages where id = any($1)',
        [orphans],
      );
      return rows.length === orphans.length && rows.every((r) => r.status !== 'streaming') && rows;
    }, "the killed replica's replies to be taken over");
    for (const row of rows) {
      assert.ok(['partial', 'error'].includes(row.status), `${row.id}: ${row.status}`);
      assert.match(row.error ?? '', /^interrupted/, `${row.id} says why`);
    }
    const generations = await db.query<{ status: string }>(
      'select status from generations where message_id = any($1)',
      [orphans],
    );
    assert.ok(
      generations.rows.every((g) => g.status !== 'running'),
      generations.rows.map((g) => g.status).join(),
    );
    await stack.startReplica(replica);
    await stack.reconfigure(
      stack.replicas.filter((r) => r.track === 'stable'),
      stack.replicas.filter((r) => r.track === 'stable'),
    );
  });

  /** The rolling restart's client-side outcomes, once it has gone through every replica. */
  let rolling: Outcome[] | undefined;

  it('rolling restart (out of nginx, SIGTERM, restart, ready, back into nginx, next) under streaming load: every replica drains, no message is lost', async () => {
    const stable = stack.replicas.filter((r) => r.track === 'stable');
    // Streams of ≈ 3.7 s, 12 at a time: some begun before a replica's take-out are still in flight at its
    // SIGTERM, and finish inside SHUTDOWN_TIMEOUT (5 s).
    stack.fake.set({ firstTokenDelayMs: 100, chunkIntervalMs: 450 });
    const conversations = await Promise.all(
      [0, 1, 2, 3, 4, 5].map((i) => createConversation(`rolling-${i}`)),
    );
    // One more client per replica streams straight from it, begun just before its take-out (rollingRestart).
    const witnessConversations = await Promise.all(
      stable.map((_, i) => createConversation(`rolling-witness-${i}`)),
    );
    const turns: TurnResult[] = [];
    const load = steadyLoad('rolling', 12, async (id, worker, n) => {
      if (worker < conversations.length) {
        const turn = await stack.sendMessage(conversations[worker]!, `rolling message ${worker}.${n}`, id);
        turns.push(turn);
        return turn.failure;
      }
      const streamed = await stack.streamChat(id);
      return streamed.failure ?? (streamed.text === UPSTREAM_REPLY ? undefined : `text "${streamed.text}"`);
    });
    // As deploy/scripts/deploy replaces a replica, one after another (rehearsal-load.ts).
    let restart: Awaited<ReturnType<typeof rollingRestart>>;
    let outcomes: Outcome[] = [];
    try {
      await sleep(2000);
      restart = await rollingRestart(stack, stable, witnessConversations);
      await sleep(1500);
    } finally {
      outcomes = await load.stop();
      stack.fake.set({ firstTokenDelayMs: 0, chunkIntervalMs: 0 });
    }
    const { terms, witnesses } = restart;
    const log = await stack.accessLogOf(outcomes.map((o) => o.id));
    outcomes.push(...witnesses);
    turns.push(...witnesses.map((w) => w.turn));
    // Only a restart that went through every replica is judged by the next step.
    rolling = outcomes;
    const inFlightAt = terms.map(({ replica, at }) => inFlightOn(outcomes, log, replica, at).length);
    const acknowledged = turns.filter((t) => t.status === 200 && t.userMessageId);
    console.log(
      `# rolling restart: ${outcomes.length} streams (${turns.length} conversation turns, ${acknowledged.length} ` +
        `acknowledged), sent by nginx and in flight on each replica at its SIGTERM: ${inFlightAt.join(', ')} ` +
        `(and one witness each), ` +
        `failed: ${failures(outcomes).length}`,
    );
    assertRollingRestart(terms, witnesses, outcomes, log);
    assert.ok(
      inFlightAt.reduce((a, b) => a + b, 0) > 0,
      'streams nginx sent before a take-out were in flight at the SIGTERM',
    );
    assert.ok(outcomes.length >= 40, `${outcomes.length} streams`);
    // Nothing lost: every user message acknowledged (a 200 stream announcing it) is in PostgreSQL, and
    // its reply is complete with the whole text; no user message is stored that no client was told of.
    const userIds = acknowledged.map((t) => t.userMessageId!);
    const replyIds = acknowledged.map((t) => t.assistantMessageId);
    assert.ok(replyIds.every(Boolean), 'every acknowledged turn announced its reply');
    const users = await db.query("select id from messages where role = 'user' and id = any($1)", [userIds]);
    assert.equal(users.rowCount, userIds.length, 'every acknowledged user message is in PostgreSQL');
    const replies = await db.query<{ id: string; status: string; content: string }>(
      'select id, status, content from messages where id = any($1)',
      [replyIds],
    );
    assert.equal(replies.rowCount, replyIds.length);
    const incomplete = replies.rows.filter((r) => r.status !== 'complete' || r.content !== UPSTREAM_REPLY);
    assert.deepEqual(incomplete, [], 'every reply is complete with the whole text');
    const stored = await db.query<{ n: string }>(
      "select count(*) as n from messages where role = 'user' and conversation_id = any($1)",
      [[...conversations, ...witnessConversations]],
    );
    assert.equal(Number(stored.rows[0]!.n), acknowledged.length, 'no user message stored unannounced');
  });

  it('rolling restart: no client request fails', () => {
    assert.ok(rolling, 'the rolling restart ran');
    assert.equal(failures(rolling).length, 0, `failed:\n${describeFailures(rolling)}`);
  });
});
