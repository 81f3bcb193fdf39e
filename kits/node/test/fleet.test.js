// The fleet store (src/fleet.js) against a real redis-server: the component's merge reproduces
// the native engine's (kits/vectors/merge.jsonl), and two Haraka nodes share what each learned.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, mkdtempSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { adoptShared, blobToShare, contract, HistoryUnreadableError, toBase64 } from '../src/index.js';
import { FleetHistoryStore, keyOf } from '../src/fleet.js';
import { createPlugin, constants } from '../examples/haraka-outbound.js';

const MERGE_VECTORS = new URL('../../vectors/merge.jsonl', import.meta.url);
const T0 = 1767225600;

const freePort = () => new Promise((resolve, reject) => {
  const server = net.createServer().listen(0, '127.0.0.1', () => {
    const { port } = server.address();
    server.close(() => resolve(port));
  }).on('error', reject);
});

/** Debian's redis-server on a free loopback port, without persistence; stopped by pid. */
let redis;
before(async () => {
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tlsfb-redis-'));
  const child = spawn('redis-server', ['--bind', '127.0.0.1', '--port', String(port), '--save', '',
    '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}/0`;
  const pong = () => new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write('PING\r\n'));
    socket.on('data', (data) => { socket.destroy(); resolve(data.toString().startsWith('+PONG')); });
    socket.on('error', () => resolve(false));
  });
  for (let i = 0; !(await pong()); i += 1) {
    if (child.exitCode !== null || i > 600) throw new Error(`redis-server did not answer on ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const probe = new Redis(url, { maxRetriesPerRequest: 0 });
  redis = { url, child, client: probe };
});
after(async () => {
  redis.client.disconnect();
  redis.child.kill('SIGCONT');
  redis.child.kill('SIGKILL');
});

const fakeHmail = (domain) => ({ todo: { domain, notes: {} } });
function call(plugin, hook, ...args) {
  return new Promise((resolve, reject) => {
    Promise.resolve(plugin[hook]((code, msg) => resolve({ code, msg }), ...args)).catch(reject);
  });
}

/** One Haraka node: its own Map of histories, its own fleet connection and cache. */
async function haraka(options = {}) {
  const store = await FleetHistoryStore.connect(redis.url, options);
  const clock = { now: T0 };
  const plugin = createPlugin({
    store,
    clock: () => clock.now,
    resolveMx: async (domain) => [{ exchange: `mx.${domain}`, priority: 10 }],
  });
  plugin.register();
  return { plugin, store, clock };
}

test('the component merges as the native engine does', () => {
  const lines = readFileSync(MERGE_VECTORS, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, 144);
  const blob = (text) => (text === null ? null : Uint8Array.from(Buffer.from(text, 'base64')));
  const answer = (fn) => {
    try {
      return { history: toBase64(fn()) };
    } catch (error) {
      if (!(error instanceof HistoryUnreadableError)) throw error;
      return { error: error.message };
    }
  };
  const mismatches = [];
  for (const v of lines) {
    const local = blob(v.local);
    const shared = blob(v.shared);
    const got = {};
    if (shared !== null) got.adopt = answer(() => adoptShared(local, shared));
    if (local !== null) got.share = answer(() => blobToShare(local, shared));
    const want = {};
    for (const k of ['adopt', 'share']) if (v[k] !== undefined) want[k] = v[k];
    try {
      assert.deepEqual(got, want);
    } catch {
      mismatches.push(`${v.name}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
    }
  }
  assert.deepEqual(mismatches, []);
});

test('a legacy-only peer learned by one Haraka node starts at legacy-tls on another', async () => {
  const a = await haraka();
  const b = await haraka();
  try {
    const hmail = fakeHmail('legacy-fleet.example');
    await call(a.plugin, 'hook_get_mx', hmail, 'legacy-fleet.example');
    const alert = Object.assign(new Error('SSL alert number 70'), { code: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' });
    await call(a.plugin, 'hook_deferred', hmail, { delay: 60, err: alert });
    a.clock.now += 5;
    await call(a.plugin, 'hook_get_mx', hmail, 'legacy-fleet.example');
    a.plugin.record_tls(hmail, 'TLSv1');
    await call(a.plugin, 'hook_delivered', hmail, []);
    assert.ok(a.store.counters.writes >= 1);

    const onB = fakeHmail('legacy-fleet.example');
    const r = await call(b.plugin, 'hook_get_mx', onB, 'legacy-fleet.example');
    assert.equal(r.code, constants.ok);
    assert.equal(r.msg[0].tlsfallback.tier, 'legacy-tls', 'node B pays no failed handshake');
    assert.equal(onB.todo.notes.tlsfallback.reason, 'remembered-tier');
  } finally {
    await a.store.close();
    await b.store.close();
  }
});

test('a pin learned by one node stops a stripping attacker on another', async () => {
  const a = await haraka();
  const b = await haraka();
  const lone = createPlugin({
    clock: () => T0,
    resolveMx: async (domain) => [{ exchange: `mx.${domain}`, priority: 10 }],
  });
  lone.register();
  try {
    const hmail = fakeHmail('pinned-fleet.example');
    await call(a.plugin, 'hook_get_mx', hmail, 'pinned-fleet.example');
    a.plugin.record_tls(hmail, 'TLSv1.3');
    await call(a.plugin, 'hook_delivered', hmail, []);

    const stripped = Object.assign(new Error('STARTTLS not offered by the server'), {});
    // The control: a node that knows nothing falls back to cleartext behind the stripper.
    const control = fakeHmail('pinned-fleet.example');
    await call(lone, 'hook_get_mx', control, 'pinned-fleet.example');
    await call(lone, 'hook_deferred', control, { delay: 60, err: stripped });
    assert.equal(control.todo.notes.tlsfallback.tier, 'cleartext');

    const onB = fakeHmail('pinned-fleet.example');
    await call(b.plugin, 'hook_get_mx', onB, 'pinned-fleet.example');
    const r = await call(b.plugin, 'hook_deferred', onB, { delay: 60, err: stripped });
    assert.equal(r.code, constants.denysoft);
    assert.notEqual(onB.todo.notes.tlsfallback.tier, 'cleartext');
    assert.equal(onB.todo.notes.tlsfallback.action, 'defer');
    assert.match(onB.todo.notes.tlsfallback.reason, /starttls-missing-after-tls|downgrade-refused-pinned/);
  } finally {
    await a.store.close();
    await b.store.close();
  }
});

test('a stopped Redis leaves decisions to the local history, and what it missed is merged up', async () => {
  const now = { ms: 0 };
  const a = await haraka({ budgetMs: 50, failuresToOpen: 2, cooldownMs: 2000, clock: () => now.ms });
  try {
    await a.store.shared('warm-up'); // connected before the server stops
    redis.child.kill('SIGSTOP');
    let r;
    const hmail = fakeHmail('outage.example');
    try {
      r = await call(a.plugin, 'hook_get_mx', hmail, 'outage.example');
      a.plugin.record_tls(hmail, 'TLSv1.3');
      await call(a.plugin, 'hook_delivered', hmail, []);
    } finally {
      redis.child.kill('SIGCONT');
    }
    assert.equal(r.code, constants.ok, 'the decision came from the local history');
    assert.ok(a.store.unpublished.has('mx.outage.example'));
    assert.ok(a.store.circuitOpen);
    assert.equal(await a.store.mergeUp(), 1, 'the open circuit lets no call through');
    now.ms += 2000;
    assert.equal(await a.store.mergeUp(), 0);
    assert.equal(await redis.client.exists(keyOf('mx.outage.example')), 1);
  } finally {
    await a.store.close();
  }
});

test('a forged shared copy is replaced, not trusted', async () => {
  const a = await haraka();
  try {
    const f = contract.fleet;
    await redis.client.hset(keyOf('mx.forged.example'), f.version_field, '9', f.blob_field,
      Buffer.from([1, 0xff, 0xff]));
    const hmail = fakeHmail('forged.example');
    await call(a.plugin, 'hook_get_mx', hmail, 'forged.example');
    assert.equal(hmail.todo.notes.tlsfallback.reason, 'strongest-tier');
    assert.ok(a.store.warnings.some((w) => /unreadable/.test(w)), a.store.warnings.join('\n'));
    const stored = await redis.client.hgetBuffer(keyOf('mx.forged.example'), f.blob_field);
    const local = await a.store.local.get('mx.forged.example');
    assert.deepEqual(Buffer.from(blobToShare(local, stored)), stored, 'the forged copy was replaced');
  } finally {
    await a.store.close();
  }
});

test('bad input to the merge is a clear error', () => {
  assert.throws(() => blobToShare(new Uint8Array(0), null),
    (e) => e instanceof HistoryUnreadableError && e.kind === 'empty');
  assert.throws(() => adoptShared('text', new Uint8Array([1])), /local must be a Uint8Array/);
  assert.throws(() => new FleetHistoryStore({ redis: {} }), /ioredis client/);
});
