// The page's simulator (src/simulate.js) against `tlsfallback simulate --json`: every preset, and
// every decision it asked for against `tlsfallback decide`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PRESETS, comparable, defaultScenario, simulate } from '../src/simulate.js';
import { cli, nodeEngine } from './support.mjs';

const engine = await nodeEngine();

function simulateWith(scenario) {
  return simulate(scenario, (request) => engine.decideJson(request));
}

for (const preset of Object.keys(PRESETS)) {
  // flaky-network also holds the seeded resets to policy-core's SplitMix64 roll.
  test(`preset ${preset}: the same tries, reasons and totals as the CLI's simulation`, () => {
    const scenario = defaultScenario(PRESETS[preset].peer());
    const ours = comparable(preset, scenario, simulateWith(scenario));
    // The CLI's backoff and blocks fields come from Rust only (test/tools.test.mjs checks them).
    const { backoff, blocks, ...theirs } = JSON.parse(cli(['simulate', '--preset', preset, '--days', '30', '--json']));
    assert.deepEqual(ours.summary, theirs.summary);
    assert.equal(ours.deliveries.length, theirs.deliveries.length);
    assert.deepEqual(ours, theirs);
  });
}

test('every request of a run, replayed through `tlsfallback decide`, gets the response the page shows', () => {
  const scenario = defaultScenario(PRESETS.upgrading.peer(), { pin_duration_secs: 86400, step_down_delay_secs: 30 });
  const run = simulateWith(scenario);
  const steps = run.deliveries.flatMap((d) => d.steps);
  const answers = cli(['decide'], steps.map((s) => JSON.stringify(s.request)).join('\n')).trim().split('\n');
  assert.equal(answers.length, steps.length);
  steps.forEach((step, i) => assert.deepEqual(JSON.parse(answers[i]), step.response, `step ${i}`));
});
