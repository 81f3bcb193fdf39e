// The playground page: controls ⇄ state ⇄ URL, runs in the worker, results drawn per engine.
import { createKit } from '../vendor/kit/core.js';
import { DAY, DEFAULT_START, comparable, createModel, viewOf } from './model.js';
import { defaultState, fromQuery, scenarioOf, toQuery } from './state.js';
import { ComponentError, RUN_DEADLINE_MS, Simulator, transpileComponent } from './engines.js';
import { drawTimeline, highlight, outcomeClass } from './timeline.js';
import { hex, loadTools, readHistory } from './tools.js';

const $ = (id) => document.getElementById(id);
/** A JSON file of the build; a page served without its build says so instead of staying blank. */
async function buildFile(name) {
  const url = new URL(`../vendor/${name}`, import.meta.url);
  const response = await fetch(url).catch((error) => ({ ok: false, statusText: String(error) }));
  if (!response.ok) {
    const message = `The playground is not built: ${url.pathname} could not be loaded (${response.status ?? ''} `
      + `${response.statusText}). Run scripts/playground --build-only, or npm run build in playground/.`;
    $('status').textContent = message;
    document.body.dataset.state = 'failed';
    throw new Error(message);
  }
  return response.json();
}
const contract = await buildFile('kit/contract.json');
/** The tools component: the engine's own simulator, presets and history decoder. */
const toolsComponent = await loadTools(new URL('../vendor/tools/', import.meta.url), (url) => WebAssembly.compileStreaming(fetch(url)));
const { tools } = toolsComponent;
const model = createModel({ tools, kit: createKit({ engine: toolsComponent.engine, contract }) });
const build = await buildFile('build.json');
const simulator = new Simulator();

const initial = fromQuery(model, location.search, defaultState(model, contract.default_policy));
let state = initial.state;
/** The loaded component, if any: {name, transpiled}. */
let plugin = null;
/** The latest results: [{label, kind, run|error}], for the page and for tests (window.playground). */
let results = [];
let runCounter = 0;
/** The scenario of the results shown (redrawn, not rerun, when the view changes). */
let lastScenario = null;

// --- Controls ------------------------------------------------------------------------------------

function fillSelect(select, values, labels = {}) {
  select.replaceChildren(...values.map((value) => new Option(labels[value] ?? value, value)));
}

fillSelect($('preset'), [...Object.keys(model.presets), 'custom'], { custom: 'custom peer' });
fillSelect($('dane'), model.dane);
fillSelect($('mta-sts'), model.mtaSts);
fillSelect($('profile'), model.profiles);
for (const tier of model.peerTiers) {
  const row = $('peer-table').tBodies[0].insertRow();
  row.insertCell().textContent = tier;
  for (const when of ['before', 'after']) {
    const select = document.createElement('select');
    select.id = `${when}-${tier}`;
    select.setAttribute('aria-label', `${tier} ${when === 'before' ? 'before the change' : 'from the change on'}`);
    fillSelect(select, model.outcomeNames);
    row.insertCell().append(select);
  }
}

const days = (secs) => Math.round((secs / DAY) * 1000) / 1000;
const secs = (d) => Math.round(Number(d) * DAY);

/** Writes the state into the controls. */
function showState() {
  const { peer, policy } = state;
  $('preset').value = state.preset;
  $('preset-description').textContent = state.preset === 'custom'
    ? model.customDescription
    : model.presets[state.preset].describe(peer.change?.day ?? 0);
  for (const tier of model.peerTiers) {
    $(`before-${tier}`).value = peer.behaviour[tier];
    $(`after-${tier}`).value = (peer.change?.behaviour ?? peer.behaviour)[tier];
    $(`after-${tier}`).disabled = peer.change === null;
  }
  $('change-enabled').checked = peer.change !== null;
  $('change-day').value = peer.change?.day ?? 3;
  $('change-day').disabled = peer.change === null;
  $('attacker').checked = peer.change?.attacker ?? false;
  $('attacker').disabled = peer.change === null;
  $('resets').value = peer.resetPercent;
  $('dane').value = peer.context.dane;
  $('mta-sts').value = peer.context.mtaSts;
  $('requiretls').checked = peer.context.requiretls;
  $('tls-required-no').checked = peer.context.tlsRequiredNo;
  $('sasl').checked = peer.context.sasl;
  $('profile').value = policy.profile;
  $('allow-legacy').checked = policy.allow_legacy_tls;
  $('allow-cleartext').checked = policy.allow_cleartext;
  $('delay').value = policy.step_down_delay_secs;
  $('reprobe-days').value = days(policy.reprobe_interval_secs);
  $('pin-days').value = days(policy.pin_duration_secs);
  $('threshold').value = policy.transient_failure_threshold;
  $('retry').value = policy.retry_after_secs;
  $('days').value = state.days;
  $('per-day').value = state.messagesPerDay;
  $('lifetime').value = state.queueLifetimeDays;
  $('min-backoff').value = state.backoff.minimalSecs;
  $('max-backoff').value = state.backoff.maximalSecs;
  $('seed').value = state.seed;
  $('view-from').value = state.view?.from ?? 0;
  $('view-to').value = state.view?.to ?? state.days;
}

/** Reads a number control, or reports it and returns null. */
function number(id, min, max, problems) {
  const input = $(id);
  const value = Number(input.value);
  if (input.value === '' || !Number.isFinite(value) || value < min || value > max) {
    problems.push(`${input.closest('label')?.textContent.trim().replace(/\s+/g, ' ') ?? id}: ${JSON.stringify(input.value)} is not a number from ${min} to ${max}`);
    input.setAttribute('aria-invalid', 'true');
    return null;
  }
  input.removeAttribute('aria-invalid');
  return value;
}

/** Reads the controls into a new state; null (and the problems shown) when one is invalid. */
function readControls(changed) {
  const problems = [];
  const next = structuredClone(state);
  const { peer, policy } = next;
  if (changed === 'preset') {
    next.preset = $('preset').value;
    if (next.preset !== 'custom') {
      // The preset's peer, and its DANE records (the DANE-protected one has them); the message's
      // context (MTA-STS, REQUIRETLS, TLS-Required: No, SASL) stays as you set it.
      const { context } = next.peer;
      next.peer = model.presets[next.preset].peer();
      next.peer.context = { ...context, dane: next.peer.context.dane };
    }
    return next;
  }
  const customising = ['change-enabled', 'attacker', 'resets'].includes(changed)
    || changed?.startsWith('before-') || changed?.startsWith('after-');
  if (customising) next.preset = 'custom';
  for (const tier of model.peerTiers) peer.behaviour[tier] = $(`before-${tier}`).value;
  if ($('change-enabled').checked) {
    const day = number('change-day', 0, 3650, problems);
    const after = Object.fromEntries(model.peerTiers.map((t) => [t, $(`after-${t}`).value]));
    peer.change = {
      day: day === null ? 3 : Math.floor(day),
      behaviour: peer.change === null ? model.presets.modern.peer().behaviour : after,
      attacker: $('attacker').checked,
    };
  } else {
    peer.change = null;
  }
  peer.resetPercent = Math.floor(number('resets', 0, 100, problems) ?? 0);
  peer.context = {
    dane: $('dane').value,
    mtaSts: $('mta-sts').value,
    requiretls: $('requiretls').checked,
    tlsRequiredNo: $('tls-required-no').checked,
    sasl: $('sasl').checked,
  };
  policy.profile = $('profile').value;
  policy.allow_legacy_tls = $('allow-legacy').checked;
  policy.allow_cleartext = $('allow-cleartext').checked;
  policy.step_down_delay_secs = Math.floor(number('delay', 0, 3600, problems) ?? 0);
  policy.reprobe_interval_secs = secs(number('reprobe-days', 0, 49000, problems) ?? 0);
  policy.pin_duration_secs = secs(number('pin-days', 0, 49000, problems) ?? 0);
  policy.transient_failure_threshold = Math.floor(number('threshold', 0, 255, problems) ?? 0);
  policy.retry_after_secs = Math.floor(number('retry', 0, 86400, problems) ?? 0);
  next.days = Math.floor(number('days', 1, 365, problems) ?? 1);
  next.messagesPerDay = Math.floor(number('per-day', 1, 96, problems) ?? 1);
  next.queueLifetimeDays = Math.floor(number('lifetime', 1, 30, problems) ?? 1);
  const minimal = number('min-backoff', 1, 0xffffffff, problems);
  const maximal = number('max-backoff', 1, 0xffffffff, problems);
  if (minimal !== null && maximal !== null && maximal < minimal) {
    problems.push(`maximal backoff: ${maximal} s is below the minimal backoff (${minimal} s)`);
    $('max-backoff').setAttribute('aria-invalid', 'true');
  }
  next.backoff = { minimalSecs: Math.floor(minimal ?? 1), maximalSecs: Math.floor(maximal ?? 1) };
  next.seed = Math.floor(number('seed', 0, Number.MAX_SAFE_INTEGER, problems) ?? 0);
  showProblems(problems);
  return problems.length === 0 ? next : null;
}

function showProblems(problems) {
  $('problems').replaceChildren(...problems.map((p) => Object.assign(document.createElement('li'), { textContent: p })));
}

function setStatus(text) {
  $('status').textContent = text;
}

// --- Running -------------------------------------------------------------------------------------

/** The components you loaded, as the simulation workers take them. */
function pluginSpecs() {
  if (plugin === null) return [];
  const { js, cores, key } = plugin.transpiled;
  return [{ label: plugin.name, kind: 'plugin', key, js, cores }];
}

/**
 * The built-in engine's run, in the page: the tools component runs it whole inside itself (its
 * own engine is policy-core's) and the page lifts only the tries it shows.
 */
function runBuiltIn(scenario) {
  const started = performance.now();
  try {
    const run = model.runBuiltIn(scenario);
    return { label: 'built-in engine', run, timing: { simulateMs: performance.now() - started } };
  } catch (error) {
    const refusal = error?.payload?.tag;
    return { label: 'built-in engine', error: { message: refusal === undefined ? String(error?.message ?? error) : `the simulator refused the scenario: ${refusal}` } };
  }
}

/** Writes the state into the address bar. */
function writeUrl() {
  history.replaceState(null, '', `?${toQuery(model, state)}`);
}

async function run() {
  const id = ++runCounter;
  writeUrl();
  setStatus('running…');
  document.body.dataset.state = 'running';
  const scenario = scenarioOf(state);
  const started = performance.now();
  const deadline = Number($('deadline').value);
  const builtIn = runBuiltIn(scenario);
  const outcome = await simulator.run(scenario, pluginSpecs(),
    Number.isFinite(deadline) && deadline > 0 ? deadline * 1000 : RUN_DEADLINE_MS);
  if (id !== runCounter) {
    builtIn.run?.dispose();
    return;
  }
  const simulated = performance.now();
  for (const old of results) old.run?.dispose?.();
  results = [{ ...builtIn, kind: 'built-in' },
    ...outcome.map((r) => ({ ...r, kind: 'plugin', ...(r.run === undefined ? {} : { run: viewOf(r.run) }) }))];
  lastScenario = scenario;
  render(scenario);
  const drawn = performance.now();
  const decisions = results.reduce((n, r) => n + (r.run?.decisions ?? 0), 0);
  window.playground.timings = {
    decisions, simulateMs: simulated - started, drawMs: drawn - simulated,
    builtInDecisions: results[0].run?.decisions, builtInSimulateMs: builtIn.timing?.simulateMs,
  };
  setStatus(`${decisions} decisions in ${(simulated - started).toFixed(0)} ms, drawn in ${(drawn - simulated).toFixed(0)} ms`);
  document.body.dataset.state = 'done';
}

let pending = null;
function scheduleRun() {
  clearTimeout(pending);
  pending = setTimeout(run, 120);
}

// --- Rendering -----------------------------------------------------------------------------------

function clock(at) {
  const offset = at - DEFAULT_START;
  const d = Math.floor(offset / DAY);
  const rest = offset % DAY;
  const two = (n) => String(n).padStart(2, '0');
  return `day ${d} ${two(Math.floor(rest / 3600))}:${two(Math.floor((rest % 3600) / 60))}:${two(rest % 60)}`;
}

function duration(secsValue) {
  if (secsValue < 120) return `${secsValue} s`;
  if (secsValue < 7200) return `${(secsValue / 60).toFixed(1)} min`;
  if (secsValue < 2 * DAY) return `${(secsValue / 3600).toFixed(1)} h`;
  return `${(secsValue / DAY).toFixed(1)} days`;
}

const iso = (at) => new Date(Number(at) * 1000).toISOString().replace('.000Z', 'Z');

function row(tbody, label, value, key) {
  const tr = tbody.insertRow();
  tr.insertCell().textContent = label;
  const cell = tr.insertCell();
  if (value instanceof Node) cell.append(value);
  else cell.textContent = value;
  if (key !== undefined) tr.dataset.key = key;
  return tr;
}

function summarise(tbody, run) {
  const s = run.summary;
  const delivered = s.deliveredByTier.reduce((a, b) => a + b, 0);
  tbody.replaceChildren();
  row(tbody, 'Messages queued', String(s.messages), 'messages');
  model.peerTiers.forEach((tier) => {
    const count = s.deliveredByTier[model.tiers.indexOf(tier)];
    const share = delivered === 0 ? 0 : (100 * count) / delivered;
    const bar = document.createElement('span');
    bar.className = 'share';
    bar.innerHTML = `<span class="bar ${tier}" style="width:${share.toFixed(1)}%"></span>`;
    bar.append(`${count} (${share.toFixed(0)}%)`);
    row(tbody, `Delivered over ${tier}`, bar, `delivered-${tier}`);
  });
  row(tbody, 'Deferred tries', String(s.deferrals), 'deferrals');
  row(tbody, 'Bounced · expired · still queued', `${s.bounces} · ${s.expired} · ${s.stillQueued}`, 'lost');
  row(tbody, 'Attempts (failed)', `${s.attempts} (${s.failedAttempts})`, 'attempts');
  const sorted = [...s.latencySecs].sort((a, b) => a - b);
  const median = sorted.length === 0 ? null : sorted[Math.floor(sorted.length / 2)];
  row(tbody, 'Time lost to fallbacks', `${duration(s.fallbackDelaySecs)} of step-down delays; queue to delivery: median `
    + `${median === null ? '–' : duration(median)}, worst ${sorted.length === 0 ? '–' : duration(sorted.at(-1))}`, 'time-lost');
  row(tbody, 'While the attacker was on path', `${s.refusedToAttacker} tries refused, `
    + `${s.cleartextToAttacker} messages sent in cleartext`, 'attacker');
}

function describeOutcome(outcome) {
  if (outcome === null) return '–';
  const detail = outcome.version ?? outcome.alert ?? outcome.error ?? outcome.code;
  return detail === undefined ? outcome.outcome : `${outcome.outcome} (${detail})`;
}

function historyTable(base64) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const box = document.createElement('div');
  box.className = 'history';
  const code = document.createElement('code');
  code.className = 'history-hex';
  code.textContent = `${hex(bytes)}  (${bytes.length} bytes)`;
  box.append(code);
  const read = readHistory(tools, contract, bytes);
  if (read.error !== undefined) {
    box.append(Object.assign(document.createElement('p'), { className: 'error', textContent: `not a history this engine reads: ${read.error.message}` }));
    return box;
  }
  const { memory, dance } = read.history;
  const when = (t) => (t === 0n ? 'never' : `${iso(t)} (${clock(Number(t))})`);
  const table = document.createElement('table');
  table.className = 'history-decoded';
  const body = table.createTBody();
  row(body, 'start tier', memory.startTier ?? 'the strongest allowed');
  row(body, 'last success tier', memory.lastSuccessTier ?? '–');
  row(body, 'last success at', when(memory.lastSuccessAt));
  row(body, 'seen doing TLS', memory.seenTls ? 'yes' : 'no');
  row(body, 'pinned until', when(memory.pinnedUntil));
  row(body, 'last probe of the top tier', when(memory.lastProbeAt));
  row(body, 'transient failures in a row', String(memory.transientFailures));
  row(body, 'delivery in progress', dance == null ? 'none'
    : `at ${dance.tier}, ${dance.attempts} attempt(s)${dance.reachedTop ? ', top tier tried' : ''}`);
  box.append(table);
  return box;
}

function showDetails(column, result, d, s) {
  const delivery = result.run.delivery(d);
  const step = delivery.steps[s];
  const { request, response } = step;
  const panel = column.querySelector('.details');
  panel.hidden = false;
  panel.replaceChildren();
  panel.dataset.delivery = d;
  panel.dataset.step = s;
  const h = document.createElement('h3');
  h.textContent = `Message #${delivery.message}, try started ${clock(delivery.startedAt)}, step ${s + 1} of ${delivery.steps.length}`;
  panel.append(h);
  const table = document.createElement('table');
  const body = table.createTBody();
  row(body, 'asked at', `${iso(step.at)} (${clock(step.at)})`);
  row(body, 'action', response.action, 'action');
  if (response.action === 'attempt') {
    row(body, 'tier', response.tier, 'tier');
    row(body, 'delay', `${response.delay_secs} s`);
    row(body, 'TLS', response.tls === undefined ? 'none (cleartext)'
      : `${response.tls.min_version}–${response.tls.max_version}, ${response.tls.ciphers} suites, `
        + `security level ${response.tls.security_level}, verification ${response.tls.verification}`
        + `${response.tls.fallback_scsv ? ', fallback SCSV' : ''}`);
    row(body, 'the peer answered', describeOutcome(step.outcome), 'outcome');
  } else if (response.action === 'defer') {
    row(body, 'retry after', `${response.retry_after_secs} s`);
  } else if (response.action === 'bounce') {
    row(body, 'status', response.status);
  }
  const reason = document.createElement('span');
  reason.innerHTML = '<code class="reason"></code> ';
  reason.firstChild.textContent = response.reason;
  reason.append(response.explanation);
  row(body, 'reason', reason, 'reason');
  row(body, 'TLS-RPT result types', response.report.length === 0 ? 'none' : response.report.join(', '), 'report');
  if (delivery.attackerActive) row(body, 'attacker', 'on path during this try');
  panel.append(table);
  const historyHeading = document.createElement('h4');
  historyHeading.textContent = 'History the engine returned (the host stores it for the next call)';
  panel.append(historyHeading, historyTable(response.history));
  const wire = document.createElement('details');
  wire.className = 'wire';
  wire.innerHTML = '<summary>As <code>tlsfallback decide</code> JSON (replay it with the CLI)</summary>'
    + '<p>Request:</p><pre class="request"></pre><p>Response:</p><pre class="response"></pre>';
  wire.querySelector('.request').textContent = JSON.stringify(request);
  wire.querySelector('.response').textContent = JSON.stringify(response);
  panel.append(wire);
  highlight(column.querySelector('.timeline-box'), d, s);
  for (const chip of column.querySelectorAll('.log .chip.selected')) chip.classList.remove('selected');
  column.querySelector(`.log .chip[data-delivery="${d}"][data-step="${s}"]`)?.classList.add('selected');
}

function logList(list, run, select) {
  list.replaceChildren();
  run.all().forEach((delivery, d) => {
    const item = document.createElement('li');
    item.append(`${clock(delivery.startedAt)} #${delivery.message}${delivery.attackerActive ? ' (attacker)' : ''}: `);
    delivery.steps.forEach((step, s) => {
      const chip = document.createElement('button');
      chip.type = 'button';
      chip.className = `chip ${outcomeClass(step.outcome)}`;
      chip.dataset.delivery = d;
      chip.dataset.step = s;
      const r = step.response;
      chip.textContent = r.action === 'attempt' ? `${r.tier} → ${step.outcome.outcome}` : r.action;
      chip.title = r.reason;
      chip.addEventListener('click', () => select(d, s));
      item.append(chip);
    });
    const tier = delivery.deliveredTier;
    item.append(tier === null ? (delivery.expired ? ' expired' : '') : ` delivered over ${tier}`);
    list.append(item);
  });
}

/** The messages the two runs decided differently (their tries' reasons, message by message). */
function differingMessages(base, other) {
  const byMessage = (run) => {
    const out = new Map();
    for (const d of run.all()) {
      out.set(d.message, `${out.get(d.message) ?? ''}|${d.steps.map((s) => s.response.reason).join()}`);
    }
    return out;
  };
  const a = byMessage(base);
  const b = byMessage(other);
  const differing = new Set();
  for (const message of new Set([...a.keys(), ...b.keys()])) if (a.get(message) !== b.get(message)) differing.add(message);
  return differing;
}

/** The try in `to` that matches try `d` of `from`: the same message's same try (1st, 2nd, …). */
function counterpart(from, d, to) {
  const fromTries = from.all();
  const toTries = to.all();
  const { message } = fromTries[d];
  let nth = 0;
  for (let i = 0; i < d; i++) if (fromTries[i].message === message) nth += 1;
  for (let i = 0; i < toTries.length; i++) {
    if (toTries[i].message === message && nth-- === 0) return i;
  }
  return null;
}

function render(scenario) {
  const container = $('results');
  container.replaceChildren();
  container.classList.toggle('side-by-side', results.length > 1);
  const attackerFrom = state.peer.change?.attacker ? state.peer.change.day : null;
  /** The columns drawn so far that have a run (for linked selection). */
  const columns = [];
  for (const result of results) {
    const column = $('engine-column').content.firstElementChild.cloneNode(true);
    column.dataset.engine = result.kind;
    column.querySelector('h2').textContent = result.label;
    container.append(column);
    if (result.error !== undefined) {
      const error = column.querySelector('.error');
      error.hidden = false;
      error.textContent = `${result.label} failed: ${result.error.message}`
        + (result.error.request ? ` — on the request ${JSON.stringify(result.error.request)}` : '');
      column.querySelector('.summary').remove();
      continue;
    }
    summarise(column.querySelector('.summary tbody'), result.run);
    let outlined = new Set();
    if (result.kind === 'plugin' && results[0].run !== undefined) {
      outlined = differingMessages(results[0].run, result.run);
      row(column.querySelector('.summary tbody'), 'Compared with the built-in engine', outlined.size === 0
        ? 'the same decisions for every message'
        : `${outlined.size} of ${result.run.summary.messages} messages decided differently (outlined)`, 'differences');
    }
    columns.push({ column, result });
    // Selecting a step shows it, and the same message's same try in the other column.
    const select = (d, s) => {
      showDetails(column, result, d, s);
      for (const other of columns) {
        if (other.result === result) continue;
        const match = counterpart(result.run, d, other.result.run);
        if (match !== null) {
          showDetails(other.column, other.result, match, Math.min(s, other.result.run.delivery(match).steps.length - 1));
        }
      }
    };
    drawTimeline(column.querySelector('.timeline-box'), result.run, {
      start: scenario.start, days: scenario.days, attackerFrom, onSelect: select, outlined, view: state.view,
      onZoom: (view) => changeView(view),
    });
    // The list of every try is built when first opened: thousands of rows nobody asked for
    // would double the drawing time of a long attack.
    const logBox = column.querySelector('.log-box');
    logBox.addEventListener('toggle', () => {
      if (logBox.open && logBox.dataset.built === undefined) {
        logBox.dataset.built = '';
        logList(column.querySelector('.log'), result.run, select);
      }
    });
  }
}

// --- Components you load -------------------------------------------------------------------------

async function loadComponent(bytes, name) {
  $('plugin-status').textContent = `transpiling ${name} (${bytes.length} bytes) with jco…`;
  document.body.dataset.plugin = 'loading';
  try {
    const started = performance.now();
    const transpiled = await transpileComponent(bytes, name);
    plugin = { name, transpiled };
    simulator.forget([transpiled.key]);
    $('plugin-status').textContent = `${name}: ${bytes.length} bytes, exports ${transpiled.exportName}, `
      + `transpiled in ${(performance.now() - started).toFixed(0)} ms`;
    $('remove-plugin').hidden = false;
    document.body.dataset.plugin = 'loaded';
    await run();
  } catch (error) {
    plugin = null;
    $('plugin-status').textContent = error instanceof ComponentError ? error.message : `could not load ${name}: ${error}`;
    document.body.dataset.plugin = 'failed';
  }
}

$('plugin-file').addEventListener('change', async () => {
  const file = $('plugin-file').files[0];
  if (file !== undefined) await loadComponent(new Uint8Array(await file.arrayBuffer()), file.name);
});
$('load-example').addEventListener('click', async () => {
  const response = await fetch(new URL(`../vendor/${build.example_plugin}`, import.meta.url));
  await loadComponent(new Uint8Array(await response.arrayBuffer()), 'first-contact.wasm (example)');
});
$('load-example').hidden = build.example_plugin === undefined;
$('deadline').value = RUN_DEADLINE_MS / 1000;
$('remove-plugin').addEventListener('click', () => {
  plugin = null;
  simulator.forget([]);
  $('plugin-file').value = '';
  $('plugin-status').textContent = '';
  $('remove-plugin').hidden = true;
  delete document.body.dataset.plugin;
  run();
});

// --- Wiring --------------------------------------------------------------------------------------

$('controls').addEventListener('change', (event) => {
  if (event.target.id === 'plugin-file' || event.target.id === 'deadline') return;
  const next = readControls(event.target.id);
  if (next === null) return;
  state = next;
  showState();
  scheduleRun();
});
$('controls').addEventListener('submit', (event) => {
  event.preventDefault();
  const next = readControls(null);
  if (next !== null) {
    state = next;
    run();
  }
});
/** Redraws the timelines for the days the view controls ask for (no new run). */
function changeView(view) {
  const problems = [];
  if (view !== null && !(view.from >= 0 && view.to > view.from)) {
    problems.push(`days ${view.from} to ${view.to} is not a range of days; the timelines show them all`);
    view = null;
  }
  showProblems(problems);
  state = { ...state, view };
  showState();
  writeUrl();
  if (results.length > 0) render(lastScenario);
}
for (const id of ['view-from', 'view-to']) {
  $(id).addEventListener('change', () => changeView({ from: Number($('view-from').value), to: Number($('view-to').value) }));
}
$('view-all').addEventListener('click', () => changeView(null));
$('copy-link').addEventListener('click', async () => {
  writeUrl();
  try {
    await navigator.clipboard.writeText(location.href);
    setStatus('link copied');
  } catch {
    setStatus(`link: ${location.href}`);
  }
});
$('download-json').addEventListener('click', () => {
  const out = results.filter((r) => r.run !== undefined)
    .map((r) => ({ engine: r.label, ...comparable(state.preset, lastScenario, r.run) }));
  const blob = new Blob([`${JSON.stringify(out, null, 2)}\n`], { type: 'application/json' });
  const link = Object.assign(document.createElement('a'), { href: URL.createObjectURL(blob), download: `tlsfallback-${state.preset}.json` });
  link.click();
  URL.revokeObjectURL(link.href);
});

$('versions').textContent = `policy component ${build.component_bytes} bytes (${contract.interface}), transpiled by jco ${build.jco}`;
window.playground = {
  /** The current state (read-only use). */
  get state() { return state; },
  get results() { return results; },
  /** Every try of result `index`'s run (lifted from the component if not yet read). */
  deliveries: (index) => results[index].run.all(),
  /** The comparison form of a run shown, as `tlsfallback simulate --json` prints it. */
  comparable: (preset, run) => comparable(preset, lastScenario, run),
};
showProblems(initial.problems);
showState();
await run();
