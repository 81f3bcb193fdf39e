// The page's URL form (src/state.js): every state survives a round trip; bad parameters are named.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultState, fromQuery, scenarioOf, toQuery } from '../src/state.js';
import { nodeModel } from './support.mjs';

const { model, contract } = await nodeModel();
const PRESETS = model.presets;
const defaults = defaultState(model, contract.default_policy);

test('the default state is the engine\'s default policy', () => {
  assert.deepEqual(scenarioOf(defaults).policy, contract.default_policy);
});

test('every preset, with every control changed, survives the URL', () => {
  for (const preset of [...Object.keys(PRESETS), 'custom']) {
    const state = structuredClone(defaults);
    state.preset = preset;
    state.peer = preset === 'custom' ? PRESETS.modern.peer() : PRESETS[preset].peer();
    if (preset === 'custom') {
      state.peer.behaviour['modern-tls'] = 'handshake-timeout';
      state.peer.change = { day: 12, behaviour: { ...state.peer.behaviour, cleartext: 'connect-failed' }, attacker: true };
      state.peer.resetPercent = 7;
    }
    Object.assign(state.peer.context, { dane: 'unusable', mtaSts: 'testing', requiretls: true, tlsRequiredNo: true, sasl: true });
    Object.assign(state.policy, {
      profile: 'browser-style', allow_legacy_tls: false, allow_cleartext: false, step_down_delay_secs: 17,
      reprobe_interval_secs: 43200, pin_duration_secs: 0, transient_failure_threshold: 9, retry_after_secs: 600,
    });
    Object.assign(state, {
      days: 90, messagesPerDay: 24, queueLifetimeDays: 3, backoff: { minimalSecs: 60, maximalSecs: 600 }, seed: 42, view: { from: 2.5, to: 4 },
    });
    const { state: read, problems } = fromQuery(model, toQuery(model, state), defaults);
    assert.deepEqual(problems, []);
    assert.deepEqual(read, state, preset);
  }
});

test('a parameter that is present but wrong is reported and left at its default', () => {
  const { state, problems } = fromQuery(model, '?profile=yolo&days=0&legacy=yes&peer=a,b&preset=stripping-attacker&change_day=5&view=4-2', defaults);
  assert.deepEqual(problems, [
    'peer=a,b is not understood; kept peer at its default',
    'profile=yolo is not understood; kept profile at its default',
    'legacy=yes is not understood; kept legacy at its default',
    'days=0 is not understood; kept days at its default',
    'view=4-2 is not understood; kept view at its default',
  ]);
  assert.equal(state.policy.profile, defaults.policy.profile);
  assert.equal(state.peer.change.day, 5);
  assert.equal(state.peer.change.attacker, true);
});

test('a backoff whose maximum is below its minimum is named and both are kept at their defaults', () => {
  const { state, problems } = fromQuery(model, '?min_backoff=900&max_backoff=300', defaults);
  assert.deepEqual(problems, ['max_backoff=300 is below min_backoff=900; kept both at their defaults']);
  assert.deepEqual(state.backoff, defaults.backoff);
  assert.deepEqual(defaults.backoff, { minimalSecs: 300, maximalSecs: 4000 });
  assert.deepEqual(fromQuery(model, '?min_backoff=0', defaults).problems, ['min_backoff=0 is not understood; kept min_backoff at its default']);
});
