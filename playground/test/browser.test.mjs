// The page in Debian's chromium (playwright-core), served by `tlsfallback playground`: the
// issue's scenarios, a component loaded in the page, hostile inputs, the URL, and the decisions
// the page shows replayed through the CLI.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  ARTIFACTS, PLAYGROUND, REPO, cli, componentFromWat, launchChromium, startServer, watToBinary,
} from './support.mjs';

let server;
let browser;
let scratch;

before(async () => {
  server = await startServer();
  browser = await launchChromium();
  scratch = mkdtempSync(path.join(tmpdir(), 'playground-test-'));
});

after(async () => {
  await browser?.close();
  server?.stop();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

/** A fresh page at `query`, with page errors collected; resolves once the first run is drawn. */
async function open(query = '') {
  const page = await browser.newPage({ viewport: { width: 1600, height: 1200 } });
  const errors = [];
  page.on('pageerror', (error) => errors.push(String(error)));
  await page.goto(`${server.url}${query}`);
  await settled(page);
  return { page, errors };
}

/** Waits until the run the last change started has been drawn. */
async function settled(page) {
  await page.waitForFunction(() => document.body.dataset.state === 'done', null, { timeout: 30000 });
}

/** Changes a control and waits for the new run. */
async function change(page, action) {
  await page.evaluate(() => { document.body.dataset.state = 'changing'; });
  await action();
  await settled(page);
}

/** The marks of one engine's timeline as plain objects, in drawing order. */
function marks(page, engine = 'built-in') {
  return page.$$eval(`.engine-column[data-engine="${engine}"] svg .mark`, (nodes) => nodes.map((n) => ({
    delivery: Number(n.dataset.delivery), step: Number(n.dataset.step), action: n.dataset.action,
    tier: n.dataset.tier, outcome: n.dataset.outcome, reason: n.dataset.reason,
  })));
}

const byDelivery = (list) => {
  const out = new Map();
  for (const mark of list) out.set(mark.delivery, [...(out.get(mark.delivery) ?? []), mark]);
  return out;
};

test('legacy-only peer over 30 days: the first delivery steps down to legacy-tls, later ones start there', async () => {
  const { page, errors } = await open();
  await change(page, () => page.selectOption('#preset', 'modern'));
  await change(page, () => page.selectOption('#preset', 'legacy-only'));
  assert.equal(await page.inputValue('#days'), '30');
  const tries = byDelivery(await marks(page));
  assert.deepEqual(tries.get(0).map((m) => [m.tier, m.outcome, m.reason]), [
    ['modern-tls', 'tls-alert', 'strongest-tier'],
    ['legacy-tls', 'success', 'stepped-down-after-alert'],
  ]);
  const starts = [...tries.values()].slice(1).map((t) => t[0]);
  assert.equal(starts.length, 119);
  const remembered = starts.filter((m) => m.tier === 'legacy-tls' && m.reason === 'remembered-tier');
  const reprobes = starts.filter((m) => m.tier === 'modern-tls' && m.reason === 'reprobe-upward');
  // The default policy re-probes the strongest tier weekly: four times in 30 days.
  assert.equal(reprobes.length, 4);
  assert.equal(remembered.length + reprobes.length, starts.length);
  assert.match(await page.textContent('tr[data-key="delivered-legacy-tls"]'), /120 \(100%\)/);

  // Click the step-down: its reason, explanation, TLS-RPT types and history are shown.
  await page.click('.engine-column[data-engine="built-in"] svg .mark[data-delivery="0"][data-step="1"]');
  const details = page.locator('.engine-column[data-engine="built-in"] .details');
  assert.match(await details.locator('tr[data-key="reason"]').textContent(), /stepped-down-after-alert.*protocol or cipher alert/);
  assert.match(await details.locator('tr[data-key="tier"]').textContent(), /legacy-tls/);
  // A handshake refused with an alert is a TLS-RPT validation failure.
  assert.match(await details.locator('tr[data-key="report"]').textContent(), /validation-failure/);
  assert.match(await details.locator('.history-hex').textContent(), /^01 /);
  assert.match(await details.locator('.history-decoded').textContent(), /delivery in progress\s*at legacy-tls, 2 attempt/);
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, 'playground-legacy-only.png'), fullPage: true });
  assert.deepEqual(errors, []);
  await page.close();
});

test('stripping attacker: after the pin, no cleartext delivery; tries are refused instead', async () => {
  const { page, errors } = await open();
  await change(page, () => page.selectOption('#preset', 'stripping-attacker'));
  const results = await page.evaluate(() => window.playground.deliveries(0).map((d) => ({
    attacker: d.attackerActive, actions: d.steps.map((s) => s.response.action), reasons: d.steps.map((s) => s.response.reason),
    tiers: d.steps.map((s) => s.response.tier ?? null),
  })));
  // The first delivery (day 0, modern TLS) pins the peer; the attacker arrives on day 3.
  assert.equal(results[0].tiers[0], 'modern-tls');
  assert.ok(results.every((d) => !d.tiers.includes('cleartext')));
  const underAttack = results.filter((d) => d.attacker);
  assert.ok(underAttack.length > 100);
  // Each try under attack: modern TLS, no STARTTLS, deferred (the first as possible stripping,
  // then as a downgrade the pin refuses).
  assert.ok(underAttack.every((d) => d.actions.join() === 'attempt,defer'
    && ['starttls-missing-after-tls', 'downgrade-refused-pinned'].includes(d.reasons[1])));
  assert.ok(underAttack.some((d) => d.reasons[1] === 'downgrade-refused-pinned'));
  assert.match(await page.textContent('tr[data-key="attacker"]'), /^While the attacker was on path\d+ tries refused, 0 messages sent in cleartext$/);
  assert.ok(await page.locator('svg .attacker-zone').count() === 1);

  // Turning pinning off shows the difference the pin makes: cleartext to the attacker.
  await change(page, async () => { await page.fill('#pin-days', '0'); await page.press('#pin-days', 'Enter'); });
  assert.ok(new URL(page.url()).searchParams.get('pin') === '0');
  const unpinned = await marks(page);
  assert.ok(unpinned.some((m) => m.tier === 'cleartext' && m.outcome === 'success'));
  assert.doesNotMatch(await page.textContent('tr[data-key="attacker"]'), / 0 messages sent in cleartext/);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a month of attack reads at a glance: blocks of like tries, each opening to its tries', async () => {
  const { page, errors } = await open('?preset=stripping-attacker');
  // 11,086 tries (a pinned peer deferred under attack, the Postfix backoff between tries) are
  // drawn as the simulator's blocks, the same blocks `tlsfallback simulate --json` prints.
  const theirs = JSON.parse(cli(['simulate', '--preset', 'stripping-attacker', '--days', '30', '--json']));
  assert.ok(theirs.deliveries.length > 10000);
  const blocks = await page.$$eval('.engine-column[data-engine="built-in"] svg .block', (nodes) => nodes.map((n) => ({
    first: Number(n.dataset.first), count: Number(n.dataset.count), label: n.getAttribute('aria-label'),
  })));
  assert.deepEqual(blocks.map(({ first, count }) => ({ first, count })), theirs.blocks.map(({ first, count }) => ({ first, count })));
  assert.ok(blocks.length < 40);
  assert.equal(await page.locator('.engine-column[data-engine="built-in"] svg .mark').count(), 0);
  const attack = blocks.find((b) => /modern-tls → starttls-not-offered, defer \(downgrade-refused-pinned\)$/.test(b.label));
  assert.ok(attack !== undefined && attack.count > 10000, JSON.stringify(blocks));
  assert.match(await page.textContent('svg .blocks-note'), /^11086 tries drawn as \d+ blocks/);
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, 'playground-attack-month.png'), fullPage: true });
  // Choosing the attack's block shows the days of its first tries, every try a mark again.
  await page.click(`.engine-column[data-engine="built-in"] svg .block[data-first="${attack.first}"]`);
  const view = new URL(page.url()).searchParams.get('view');
  assert.match(view, /^3(\.\d+)?-\d+(\.\d+)?$/);
  const shown = await marks(page);
  assert.ok(shown.length > 100 && shown.length <= 2 * 1500);
  assert.ok(shown.filter((m) => m.action === 'defer').every((m) => ['starttls-missing-after-tls', 'downgrade-refused-pinned'].includes(m.reason)));
  // The queue's backoff is a control of its own, in the link: a longer one makes fewer tries.
  await page.click('#view-all');
  await change(page, async () => { await page.fill('#min-backoff', '3600'); await page.fill('#max-backoff', '14400'); await page.press('#max-backoff', 'Enter'); });
  const url = new URL(page.url());
  assert.equal(url.searchParams.get('min_backoff'), '3600');
  assert.equal(url.searchParams.get('max_backoff'), '14400');
  const longer = JSON.parse(cli(['simulate', '--preset', 'stripping-attacker', '--days', '30', '--minimal-backoff', '3600',
    '--maximal-backoff', '14400', '--json']));
  assert.ok(longer.deliveries.length < theirs.deliveries.length);
  const ours = await page.evaluate(() => window.playground.comparable('stripping-attacker', window.playground.results[0].run));
  assert.deepEqual(ours, longer);
  // A maximal backoff below the minimal one is named, and nothing runs with it.
  await page.fill('#max-backoff', '60');
  await page.press('#max-backoff', 'Enter');
  assert.match(await page.textContent('#problems'), /maximal backoff: 60 s is below the minimal backoff \(3600 s\)/);
  assert.deepEqual(errors, []);
  await page.close();
});

test('the example plugin runs in the page beside the built-in engine, with its own decisions', async () => {
  const { page, errors } = await open('?preset=no-starttls');
  await change(page, () => page.click('#load-example'));
  assert.equal(await page.getAttribute('body', 'data-plugin'), 'loaded');
  assert.match(await page.textContent('#plugin-status'), /exports tlsfallback:policy\/engine@0\.2\.0/);
  assert.equal(await page.locator('.engine-column').count(), 2);
  const builtIn = byDelivery(await marks(page, 'built-in'));
  const plugin = byDelivery(await marks(page, 'plugin'));
  // Built-in: no STARTTLS at first contact → cleartext at once. The plugin defers that first
  // cleartext delivery instead (its one rule), then delivers from the remembered tier.
  assert.deepEqual(builtIn.get(0).map((m) => m.reason), ['strongest-tier', 'stepped-down-no-starttls']);
  assert.equal(plugin.get(0).at(-1).action, 'defer');
  assert.match(await page.textContent('.engine-column[data-engine="plugin"] tr[data-key="differences"]'), /1 of 120 messages decided differently/);
  assert.ok(await page.locator('.engine-column[data-engine="plugin"] svg .mark.differs[data-delivery="0"]').count() > 0);
  await page.click('.engine-column[data-engine="plugin"] svg .mark[data-delivery="0"][data-action="defer"]');
  assert.match(await page.textContent('.engine-column[data-engine="plugin"] .details tr[data-key="action"]'), /defer/);
  // The same message's same step is shown beside it: the built-in engine went on in cleartext.
  const beside = page.locator('.engine-column[data-engine="built-in"] .details');
  assert.match(await beside.locator('h3').textContent(), /^Message #0, /);
  assert.match(await beside.locator('tr[data-key="reason"]').textContent(), /stepped-down-no-starttls/);
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, 'playground-plugin.png'), fullPage: true });

  // The same component chosen as a file.
  await change(page, () => page.setInputFiles('#plugin-file', path.join(PLAYGROUND, 'vendor/examples/first-contact.wasm')));
  assert.match(await page.textContent('#plugin-status'), /^first-contact\.wasm: /);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a JavaScript component (ComponentizeJS, 12 MB) transpiled in the page: never cleartext, its own history format', async () => {
  // examples/plugin-js, built as its README says (scripts/setup installed its npm packages).
  const wasm = path.join(scratch, 'plugin-js.wasm');
  const built = spawnSync(process.execPath, ['build.mjs', wasm], { cwd: path.join(REPO, 'examples/plugin-js'), encoding: 'utf8' });
  assert.equal(built.status, 0, built.stderr);
  const { page, errors } = await open('?preset=no-starttls&days=5');
  await page.fill('#deadline', '60');
  await page.setInputFiles('#plugin-file', wasm);
  await page.waitForFunction(() => document.body.dataset.plugin === 'loaded' || document.body.dataset.plugin === 'failed', null, { timeout: 120000 });
  assert.match(await page.textContent('#plugin-status'), /^plugin-js\.wasm: \d+ bytes, exports tlsfallback:policy\/engine@0\.2\.0/);
  await page.waitForFunction(() => document.querySelector('.engine-column[data-engine="plugin"]') !== null, null, { timeout: 60000 });
  const plugin = await marks(page, 'plugin');
  assert.ok(plugin.length > 0);
  assert.equal(plugin.filter((m) => m.tier === 'cleartext').length, 0);
  assert.ok(plugin.some((m) => m.action === 'defer' && m.reason === 'tls-required-not-offered'));
  assert.ok((await marks(page, 'built-in')).some((m) => m.tier === 'cleartext' && m.outcome === 'success'));
  // Its history blob is its own format: shown in hex, and said not to be the engine's.
  // Marks this dense overlap; the keyboard reaches any of them.
  await page.focus('.engine-column[data-engine="plugin"] svg .mark[data-delivery="0"][data-step="0"]');
  await page.keyboard.press('Enter');
  assert.match(await page.textContent('.engine-column[data-engine="plugin"] .details .history'),
    /^4a .*not a history this engine reads: the history blob has format version 74/);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a file that is not a component, a core module, or a component that imports, is refused with the reason', async () => {
  const { page } = await open();
  const notWasm = path.join(scratch, 'notes.wasm');
  writeFileSync(notWasm, 'this is not WebAssembly');
  await page.setInputFiles('#plugin-file', notWasm);
  await page.waitForFunction(() => document.body.dataset.plugin === 'failed');
  assert.match(await page.textContent('#plugin-status'), /^notes\.wasm is not WebAssembly/);
  assert.equal(await page.locator('.engine-column').count(), 1);
  await page.evaluate(() => { delete document.body.dataset.plugin; });
  const importing = path.join(scratch, 'importing.wasm');
  watToBinary(`(component (import "wasi:cli/environment@0.2.3" (instance (export "get-arguments" (func (result (list string)))))))`, importing);
  await page.setInputFiles('#plugin-file', importing);
  await page.waitForFunction(() => document.body.dataset.plugin === 'failed');
  assert.equal(await page.textContent('#plugin-status'), 'importing.wasm imports wasi:cli/environment@0.2.3: a policy component must import nothing');
  // A core module, the usual mistake: built for wasm32 but never wrapped into a component.
  await page.evaluate(() => { delete document.body.dataset.plugin; });
  const core = path.join(scratch, 'core.wasm');
  watToBinary('(module (func (export "decide")))', core);
  await page.setInputFiles('#plugin-file', core);
  await page.waitForFunction(() => document.body.dataset.plugin === 'failed');
  assert.match(await page.textContent('#plugin-status'), /^core\.wasm is a core WebAssembly module, not a component: wrap it with `wasm-tools component new`/);
  await page.close();
});

test('a component that never returns is stopped at the deadline; the built-in column still shows', async () => {
  const looping = componentFromWat(loopingCoreModule(), scratch);
  const { page } = await open('?preset=modern&days=2');
  await page.fill('#deadline', '2');
  await page.setInputFiles('#plugin-file', looping);
  await page.waitForFunction(() => document.querySelector('.engine-column[data-engine="plugin"] .error:not([hidden])') !== null, null, { timeout: 20000 });
  assert.match(await page.textContent('.engine-column[data-engine="plugin"] .error'), /no answer within 2 s/);
  assert.ok(await page.locator('.engine-column[data-engine="built-in"] svg .mark').count() > 0);
  // The page still works: removing the component and changing the scenario runs again.
  await page.click('#remove-plugin');
  await change(page, () => page.selectOption('#preset', 'legacy-only'));
  assert.equal(await page.locator('.engine-column').count(), 1);
  await page.close();
});

test('a component that traps is reported with the trap and the request; the page goes on', async () => {
  const dir = mkdtempSync(path.join(scratch, 'trap-'));
  const trapping = componentFromWat(loopingCoreModule('unreachable'), dir);
  const { page, errors } = await open('?preset=legacy-only&days=3');
  await change(page, () => page.setInputFiles('#plugin-file', trapping));
  const message = await page.textContent('.engine-column[data-engine="plugin"] .error');
  assert.match(message, /failed: the component trapped \(unreachable\) — on the request \{"peer":"mx\.peer\.example","now":1767225600,/);
  assert.equal(await page.locator('.engine-column[data-engine="built-in"] svg .mark').count() > 0, true);
  // The next run instantiates it afresh (and it traps again, the same way).
  await change(page, () => page.selectOption('#preset', 'modern'));
  assert.match(await page.textContent('.engine-column[data-engine="plugin"] .error'), /the component trapped/);
  assert.deepEqual(errors, []);
  await page.close();
});

test('the URL holds the scenario: a shared link opens the same scenario, bad parameters are named', async () => {
  const { page } = await open('?preset=upgrading&change_day=5&profile=mandatory&days=12&per_day=2&delay=0&seed=9&profile2=x&retry=abc');
  assert.equal(await page.inputValue('#preset'), 'upgrading');
  assert.equal(await page.inputValue('#change-day'), '5');
  assert.equal(await page.inputValue('#profile'), 'mandatory');
  assert.equal(await page.inputValue('#days'), '12');
  assert.match(await page.textContent('#preset-description'), /until day 5/);
  assert.match(await page.textContent('#problems'), /retry=abc is not understood/);
  const tries = byDelivery(await marks(page));
  assert.equal(tries.size, 24);
  const day5 = await page.evaluate(() => window.playground.deliveries(0).find((d) => d.startedAt >= 1767225600 + 5 * 86400));
  assert.equal(day5.steps[0].response.tier, 'legacy-tls'); // remembered, until the re-probe finds TLS 1.3
  const shared = page.url();
  const again = await browser.newPage();
  await again.goto(shared);
  await settled(again);
  assert.deepEqual(await marks(again), await marks(page));
  await again.close();
  await page.close();
});

test('a preset brings its peer and DANE records; the message\'s context stays', async () => {
  const { page } = await open('?preset=modern&days=2');
  await change(page, () => page.check('#requiretls'));
  await change(page, () => page.selectOption('#mta-sts', 'enforce'));
  await change(page, () => page.selectOption('#preset', 'dane-protected'));
  assert.equal(await page.inputValue('#dane'), 'usable');
  assert.equal(await page.isChecked('#requiretls'), true);
  assert.equal(await page.inputValue('#mta-sts'), 'enforce');
  await change(page, () => page.selectOption('#preset', 'legacy-only'));
  assert.equal(await page.inputValue('#dane'), 'none');
  assert.equal(await page.isChecked('#requiretls'), true);
  // REQUIRETLS to a TLS-1.0-only peer: authenticated TLS is refused, so the message bounces 5.7.10.
  const finals = (await marks(page)).filter((m) => m.action === 'bounce');
  assert.ok(finals.length > 0 && finals.every((m) => m.reason === 'requiretls-unsatisfiable' || m.reason === 'no-tier-left'));
  await page.close();
});

test('the timelines can show a few days: the marks of those days, hourly ticks, in the URL', async () => {
  const { page } = await open('?preset=legacy-only&view=0-1');
  const day0 = await marks(page);
  // Day 0: message 0's two attempts (modern, then legacy), then messages 1-3 at legacy.
  assert.deepEqual(day0.map((m) => `${m.delivery}:${m.tier}`), ['0:modern-tls', '0:legacy-tls', '1:legacy-tls', '2:legacy-tls', '3:legacy-tls']);
  assert.ok((await page.$$eval('svg .tick-label', (ls) => ls.map((l) => l.textContent))).includes('day 0 06h'));
  await page.click('.engine-column[data-engine="built-in"] svg .mark[data-delivery="0"][data-step="0"]');
  assert.match(await page.textContent('.engine-column[data-engine="built-in"] .details tr[data-key="outcome"]'), /tls-alert \(protocol-version\)/);
  await page.click('#view-all');
  assert.equal((await marks(page)).length, 125);
  assert.equal(new URL(page.url()).searchParams.has('view'), false);
  await page.fill('#view-from', '28');
  await page.press('#view-from', 'Enter');
  assert.equal(new URL(page.url()).searchParams.get('view'), '28-30');
  assert.ok((await marks(page)).every((m) => m.delivery >= 112));
  await page.close();
});

test('decisions shown in the page equal `tlsfallback decide` for the same requests', async () => {
  const { page } = await open('?preset=flaky-network&days=10&dane=unusable&threshold=2');
  const steps = await page.evaluate(() => window.playground.deliveries(0)
    .flatMap((d) => d.steps.map((s) => ({ request: s.request, response: s.response }))));
  assert.ok(steps.length > 40);
  const answers = cli(['decide'], steps.map((s) => JSON.stringify(s.request)).join('\n')).trim().split('\n');
  steps.forEach((step, i) => assert.deepEqual(JSON.parse(answers[i]), step.response, `step ${i}`));
  // And what the details panel prints is that same JSON.
  await page.click('.engine-column[data-engine="built-in"] svg .mark[data-delivery="3"][data-step="0"]');
  const request = await page.textContent('.engine-column[data-engine="built-in"] .details pre.request');
  const response = await page.textContent('.engine-column[data-engine="built-in"] .details pre.response');
  assert.deepEqual(JSON.parse(cli(['decide'], request)), JSON.parse(response));
  // The page's whole run is the CLI's simulation of the same preset.
  await change(page, async () => {
    await page.goto(`${server.url}?preset=flaky-network`);
  });
  const ours = await page.evaluate(() => window.playground.comparable('flaky-network', window.playground.results[0].run));
  const theirs = JSON.parse(cli(['simulate', '--preset', 'flaky-network', '--days', '30', '--json']));
  assert.deepEqual(ours, theirs);
  await page.close();
});

test('the built playground works as plain static files (any static server)', async () => {
  const python = spawn('python3', ['-m', 'http.server', '--bind', '127.0.0.1', '0', '--directory', PLAYGROUND], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const url = await new Promise((resolve, reject) => {
      let out = '';
      python.stdout.on('data', (chunk) => {
        out += chunk;
        const match = /port (\d+)/.exec(out);
        if (match) resolve(`http://127.0.0.1:${match[1]}/`);
      });
      python.on('exit', (code) => reject(new Error(`python3 -m http.server exited ${code}`)));
    });
    const page = await browser.newPage();
    await page.goto(`${url}?preset=legacy-only&days=3`);
    await settled(page);
    assert.equal(byDelivery(await marks(page)).get(0).at(-1).tier, 'legacy-tls');
    await page.close();
  } finally {
    python.kill();
  }
});

test('`tlsfallback playground` serves only the playground, with the types browsers require', async () => {
  const wasm = await fetch(`${server.url}vendor/policy/policy_engine.core.wasm`);
  assert.equal(wasm.headers.get('content-type'), 'application/wasm');
  const js = await fetch(`${server.url}src/app.js`);
  assert.equal(js.headers.get('content-type'), 'text/javascript; charset=utf-8');
  assert.equal((await fetch(`${server.url}no-such-file`)).status, 404);
  // fetch() would normalise the path; send it raw.
  const raw = await new Promise((resolve, reject) => {
    http.get(`${server.url}`, { path: '/src/%2e%2e/%2e%2e/Cargo.toml' }, (response) => resolve(response.statusCode)).on('error', reject);
  });
  assert.equal(raw, 400);
  assert.equal((await fetch(server.url, { method: 'POST' })).status, 405);
});

/**
 * A core module for the policy world whose `decide` runs `body` (by default: loops forever), in
 * the shape of the host suite's hostile fixtures (tests/tests/plugins/hostile.rs: a bump
 * allocator, a resource constructor).
 */
function loopingCoreModule(body = '(loop $forever (br $forever)) (i32.const 0)') {
  const i = 'tlsfallback:policy/engine@0.2.0';
  return `(module
  (import "[export]${i}" "[resource-new]decider" (func $new (param i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $at i32)
    (local.set $at (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (i32.add (local.get 3) (i32.const 8))))
    (local.get $at))
  (func (export "${i}#[constructor]decider") (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
    (call $new (i32.const 1)))
  (func (export "${i}#[dtor]decider") (param i32))
  (func (export "${i}#[method]decider.decide")
    (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i64) (result i32)
    ${body})
)`;
}
