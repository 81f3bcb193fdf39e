// Drives the Haraka-style plugin (examples/haraka-outbound.js) with a fake hmail through a
// legacy-only peer's dance: modern-tls → protocol-version alert → legacy-tls → success, and the
// next message starts at legacy-tls straight away.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPlugin, constants, outcomeFromError, MapHistoryStore } from '../examples/haraka-outbound.js';

const T0 = 1767225600;

/** A fake hmail: Haraka keeps per-message notes in hmail.todo.notes. */
const fakeHmail = (domain) => ({ todo: { domain, notes: {} } });

/** Calls a hook and resolves with what it passed to next(code, msg). */
function call(plugin, hook, ...args) {
  return new Promise((resolve, reject) => {
    Promise.resolve(plugin[hook]((code, msg) => resolve({ code, msg }), ...args)).catch(reject);
  });
}

function makePlugin(store = new MapHistoryStore()) {
  const clock = { now: T0 };
  const log = [];
  const plugin = createPlugin({
    store,
    clock: () => clock.now,
    resolveMx: async (domain) => [{ exchange: `mx2.${domain}`, priority: 20 }, { exchange: `mx.${domain}`, priority: 10 }],
    log: (line) => log.push(line),
  });
  plugin.register();
  return { plugin, clock, log, store };
}

test('a legacy-only peer: modern, alert, legacy, success, then remembered legacy', async () => {
  const { plugin, clock, store, log } = makePlugin();
  const hmail = fakeHmail('legacy.example');

  // 1. Start: the strongest tier, on the preferred MX.
  let r = await call(plugin, 'hook_get_mx', hmail, 'legacy.example');
  assert.equal(r.code, constants.ok);
  assert.equal(r.msg[0].exchange, 'mx.legacy.example');
  assert.equal(r.msg[0].tlsfallback.tier, 'modern-tls');
  assert.equal(plugin.tls_options(hmail).minVersion, 'TLSv1.2');

  // 2. The peer answers with a protocol_version alert: Haraka defers; the plugin reports it and
  //    asks for a retry after the step-down delay, at legacy-tls.
  const alert = Object.assign(new Error('SSL alert number 70'), { code: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' });
  r = await call(plugin, 'hook_deferred', hmail, { delay: 60, err: alert });
  assert.equal(r.code, constants.denysoft);
  assert.equal(r.msg, '5');
  assert.equal(hmail.todo.notes.tlsfallback.tier, 'legacy-tls');
  assert.equal(hmail.todo.notes.tlsfallback.reason, 'stepped-down-after-alert');

  // 3. The retry: same MX, legacy TLS settings.
  clock.now += 5;
  r = await call(plugin, 'hook_get_mx', hmail, 'legacy.example');
  assert.equal(r.code, constants.ok);
  assert.equal(r.msg[0].exchange, 'mx.legacy.example');
  assert.equal(r.msg[0].tlsfallback.tier, 'legacy-tls');
  const tls = plugin.tls_options(hmail);
  assert.equal(tls.minVersion, 'TLSv1');
  assert.match(tls.ciphers, /@SECLEVEL=0/);

  // 4. Delivered over TLS 1.0: the engine answers done, the history is stored.
  plugin.record_tls(hmail, 'TLSv1');
  r = await call(plugin, 'hook_delivered', hmail, ['mx.legacy.example', '192.0.2.1', '250 ok']);
  assert.equal(r.code, undefined);
  assert.equal(hmail.todo.notes.tlsfallback, undefined);
  assert.ok((await store.get('mx.legacy.example')).length > 0);
  assert.ok(log.some((line) => /done \(delivered/.test(line)), log.join('\n'));

  // 5. The next message, a day later: legacy-tls from the start.
  clock.now += 86400;
  const second = fakeHmail('legacy.example');
  r = await call(plugin, 'hook_get_mx', second, 'legacy.example');
  assert.equal(r.code, constants.ok);
  assert.equal(r.msg[0].tlsfallback.tier, 'legacy-tls');
  assert.equal(second.todo.notes.tlsfallback.reason, 'remembered-tier');
  plugin.record_tls(second, 'TLSv1');
  await call(plugin, 'hook_delivered', second, []);

  // A different peer is unaffected.
  const other = fakeHmail('modern.example');
  r = await call(plugin, 'hook_get_mx', other, 'modern.example');
  assert.equal(r.msg[0].tlsfallback.tier, 'modern-tls');
});

test('a connect failure defers for retry_after_secs, and the engine decides again next time', async () => {
  const { plugin } = makePlugin();
  const hmail = fakeHmail('down.example');
  await call(plugin, 'hook_get_mx', hmail, 'down.example');
  const r = await call(plugin, 'hook_deferred', hmail, { delay: 60, err: Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }) });
  assert.equal(r.code, constants.denysoft);
  assert.equal(r.msg, '300');
  assert.equal(hmail.todo.notes.tlsfallback.action, 'defer');
  const again = await call(plugin, 'hook_get_mx', hmail, 'down.example');
  assert.equal(again.code, constants.ok);
  assert.equal(hmail.todo.notes.tlsfallback.reason, 'strongest-tier');
});

test('outcomeFromError maps Node errors to outcomes', () => {
  const e = (code, message = '') => Object.assign(new Error(message), { code });
  assert.deepEqual(outcomeFromError(e('ECONNREFUSED')), { kind: 'connect-failed' });
  assert.deepEqual(outcomeFromError(e('ECONNRESET')), { kind: 'connection-reset' });
  assert.deepEqual(outcomeFromError(e('ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE')), { kind: 'tls-alert', alert: 'handshake-failure' });
  assert.deepEqual(outcomeFromError(e('ERR_SSL_TLSV1_ALERT_INAPPROPRIATE_FALLBACK')), { kind: 'tls-alert', alert: 'inappropriate-fallback' });
  assert.deepEqual(outcomeFromError(e('CERT_HAS_EXPIRED')), { kind: 'certificate-error', error: 'expired' });
  assert.deepEqual(outcomeFromError(e('ERR_TLS_CERT_ALTNAME_INVALID')), { kind: 'certificate-error', error: 'name-mismatch' });
  assert.deepEqual(outcomeFromError(e(undefined, 'STARTTLS rejected: 454 TLS not available')), { kind: 'starttls-rejected', code: 454 });
});
