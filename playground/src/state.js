// The page's state and its URL form: every control is a query parameter, so a scenario is a link.
//
// Reading is strict: a parameter that is present but invalid is reported (and the default used in
// its place), never silently replaced. Writing leaves out nothing, so a link means the same thing
// after the defaults change. Presets, case lists and the default backoff come from the page's
// model (src/model.js: the tools component and the contract).
import { DAY, DEFAULT_START } from './model.js';

/**
 * The page's state over the contract's default policy. The policy is kept in the wire form (a
 * request's `policy`, snake_case, intervals in seconds), so every request carries it as it is.
 */
export function defaultState(model, contractPolicy) {
  // The mail defaults of policy-core's `Scenario::new`, which `tlsfallback simulate` uses.
  const mail = model.defaultScenario(model.presets['legacy-only'].peer(), contractPolicy);
  return {
    preset: 'legacy-only',
    peer: mail.peer,
    policy: { ...contractPolicy },
    days: mail.days,
    messagesPerDay: mail.messagesPerDay,
    queueLifetimeDays: mail.queueLifetimeSecs / DAY,
    backoff: { ...mail.backoff },
    seed: mail.seed,
    /** The days the timelines show ({from, to}), or null for the whole run. */
    view: null,
  };
}

/** The simulation scenario (src/model.js) for a page state. */
export function scenarioOf(state) {
  return {
    peer: state.peer,
    policy: { ...state.policy },
    start: DEFAULT_START,
    days: state.days,
    messagesPerDay: state.messagesPerDay,
    queueLifetimeSecs: state.queueLifetimeDays * DAY,
    backoff: { ...state.backoff },
    seed: state.seed,
  };
}

const behaviourText = (model, b) => model.peerTiers.map((t) => b[t]).join(',');

/** The query string for a state. */
export function toQuery(model, state) {
  const q = new URLSearchParams();
  const { peer, policy } = state;
  q.set('preset', state.preset);
  q.set('peer', behaviourText(model, peer.behaviour));
  if (peer.change !== null) {
    q.set('change_day', String(peer.change.day));
    q.set('then', behaviourText(model, peer.change.behaviour));
    q.set('attacker', peer.change.attacker ? '1' : '0');
  }
  q.set('resets', String(peer.resetPercent));
  q.set('dane', peer.context.dane);
  q.set('mta_sts', peer.context.mtaSts);
  q.set('requiretls', peer.context.requiretls ? '1' : '0');
  q.set('tls_required_no', peer.context.tlsRequiredNo ? '1' : '0');
  q.set('sasl', peer.context.sasl ? '1' : '0');
  q.set('profile', policy.profile);
  q.set('legacy', policy.allow_legacy_tls ? '1' : '0');
  q.set('cleartext', policy.allow_cleartext ? '1' : '0');
  q.set('delay', String(policy.step_down_delay_secs));
  q.set('reprobe', String(policy.reprobe_interval_secs));
  q.set('pin', String(policy.pin_duration_secs));
  q.set('threshold', String(policy.transient_failure_threshold));
  q.set('retry', String(policy.retry_after_secs));
  q.set('days', String(state.days));
  q.set('per_day', String(state.messagesPerDay));
  q.set('lifetime', String(state.queueLifetimeDays));
  q.set('min_backoff', String(state.backoff.minimalSecs));
  q.set('max_backoff', String(state.backoff.maximalSecs));
  q.set('seed', String(state.seed));
  if (state.view !== null) q.set('view', `${state.view.from}-${state.view.to}`);
  return q.toString();
}

/**
 * Reads a state from a query string over the defaults. Returns `{state, problems}`: one line per
 * parameter that was present but not understood.
 */
export function fromQuery(model, search, defaults) {
  const q = new URLSearchParams(search);
  const problems = [];
  const state = structuredClone(defaults);
  const read = (name, parse, apply) => {
    if (!q.has(name)) return;
    const raw = q.get(name);
    const value = parse(raw);
    if (value === undefined) problems.push(`${name}=${raw} is not understood; kept ${name} at its default`);
    else apply(value);
  };
  const oneOf = (names) => (raw) => (names.includes(raw) ? raw : undefined);
  const flag = (raw) => (raw === '1' ? true : raw === '0' ? false : undefined);
  const int = (min, max) => (raw) => {
    if (!/^\d{1,10}$/.test(raw)) return undefined;
    const n = Number(raw);
    return n >= min && n <= max ? n : undefined;
  };
  const behaviour = (raw) => {
    const parts = raw.split(',');
    if (parts.length !== model.peerTiers.length || parts.some((p) => !model.outcomeNames.includes(p))) return undefined;
    return Object.fromEntries(model.peerTiers.map((t, i) => [t, parts[i]]));
  };

  read('preset', (raw) => (raw === 'custom' || Object.hasOwn(model.presets, raw) ? raw : undefined), (v) => {
    state.preset = v;
    if (v !== 'custom') state.peer = model.presets[v].peer();
  });
  read('peer', behaviour, (v) => { state.peer.behaviour = v; });
  if (q.has('change_day') || q.has('then')) {
    state.peer.change ??= { day: 3, behaviour: model.presets.modern.peer().behaviour, attacker: false };
  }
  read('change_day', int(0, 3650), (v) => { state.peer.change.day = v; });
  read('then', behaviour, (v) => { state.peer.change.behaviour = v; });
  read('attacker', flag, (v) => { if (state.peer.change !== null) state.peer.change.attacker = v; });
  read('resets', int(0, 100), (v) => { state.peer.resetPercent = v; });
  read('dane', oneOf(model.dane), (v) => { state.peer.context.dane = v; });
  read('mta_sts', oneOf(model.mtaSts), (v) => { state.peer.context.mtaSts = v; });
  read('requiretls', flag, (v) => { state.peer.context.requiretls = v; });
  read('tls_required_no', flag, (v) => { state.peer.context.tlsRequiredNo = v; });
  read('sasl', flag, (v) => { state.peer.context.sasl = v; });
  read('profile', oneOf(model.profiles), (v) => { state.policy.profile = v; });
  read('legacy', flag, (v) => { state.policy.allow_legacy_tls = v; });
  read('cleartext', flag, (v) => { state.policy.allow_cleartext = v; });
  read('delay', int(0, 0xffffffff), (v) => { state.policy.step_down_delay_secs = v; });
  read('reprobe', int(0, 0xffffffff), (v) => { state.policy.reprobe_interval_secs = v; });
  read('pin', int(0, 0xffffffff), (v) => { state.policy.pin_duration_secs = v; });
  read('threshold', int(0, 255), (v) => { state.policy.transient_failure_threshold = v; });
  read('retry', int(0, 0xffffffff), (v) => { state.policy.retry_after_secs = v; });
  read('days', int(1, 365), (v) => { state.days = v; });
  read('per_day', int(1, 96), (v) => { state.messagesPerDay = v; });
  read('lifetime', int(1, 30), (v) => { state.queueLifetimeDays = v; });
  // Postfix's bounds on its own settings: the minimal backoff at least a second, the maximal one
  // not below it (checked after both are read, so their order in the link does not matter).
  read('min_backoff', int(1, 0xffffffff), (v) => { state.backoff.minimalSecs = v; });
  read('max_backoff', int(1, 0xffffffff), (v) => { state.backoff.maximalSecs = v; });
  if (state.backoff.maximalSecs < state.backoff.minimalSecs) {
    problems.push(`max_backoff=${state.backoff.maximalSecs} is below min_backoff=${state.backoff.minimalSecs}; kept both at their defaults`);
    state.backoff = { ...defaults.backoff };
  }
  read('seed', int(0, Number.MAX_SAFE_INTEGER), (v) => { state.seed = v; });
  read('view', (raw) => {
    const match = /^(\d{1,4}(?:\.\d+)?)-(\d{1,4}(?:\.\d+)?)$/.exec(raw);
    if (match === null) return undefined;
    const [from, to] = [Number(match[1]), Number(match[2])];
    return from < to ? { from, to } : undefined;
  }, (v) => { state.view = v; });
  return { state, problems };
}
