// The typed API: decide() with JS objects, the typed decision, and errors for bad input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  PolicyEngine, DEFAULT_POLICY, contract, TLS_RPT_RESULTS, REASONS, nodeTlsOptions,
} from '../src/index.js';

const NOW = 1767225600;

test('the default policy comes from contract.json', () => {
  assert.deepEqual(DEFAULT_POLICY, {
    profile: contract.default_policy.profile,
    allowLegacyTls: contract.default_policy.allow_legacy_tls,
    allowCleartext: contract.default_policy.allow_cleartext,
    stepDownDelaySecs: contract.default_policy.step_down_delay_secs,
    reprobeIntervalSecs: contract.default_policy.reprobe_interval_secs,
    pinDurationSecs: contract.default_policy.pin_duration_secs,
    transientFailureThreshold: contract.default_policy.transient_failure_threshold,
    retryAfterSecs: contract.default_policy.retry_after_secs,
  });
  assert.deepEqual(new PolicyEngine().policy, DEFAULT_POLICY);
  assert.equal(new PolicyEngine({ stepDownDelaySecs: 60 }).policy.stepDownDelaySecs, 60);
  assert.deepEqual([...REASONS].sort(), Object.keys(contract.explanations).sort());
});

test('a legacy-only peer: modern, alert, legacy, success, then remembered', () => {
  const engine = new PolicyEngine();
  const start = engine.decide({ history: null, last: null, now: NOW });
  assert.equal(start.action, 'attempt');
  assert.equal(start.tier, 'modern-tls');
  assert.deepEqual(start.tls, {
    minVersion: 'TLSv1.2', maxVersion: 'TLSv1.3', ciphers: 'strong', securityLevel: 2,
    verification: 'none', fallbackScsv: false,
  });
  assert.equal(start.delaySecs, 0);
  assert.equal(start.reason, 'strongest-tier');
  assert.equal(start.explanation, contract.explanations['strongest-tier']);
  assert.deepEqual(start.report, []);
  assert.ok(start.history instanceof Uint8Array && start.history.length > 0);
  assert.equal(start.historyError, null);

  const legacy = engine.decide({
    history: start.history,
    last: { tier: 'modern-tls', outcome: { kind: 'tls-alert', alert: 'protocol-version' } },
    now: NOW,
  });
  assert.equal(legacy.action, 'attempt');
  assert.equal(legacy.tier, 'legacy-tls');
  assert.equal(legacy.tls.minVersion, 'TLSv1');
  assert.equal(legacy.tls.fallbackScsv, true);
  assert.equal(legacy.delaySecs, 5);
  assert.equal(legacy.reason, 'stepped-down-after-alert');
  assert.deepEqual(legacy.report, ['validation-failure']);

  const done = engine.decide({
    history: legacy.history,
    last: { tier: 'legacy-tls', outcome: { kind: 'success', version: 'TLSv1', cipher: 'AES128-SHA' } },
    now: NOW + 5,
  });
  assert.equal(done.action, 'done');
  assert.equal(done.reason, 'delivered');

  const next = engine.decide({ history: done.history, now: BigInt(NOW + 86400) });
  assert.equal(next.action, 'attempt');
  assert.equal(next.tier, 'legacy-tls');
  assert.equal(next.reason, 'remembered-tier');
});

test('typed and wire APIs agree', () => {
  const engine = new PolicyEngine();
  const typed = engine.decide({
    context: { dane: 'usable', requiretls: true },
    history: null,
    last: { tier: 'authenticated-tls', outcome: { kind: 'certificate-error', error: 'dane-mismatch' } },
    now: NOW,
    policy: { profile: 'mandatory' },
  });
  const wire = engine.decideJson({
    peer: 'mx.example.net', now: NOW, history: null, context: { dane: 'usable', requiretls: true },
    last: { tier: 'authenticated-tls', outcome: 'certificate-error', error: 'dane-mismatch' },
    policy: { profile: 'mandatory' },
  });
  assert.equal(typed.action, wire.action);
  assert.equal(typed.reason, wire.reason);
  assert.deepEqual(typed.report, wire.report);
  assert.equal(Buffer.from(typed.history).toString('base64'), wire.history);
  if (typed.action === 'bounce') assert.equal(typed.status.text, wire.status);
  if (typed.action === 'defer') assert.equal(typed.retryAfterSecs, wire.retry_after_secs);
});

test('history errors: an empty blob is not "no history"', () => {
  const engine = new PolicyEngine();
  const empty = engine.decide({ history: new Uint8Array(), now: NOW });
  assert.equal(empty.reason, 'history-unreadable');
  assert.deepEqual(empty.historyError, { kind: 'empty', message: contract.history_errors.empty });
  const long = engine.decide({ history: new Uint8Array(65), now: NOW });
  assert.equal(long.historyError.kind, 'too-long');
  assert.equal(long.historyError.value, 65);
  assert.equal(long.historyError.message, contract.history_errors['too-long'].replace('{0}', '65'));
  assert.equal(engine.decide({ history: null, now: NOW }).historyError, null);
  assert.equal(engine.decide({ history: Buffer.alloc(0), now: NOW }).reason, 'history-unreadable');
});

test('report lists TLS-RPT results in WIT declaration order', () => {
  const engine = new PolicyEngine();
  const d = engine.decide({ context: { mtaSts: 'fetch-failed', dane: 'usable' }, now: NOW,
    last: { tier: 'authenticated-tls', outcome: { kind: 'certificate-error', error: 'expired' } } });
  const order = d.report.map((r) => TLS_RPT_RESULTS.indexOf(r));
  assert.ok(order.every((i) => i >= 0));
  assert.deepEqual(order, [...order].sort((a, b) => a - b));
});

test('nodeTlsOptions maps the TLS parameters onto tls.connect options', () => {
  const legacy = nodeTlsOptions({ minVersion: 'TLSv1', maxVersion: 'TLSv1.2', ciphers: 'legacy-compatible',
    securityLevel: 0, verification: 'none', fallbackScsv: true });
  assert.equal(legacy.minVersion, 'TLSv1');
  assert.match(legacy.ciphers, /@SECLEVEL=0$/);
  assert.equal(legacy.rejectUnauthorized, false);
  assert.equal(nodeTlsOptions(null), null);
});

test('close() drops the deciders and the engine keeps working', () => {
  const engine = new PolicyEngine();
  engine.decide({ now: NOW, policy: { pinDurationSecs: 0 } });
  assert.equal(engine.cachedDeciders, 2);
  engine.close();
  assert.equal(engine.cachedDeciders, 1);
  assert.equal(engine.decide({ now: NOW }).action, 'attempt');
});

test('the decider cache is bounded', () => {
  const engine = new PolicyEngine(null, { maxDeciders: 3 });
  for (let i = 0; i < 10; i++) engine.decide({ now: NOW, policy: { retryAfterSecs: i } });
  assert.equal(engine.cachedDeciders, 3);
  assert.equal(engine.decide({ now: NOW }).action, 'attempt');
});
