// The page's runs (src/model.js over the tools component, as src/worker.js makes them) against
// `tlsfallback simulate --json`: every preset with the built-in engine in one call, and stepped
// with the policy component as a loaded component is; and every decision the page shows against
// `tlsfallback decide`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OUTCOMES, comparable, viewOf } from '../src/model.js';
import { cli, nodeModel } from './support.mjs';

const { model, kit, contract, policyEngine } = await nodeModel();

/** The run of `scenario` stepped with the policy component, as the page steps a loaded one. */
function stepped(scenario) {
  const decider = new policyEngine.Decider(kit.wire.policy(scenario.policy));
  return model.runStepped(scenario, (r) => decider.decide(r.context, r.history, r.last, r.now));
}

for (const preset of Object.keys(model.presets)) {
  // flaky-network also holds the seeded resets: the component rolls them, as the CLI does.
  test(`preset ${preset}: the page's run is the CLI's simulation (tries, reasons, totals, backoff, blocks)`, () => {
    const scenario = model.defaultScenario(model.presets[preset].peer());
    const theirs = JSON.parse(cli(['simulate', '--preset', preset, '--days', '30', '--json']));
    const builtIn = comparable(preset, scenario, model.runBuiltIn(scenario));
    assert.deepEqual(builtIn.summary, theirs.summary);
    assert.equal(builtIn.deliveries.length, theirs.deliveries.length);
    assert.deepEqual(builtIn, theirs);
    assert.deepEqual(comparable(preset, scenario, stepped(scenario)), theirs);
  });
}

test('the backoff set in the page is the one the CLI simulates with', () => {
  const scenario = { ...model.defaultScenario(model.presets['stripping-attacker'].peer()), days: 8, backoff: { minimalSecs: 900, maximalSecs: 7200 } };
  const theirs = JSON.parse(cli(['simulate', '--preset', 'stripping-attacker', '--days', '8', '--minimal-backoff', '900',
    '--maximal-backoff', '7200', '--json']));
  assert.deepEqual(comparable('stripping-attacker', scenario, model.runBuiltIn(scenario)), theirs);
});

test('every request of a run, replayed through `tlsfallback decide`, gets the response the page shows', () => {
  const scenario = model.defaultScenario(model.presets.upgrading.peer(), { pin_duration_secs: 86400, step_down_delay_secs: 30 });
  for (const run of [model.runBuiltIn(scenario), stepped(scenario)]) {
    const steps = viewOf(run).all().flatMap((d) => d.steps);
    const answers = cli(['decide'], steps.map((s) => JSON.stringify(s.request)).join('\n')).trim().split('\n');
    assert.equal(answers.length, steps.length);
    steps.forEach((step, i) => assert.deepEqual(JSON.parse(answers[i]), step.response, `step ${i}`));
  }
});

test('the page\'s outcome names are WIT outcomes, and its case lists are the contract\'s', () => {
  for (const [name, outcome] of Object.entries(OUTCOMES)) {
    assert.deepEqual(kit.wire.outcomeOf(kit.wire.outcome(outcome)), outcome, name);
  }
  const { enums } = contract.wit;
  assert.deepEqual([...model.tiers], enums.tier);
  assert.deepEqual([...model.profiles], enums.profile);
  assert.deepEqual([...model.dane], enums.dane);
  assert.deepEqual([...model.mtaSts], enums['mta-sts']);
  // A page name for an outcome the WIT lacks is refused with its name, not passed on.
  assert.throws(() => kit.wire.outcome({ outcome: 'tls-alert', alert: 'bad-vibes' }), /bad-vibes/);
});

test('a built-in run lifts any range of tries on its own, with the requests the whole run shows', () => {
  const scenario = { ...model.defaultScenario(model.presets['flaky-network'].peer()), days: 10 };
  const whole = viewOf(model.runStepped(scenario, (() => {
    const decider = new policyEngine.Decider(kit.wire.policy(scenario.policy));
    return (r) => decider.decide(r.context, r.history, r.last, r.now);
  })())).all();
  // A fresh run read from the middle first: the try before the range gives its first history.
  const lazy = model.runBuiltIn(scenario);
  assert.equal(lazy.tries, whole.length);
  assert.deepEqual(lazy.range(17, 5), whole.slice(17, 22));
  assert.deepEqual(lazy.delivery(16), whole[16]);
  assert.deepEqual(lazy.range(0, 3), whole.slice(0, 3));
  assert.deepEqual(lazy.all(), whole);
  const [first, count] = lazy.between(scenario.start + 2 * 86400, scenario.start + 3 * 86400);
  assert.deepEqual([first, count], viewOf({ deliveries: whole }).between(scenario.start + 2 * 86400, scenario.start + 3 * 86400));
  assert.ok(count > 0);
  lazy.dispose();
});
