// The tools component (bindings/tools: policy-core's simulator, presets and history decoder,
// transpiled by jco into vendor/tools/) against `tlsfallback simulate --json`: the page's
// simulation is the CLI's Rust code, so the two must print the same object for every preset.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { cli } from './support.mjs';

const dir = new URL('../vendor/tools/', import.meta.url);
const { instantiate } = await import(new URL('policy_tools.js', dir));
const component = await instantiate((name) => WebAssembly.compile(readFileSync(new URL(name, dir))), {});
const { tools, engine } = component;
const contract = JSON.parse(readFileSync(new URL('../vendor/kit/contract.json', import.meta.url), 'utf8'));
const camel = (key) => key.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
/** The contract's default policy as the WIT record jco expects. */
const POLICY = Object.fromEntries(Object.entries(contract.default_policy).map(([k, v]) => [camel(k), v]));
const TIERS = ['cleartext', 'legacy-tls', 'modern-tls', 'authenticated-tls'];
const DAY = 86400;

function scenarioOf(peer, days = 30, messagesPerDay = 4) {
  return {
    peer, policy: POLICY, start: 1767225600n, days, messagesPerDay, queueLifetimeSecs: BigInt(5 * DAY),
    backoff: tools.defaultBackoff(), seed: 0x5eedn,
  };
}

/** The object `tlsfallback simulate --json` prints, from the component's timeline. */
function comparable(preset, scenario, t) {
  const s = t.summary;
  return {
    preset,
    days: scenario.days,
    messages_per_day: scenario.messagesPerDay,
    backoff: { minimal_secs: Number(scenario.backoff.minimalSecs), maximal_secs: Number(scenario.backoff.maximalSecs) },
    summary: {
      messages: s.messages,
      delivered_by_tier: Object.fromEntries(TIERS.map((tier, i) => [tier, s.deliveredByTier[i]])),
      deferrals: s.deferrals,
      bounces: s.bounces,
      expired: s.expired,
      attempts: s.attempts,
      failed_attempts: s.failedAttempts,
      fallback_delay_secs: Number(s.fallbackDelaySecs),
      cleartext_to_attacker: s.cleartextToAttacker,
      refused_to_attacker: s.refusedToAttacker,
      still_queued: s.stillQueued,
    },
    deliveries: t.deliveries.map((d) => ({
      message: d.message,
      started_at: Number(d.startedAt),
      attacker_active: d.attackerActive,
      expired: d.expired,
      first_tier: d.firstTier ?? null,
      delivered_tier: d.deliveredTier ?? null,
      reasons: d.steps.map((step) => step.decision.reason),
    })),
    blocks: t.blocks.map((b) => ({ first: b.first, count: b.count, expired: b.expired })),
  };
}

const presets = tools.presets();

/** The whole run in full: the compact `run` and every one of its tries from `deliveries`. */
function fullRun(scenario) {
  const run = tools.run(scenario);
  return { ...run, deliveries: tools.deliveries(scenario, 0, run.tries) };
}

test('the component lists the CLI\'s presets with the CLI\'s descriptions', () => {
  const headers = cli(['simulate', '--days', '1', '--engine', 'native']).split('\n').filter((l) => l.startsWith('== '));
  assert.deepEqual(presets.map((p) => p.name), headers.map((l) => /^== ([a-z-]+):/.exec(l)[1]));
  presets.forEach((p, i) => assert.ok(headers[i].startsWith(`== ${p.name}: ${p.description} (`), headers[i]));
  assert.equal(tools.describePreset('upgrading', 12), 'speaks only TLS 1.0 until day 12, then TLS 1.3');
  assert.equal(tools.describePreset('sneaky', 3), undefined);
});

for (const { name, peer } of presets) {
  test(`preset ${name}: the component's run is the CLI's simulation, tries, reasons, totals and blocks`, () => {
    const scenario = scenarioOf(peer);
    const ours = comparable(name, scenario, fullRun(scenario));
    const theirs = JSON.parse(cli(['simulate', '--preset', name, '--days', '30', '--json']));
    assert.deepEqual(ours.summary, theirs.summary);
    assert.deepEqual(ours, theirs);
  });
}

test('stepping the simulation resource with an engine gives the whole run\'s timeline', () => {
  const scenario = scenarioOf(presets.find((p) => p.name === 'upgrading').peer, 14);
  const decider = new engine.Decider(POLICY);
  const simulation = tools.Simulation.start(scenario);
  let decisions = 0;
  for (let request = simulation.request(); request !== undefined; request = simulation.request()) {
    simulation.answer(decider.decide(request.context, request.history, request.last, request.now));
    decisions += 1;
  }
  const stepped = simulation.finish();
  assert.ok(decisions > 14 * 4);
  assert.deepEqual(comparable('upgrading', scenario, stepped), comparable('upgrading', scenario, fullRun(scenario)));
  assert.throws(() => simulation.finish(), (e) => e.payload?.tag === 'not-waiting');
});

test('the compact run counts the tries and decisions it leaves out, and deliveries gives any range of them', () => {
  const scenario = scenarioOf(presets.find((p) => p.name === 'stripping-attacker').peer, 20);
  const run = tools.run(scenario);
  assert.equal(run.deliveries, undefined);
  const all = tools.deliveries(scenario, 0, run.tries);
  assert.equal(all.length, run.tries);
  assert.equal(all.reduce((n, d) => n + d.steps.length, 0), run.decisions);
  assert.equal(run.blocks.reduce((n, b) => n + b.count, 0), run.tries);
  assert.deepEqual(tools.deliveries(scenario, 7, 5), all.slice(7, 12));
  // A range past the end is clamped to the run, not padded or refused.
  assert.deepEqual(tools.deliveries(scenario, run.tries - 2, 1000), all.slice(-2));
  assert.deepEqual(tools.deliveries(scenario, run.tries + 5, 3), []);
});

test('an inverted backoff is refused with its own error, not run with a default', () => {
  const scenario = { ...scenarioOf(presets[0].peer), backoff: { minimalSecs: 600n, maximalSecs: 300n } };
  assert.throws(() => tools.run(scenario), (e) => e.payload?.tag === 'inverted-backoff');
});

test('the component decodes the history the engine wrote', () => {
  const scenario = scenarioOf(presets.find((p) => p.name === 'stripping-attacker').peer, 6);
  const { finalHistory } = tools.run(scenario);
  const history = tools.decodeHistory(finalHistory);
  assert.equal(history.memory.lastSuccessTier, 'modern-tls');
  assert.ok(history.memory.seenTls);
  assert.ok(history.memory.pinnedUntil > 0n);
  assert.throws(() => tools.decodeHistory(new Uint8Array([])), (e) => e.payload?.tag === 'empty');
  assert.throws(() => tools.decodeHistory(new Uint8Array([9])), (e) => e.payload?.tag === 'unsupported-version');
});

test('a simulated run kept in the component gives the same summary and tries as `run` and `deliveries`', () => {
  const scenario = scenarioOf(presets.find((p) => p.name === 'stripping-attacker').peer, 20);
  const kept = tools.SimulatedRun.start(scenario);
  const run = tools.run(scenario);
  assert.deepEqual(kept.summary(), run);
  const all = tools.deliveries(scenario, 0, run.tries);
  assert.deepEqual(kept.deliveries(0, run.tries), all);
  assert.deepEqual(kept.deliveries(run.tries - 2, 1000), all.slice(-2));
  // The tries overlapping a span: consecutive, from the first that ends in it to the last that starts in it.
  const day = (n) => 1767225600n + BigInt(n * DAY);
  const [first, count] = kept.triesBetween(day(4), day(5));
  const expected = all.map((d, i) => [d, i]).filter(([d]) => d.endedAt >= day(4) && d.startedAt < day(5)).map(([, i]) => i);
  assert.deepEqual([first, count], [expected[0], expected.length]);
  assert.deepEqual(kept.triesBetween(day(40), day(41)), [run.tries, 0]);
  // One latency per delivered message: queued to delivered.
  const latencies = Array.from(kept.latencies());
  assert.equal(latencies.length, run.summary.deliveredByTier.reduce((a, b) => a + b, 0));
  assert.deepEqual(latencies, all.filter((d) => d.deliveredTier !== undefined).map((d) => d.endedAt - d.queuedAt));
  kept[Symbol.dispose]();
});
