// Bad input throws TypeError/RangeError naming the field; nothing is silently defaulted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PolicyEngine } from '../src/index.js';

const NOW = 1767225600;
const engine = new PolicyEngine();
const wire = (extra) => ({ peer: 'mx.example.net', now: NOW, history: null, last: null, ...extra });

const throwsField = (fn, Type, field) => assert.throws(fn, (error) => {
  assert.ok(error instanceof Type, `${error.constructor.name}: ${error.message}`);
  assert.ok(error.message.includes(field), `"${error.message}" should name ${field}`);
  return true;
});

test('constructor: unknown keys, wrong types, out of range', () => {
  throwsField(() => new PolicyEngine({ pinDuration: 5 }), TypeError, 'pinDuration');
  throwsField(() => new PolicyEngine({ profile: 'paranoid' }), RangeError, 'policy.profile');
  throwsField(() => new PolicyEngine({ allowCleartext: 'no' }), TypeError, 'policy.allowCleartext');
  throwsField(() => new PolicyEngine({ stepDownDelaySecs: -1 }), RangeError, 'policy.stepDownDelaySecs');
  throwsField(() => new PolicyEngine({ stepDownDelaySecs: 2 ** 32 }), RangeError, 'policy.stepDownDelaySecs');
  throwsField(() => new PolicyEngine({ transientFailureThreshold: 256 }), RangeError, 'policy.transientFailureThreshold');
  throwsField(() => new PolicyEngine({ retryAfterSecs: 1.5 }), RangeError, 'policy.retryAfterSecs');
  throwsField(() => new PolicyEngine('mandatory'), TypeError, 'policy');
  // snake_case belongs to the wire format, not to the typed API
  throwsField(() => new PolicyEngine({ allow_cleartext: false }), TypeError, 'allow_cleartext');
});

test('decide: now', () => {
  throwsField(() => engine.decide({}), TypeError, 'input.now');
  throwsField(() => engine.decide({ now: '1767225600' }), TypeError, 'input.now');
  throwsField(() => engine.decide({ now: -1 }), RangeError, 'input.now');
  throwsField(() => engine.decide({ now: 1.5 }), RangeError, 'input.now');
  throwsField(() => engine.decide({ now: 2 ** 64 }), RangeError, 'input.now');
  throwsField(() => engine.decide({ now: 2n ** 64n }), RangeError, 'input.now');
  throwsField(() => engine.decide({ now: new Date() }), TypeError, 'input.now');
  assert.equal(engine.decide({ now: 2n ** 64n - 1n }).action, 'attempt');
});

test('decide: input, context, history', () => {
  throwsField(() => engine.decide(null), TypeError, 'input');
  throwsField(() => engine.decide({ now: NOW, peer: 'x' }), TypeError, 'peer');
  throwsField(() => engine.decide({ now: NOW, context: { dane: 'yes' } }), RangeError, 'input.context.dane');
  throwsField(() => engine.decide({ now: NOW, context: { mta_sts: 'enforce' } }), TypeError, 'mta_sts');
  throwsField(() => engine.decide({ now: NOW, context: { sasl: 1 } }), TypeError, 'input.context.sasl');
  throwsField(() => engine.decide({ now: NOW, history: 'AQAB' }), TypeError, 'input.history');
  throwsField(() => engine.decide({ now: NOW, history: [1, 0] }), TypeError, 'input.history');
});

test('decide: last', () => {
  const last = (l) => () => engine.decide({ now: NOW, last: l });
  throwsField(last({ tier: 'tls', outcome: { kind: 'success' } }), RangeError, 'input.last.tier');
  throwsField(last({ tier: 'modern-tls' }), TypeError, 'input.last.outcome');
  throwsField(last({ tier: 'modern-tls', outcome: 'success' }), TypeError, 'input.last.outcome');
  throwsField(last({ tier: 'modern-tls', outcome: { kind: 'win' } }), RangeError, 'input.last.outcome.kind');
  throwsField(last({ tier: 'modern-tls', outcome: { kind: 'tls-alert' } }), TypeError, 'input.last.outcome.alert');
  throwsField(last({ tier: 'modern-tls', outcome: { kind: 'tls-alert', alert: 'bad' } }), RangeError, 'input.last.outcome.alert');
  throwsField(last({ tier: 'modern-tls', outcome: { kind: 'certificate-error', error: 'x' } }), RangeError, 'input.last.outcome.error');
  throwsField(last({ tier: 'modern-tls', outcome: { kind: 'starttls-rejected', code: 70000 } }), RangeError, 'input.last.outcome.code');
  throwsField(last({ tier: 'modern-tls', outcome: { kind: 'starttls-rejected', code: '454' } }), TypeError, 'input.last.outcome.code');
  throwsField(last({ tier: 'modern-tls', outcome: { kind: 'success', version: 'tls13' } }), RangeError, 'input.last.outcome.version');
  throwsField(last({ tier: 'modern-tls', outcome: { kind: 'connect-failed', alert: 'other' } }), TypeError, 'alert');
  throwsField(last({ tier: 'modern-tls', outcome: { kind: 'success' }, extra: 1 }), TypeError, 'extra');
  throwsField(last({ tier: 'modern-tls', outcome: { kind: 'success', tier: 'modern-tls' } }), TypeError, 'tier');
});

test('decideJson: request shape', () => {
  throwsField(() => engine.decideJson(wire({ peer: undefined })), TypeError, 'request.peer');
  throwsField(() => engine.decideJson({ peer: 'mx' }), TypeError, 'request.now');
  throwsField(() => engine.decideJson(wire({ hitsory: null })), TypeError, 'hitsory');
  throwsField(() => engine.decideJson(wire({ history: 'not base64!' })), RangeError, 'request.history');
  throwsField(() => engine.decideJson(wire({ history: 'AQA' })), RangeError, 'request.history');
  throwsField(() => engine.decideJson(wire({ history: [1] })), TypeError, 'request.history');
  throwsField(() => engine.decideJson(wire({ context: { mtaSts: 'enforce' } })), TypeError, 'mtaSts');
  throwsField(() => engine.decideJson(wire({ context: { mta_sts: 'strict' } })), RangeError, 'request.context.mta_sts');
  throwsField(() => engine.decideJson(wire({ policy: { profile: 'lax' } })), RangeError, 'request.policy.profile');
  throwsField(() => engine.decideJson(wire({ policy: { allowCleartext: false } })), TypeError, 'allowCleartext');
  throwsField(() => engine.decideJson(wire({ policy: { pin_duration_secs: -5 } })), RangeError, 'request.policy.pin_duration_secs');
  throwsField(() => engine.decideJson(wire({ last: { tier: 'modern-tls', outcome: 'tls-alert' } })), TypeError, 'request.last.alert');
  throwsField(() => engine.decideJson(wire({ last: { tier: 'modern-tls', outcome: 'success', version: 'TLSv1.4' } })), RangeError, 'request.last.version');
  throwsField(() => engine.decideJson(wire({ last: { tier: 'modern-tls', outcome: 'handshake-timeout', code: 454 } })), TypeError, 'code');
  throwsField(() => engine.decideJson(wire({ last: { outcome: 'connect-failed' } })), TypeError, 'request.last.tier');
});

test('decideLine: malformed lines become {line, error} when numbered', () => {
  assert.deepEqual(JSON.parse(engine.decideLine('{', 7)).line, 7);
  assert.match(JSON.parse(engine.decideLine('{"peer":"mx"}', 8)).error, /request\.now/);
  assert.throws(() => engine.decideLine('{'), SyntaxError);
});

test('a failed call leaves the engine usable', () => {
  assert.throws(() => engine.decide({ now: -1 }));
  assert.equal(engine.decideJson(wire({})).action, 'attempt');
});
