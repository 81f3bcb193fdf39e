// The Haraka plugin (examples/haraka-plugin.cjs over examples/haraka-outbound.js) in a real
// Haraka, the npm package pinned in package.json, as the outbound MTA: one Haraka process with
// its own config dir in a temp folder, listening on 127.0.0.1, relaying what the test submits and
// delivering to local peers (test/peers.js) through the plugin's static MX routes. Everything
// stays on loopback: the test-only plugin below answers Haraka's reverse-DNS lookup and refuses
// any MX the routes do not name, and every sender is <> so that no bounce is ever sent.
//
// Haraka runs the dance with real sockets and real OpenSSL handshakes, at the engine's real
// delays (the step-down is 5 s, which Haraka honours from hook_deferred's DENYSOFT).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { selfSignedCertificate, startSmtpPeer, startStrippingProxy, submitMessage } from './peers.js';

const require = createRequire(import.meta.url);
const HARAKA_BIN = path.join(path.dirname(require.resolve('haraka/package.json')), 'bin', 'haraka');
const WAIT_MS = 30000;

const LEGACY_ONLY = { minVersion: 'TLSv1', maxVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' };
const MODERN = { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.3' };

// plugins/tlsfallback.js: what an operator writes (README.md, "Haraka").
const TLSFALLBACK_PLUGIN = `const tlsfallback = require('@tlsfallback/policy/haraka');
for (const name of Object.keys(tlsfallback)) exports[name] = tlsfallback[name];
`;

// plugins/loopback_only.js: test only. Relays the test's submissions, answers the reverse-DNS
// lookup Haraka makes for each client without DNS, defers any domain tlsfallback did not route
// (this hook runs after tlsfallback's), and points node:dns at loopback so that a lookup no one
// foresaw fails here instead of leaving the machine.
const LOOPBACK_ONLY_PLUGIN = `const dns = require('node:dns');
exports.register = function () { dns.setServers(['127.0.0.1']); };
exports.hook_lookup_rdns = function (next) { next(OK, 'localhost'); };
exports.hook_connect = function (next, connection) { connection.relaying = true; next(); };
exports.hook_get_mx = function (next, hmail, domain) { next(DENYSOFT, 'no test route for ' + domain); };
`;

let dir;
let haraka;
let harakaLog = '';
let harakaPort;
let legacyPeer;
let modernPeer;
let attacker;

/** Polls `check` every 50 ms until it returns a truthy value; fails with Haraka's log after WAIT_MS. */
async function waitFor(what, check) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const value = check();
    if (value) return value;
    if (haraka.exitCode !== null || haraka.signalCode !== null) {
      assert.fail(`Haraka exited (${haraka.exitCode ?? haraka.signalCode}) while waiting for ${what}\n${harakaLog}`);
    }
    if (Date.now() > deadline) assert.fail(`timed out after ${WAIT_MS} ms waiting for ${what}\nHaraka's log:\n${harakaLog}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Submits a message to Haraka for `to`, from <>; a failure carries Haraka's log. */
async function submit(to, subject, body) {
  try {
    await submitMessage({ port: harakaPort, from: '', to, subject, body });
  } catch (err) {
    assert.fail(`submitting "${subject}" to Haraka: ${err.message}\nHaraka's log:\n${harakaLog}`);
  }
}

/** The plugin's decisions for `peer` logged since `from` (an offset in Haraka's log). */
function decisions(peer, from = 0) {
  const pattern = new RegExp(`tlsfallback ${peer.replace(/\./g, '\\.')}: (\\w+)(?: ([a-z-]+))? \\(([a-z-]+):`, 'g');
  return [...harakaLog.slice(from).matchAll(pattern)].map(([, action, tier, reason]) => ({ action, tier, reason }));
}

/** Haraka's own install (`haraka -i`), then the settings of this test over it. */
function writeConfig(mx) {
  const home = path.join(dir, 'haraka');
  execFileSync(process.execPath, [HARAKA_BIN, '-i', home], { stdio: 'pipe' });
  const file = (name, text) => writeFileSync(path.join(home, name), text);
  // nodes=0: one process (no cluster), so the pid we hold is Haraka's; public_ip: never STUN.
  file('config/smtp.ini', '[main]\nlisten=127.0.0.1:0\nnodes=0\npublic_ip=127.0.0.1\n');
  file('config/me', 'haraka.test\n');
  file('config/plugins', 'tlsfallback\nloopback_only\n');
  // A threshold of 1 lets one piece of cheap evidence (a stripped STARTTLS) step an unpinned peer
  // down at once, to cleartext: so in this test the pin alone keeps the attacker from the mail,
  // in one delivery instead of the default three, 5 minutes apart.
  file('config/tlsfallback.json', JSON.stringify({ policy: { transientFailureThreshold: 1 }, mx }, null, 2));
  file('plugins/tlsfallback.js', TLSFALLBACK_PLUGIN);
  file('plugins/loopback_only.js', LOOPBACK_ONLY_PLUGIN);
  return home;
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'tlsfallback-haraka-'));
  legacyPeer = await startSmtpPeer({
    name: 'mx.legacy.test', ...selfSignedCertificate(dir, 'mx.legacy.test'), tlsOptions: LEGACY_ONLY,
  });
  modernPeer = await startSmtpPeer({
    name: 'mx.pinned.test', ...selfSignedCertificate(dir, 'mx.pinned.test'), tlsOptions: MODERN,
  });
  // pinned.test's only way in is through the attacker, who relays faithfully until it strips.
  attacker = await startStrippingProxy({ upstreamPort: modernPeer.port });
  const home = writeConfig({
    'legacy.test': [{ exchange: 'mx.legacy.test', priority: 10, address: '127.0.0.1', port: legacyPeer.port }],
    'pinned.test': [{ exchange: 'mx.pinned.test', priority: 10, address: '127.0.0.1', port: attacker.port }],
  });

  const env = { ...process.env };
  delete env.TLSFALLBACK_FLEET; // the plugin's histories stay in this Haraka's memory
  delete env.NODE_TEST_CONTEXT; // Haraka is not a test file of this run
  haraka = spawn(process.execPath, [HARAKA_BIN, '-c', home], {
    cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'],
  });
  for (const stream of [haraka.stdout, haraka.stderr]) {
    stream.setEncoding('utf8');
    stream.on('data', (text) => { harakaLog += text; });
  }
  const listening = await waitFor('Haraka to listen', () => /Listening on 127\.0\.0\.1:(\d+)/.exec(harakaLog));
  harakaPort = Number(listening[1]);
});

after(async () => {
  if (haraka && haraka.exitCode === null && haraka.signalCode === null) {
    const exited = new Promise((resolve) => haraka.once('exit', resolve));
    const signal = (name) => {
      try {
        process.kill(haraka.pid, name);
      } catch (err) {
        if (err.code !== 'ESRCH') throw err; // it has just exited
      }
    };
    signal('SIGTERM');
    const timer = setTimeout(() => signal('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
  await Promise.all([legacyPeer?.close(), modernPeer?.close(), attacker?.close()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('a legacy-only peer gets its mail over TLS 1.0 from real Haraka after one step-down, and the next message starts there', async () => {
  // The first message: modern TLS is refused with a protocol_version alert, the plugin steps
  // down, and Haraka retries 5 s later at legacy TLS.
  await submit('someone@legacy.test', 'first', 'one');
  await waitFor('the first message at the legacy-only peer', () => legacyPeer.messages.length === 1);
  assert.equal(legacyPeer.messages[0].version, 'TLSv1');
  assert.match(legacyPeer.messages[0].data, /Subject: first/);

  const [refused, delivered, ...more] = legacyPeer.sessions;
  assert.deepEqual(more, [], 'two connections: the refused modern attempt and the legacy one');
  assert.match(refused.handshakeError, /UNSUPPORTED_PROTOCOL/, 'the peer saw a modern handshake fail');
  assert.equal(refused.commands.some((c) => /^(MAIL|RCPT|DATA)\b/i.test(c)), false);
  assert.equal(delivered.version, 'TLSv1');
  assert.match(harakaLog, /Temp failing \S+ for 5 seconds/, "Haraka kept the engine's step-down delay");
  await waitFor('the plugin to record the delivery', () => decisions('mx.legacy.test').some((d) => d.action === 'done'));
  assert.deepEqual(decisions('mx.legacy.test'), [
    { action: 'attempt', tier: 'modern-tls', reason: 'strongest-tier' },
    { action: 'attempt', tier: 'legacy-tls', reason: 'stepped-down-after-alert' },
    { action: 'done', tier: undefined, reason: 'delivered' },
  ]);

  // The second message: legacy TLS from the first attempt, no modern handshake to fail.
  const logFrom = harakaLog.length;
  await submit('someone@legacy.test', 'second', 'two');
  await waitFor('the second message at the legacy-only peer', () => legacyPeer.messages.length === 2);
  assert.equal(legacyPeer.messages[1].version, 'TLSv1');
  assert.match(legacyPeer.messages[1].data, /Subject: second/);
  assert.equal(legacyPeer.sessions.length, 3, 'one connection for the second message');
  assert.equal(legacyPeer.sessions[2].handshakeError, null);
  assert.equal(legacyPeer.sessions[2].version, 'TLSv1');
  await waitFor('the plugin to record the second delivery', () => decisions('mx.legacy.test', logFrom).some((d) => d.action === 'done'));
  assert.deepEqual(decisions('mx.legacy.test', logFrom)[0], { action: 'attempt', tier: 'legacy-tls', reason: 'remembered-tier' });
});

test('a STARTTLS-stripping attacker gets no cleartext from real Haraka for a pinned peer', async () => {
  // A first delivery over modern TLS pins the peer (the attacker only relays so far).
  await submit('someone@pinned.test', 'pin', 'over TLS');
  await waitFor('the plugin to record the pinning delivery', () => decisions('mx.pinned.test').some((d) => d.action === 'done'));
  assert.equal(modernPeer.messages.length, 1);
  assert.match(modernPeer.messages[0].version, /^TLSv1\.[23]$/);
  assert.ok(attacker.cleartext.some((c) => /^STARTTLS$/i.test(c)), 'the pinning delivery crossed the attacker, in TLS');

  // Now the attacker strips STARTTLS from the peer's EHLO reply.
  attacker.strip = true;
  const logFrom = harakaLog.length;
  const cleartextFrom = attacker.cleartext.length;
  const sessionsFrom = modernPeer.sessions.length;
  await submit('someone@pinned.test', 'secret', 'never in clear');
  await waitFor('Haraka to defer the message', () => /Temp failing \S+ for 300 seconds/.test(harakaLog.slice(logFrom)));

  const sentInClear = attacker.cleartext.slice(cleartextFrom);
  assert.ok(sentInClear.some((c) => /^EHLO\b/i.test(c)), 'Haraka did reach the attacker');
  assert.deepEqual(sentInClear.filter((c) => !/^(EHLO|QUIT)\b/i.test(c)), [], 'no envelope or data in cleartext');
  assert.equal(modernPeer.messages.length, 1, 'the peer received nothing new');
  for (const session of modernPeer.sessions.slice(sessionsFrom)) {
    assert.equal(session.commands.some((c) => /^(MAIL|RCPT|DATA)\b/i.test(c)), false);
  }

  // Why: the plugin refused Haraka's cleartext envelope, reported the missing STARTTLS, and the
  // engine refused the step down to cleartext that it buys an unpinned peer here (threshold 1).
  assert.match(harakaLog.slice(logFrom), /did not offer STARTTLS, refusing to send in cleartext/);
  assert.deepEqual(decisions('mx.pinned.test', logFrom), [
    { action: 'attempt', tier: 'modern-tls', reason: 'strongest-tier' },
    { action: 'defer', tier: undefined, reason: 'downgrade-refused-pinned' },
  ]);
});
