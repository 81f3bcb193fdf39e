// The page's state and its URL form: every control is a query parameter, so a scenario is a link.
//
// Reading is strict: a parameter that is present but invalid is reported (and the default used in
// its place), never silently replaced. Writing leaves out nothing, so a link means the same thing
// after the defaults change.
import {
  BEHAVIOURS, DAY, DEFAULT_START, OUTCOMES, PRESETS, TIERS, defaultScenario,
} from './simulate.js';

export const PROFILES = ['opportunistic', 'mandatory', 'authenticated-only', 'no-fallback', 'browser-style'];
export const DANE = ['none', 'usable', 'unusable', 'lookup-failed'];
export const MTA_STS = ['none', 'testing', 'enforce', 'fetch-failed'];
/** Tiers strongest first, the order of the custom peer's fields in the URL. */
export const PEER_TIERS = [...TIERS].reverse();

/**
 * The page's state over the contract's default policy. The policy is kept in the wire form (a
 * request's `policy`, snake_case, intervals in seconds), so every request carries it as it is.
 */
export function defaultState(contractPolicy) {
  // The mail defaults of policy-core's `Scenario::new`, which the simulator mirrors.
  const mail = defaultScenario(PRESETS['legacy-only'].peer(), contractPolicy);
  return {
    preset: 'legacy-only',
    peer: mail.peer,
    policy: { ...contractPolicy },
    days: mail.days,
    messagesPerDay: mail.messagesPerDay,
    queueLifetimeDays: mail.queueLifetimeSecs / DAY,
    seed: mail.seed,
    /** The days the timelines show ({from, to}), or null for the whole run. */
    view: null,
  };
}

/** The simulation scenario (src/simulate.js) for a page state. */
export function scenarioOf(state) {
  return {
    peer: state.peer,
    policy: { ...state.policy },
    start: DEFAULT_START,
    days: state.days,
    messagesPerDay: state.messagesPerDay,
    queueLifetimeSecs: state.queueLifetimeDays * DAY,
    seed: state.seed,
  };
}

const behaviourText = (b) => PEER_TIERS.map((t) => b[t]).join(',');

/** The query string for a state. */
export function toQuery(state) {
  const q = new URLSearchParams();
  const { peer, policy } = state;
  q.set('preset', state.preset);
  q.set('peer', behaviourText(peer.behaviour));
  if (peer.change !== null) {
    q.set('change_day', String(peer.change.day));
    q.set('then', behaviourText(peer.change.behaviour));
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
  q.set('seed', String(state.seed));
  if (state.view !== null) q.set('view', `${state.view.from}-${state.view.to}`);
  return q.toString();
}

/**
 * Reads a state from a query string over the defaults. Returns `{state, problems}`: one line per
 * parameter that was present but not understood.
 */
export function fromQuery(search, defaults) {
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
    if (parts.length !== PEER_TIERS.length || parts.some((p) => !(p in OUTCOMES))) return undefined;
    return Object.fromEntries(PEER_TIERS.map((t, i) => [t, parts[i]]));
  };

  read('preset', (raw) => (raw === 'custom' || raw in PRESETS ? raw : undefined), (v) => {
    state.preset = v;
    if (v !== 'custom') state.peer = PRESETS[v].peer();
  });
  read('peer', behaviour, (v) => { state.peer.behaviour = v; });
  if (q.has('change_day') || q.has('then')) {
    state.peer.change ??= { day: 3, behaviour: { ...BEHAVIOURS.modern }, attacker: false };
  }
  read('change_day', int(0, 3650), (v) => { state.peer.change.day = v; });
  read('then', behaviour, (v) => { state.peer.change.behaviour = v; });
  read('attacker', flag, (v) => { if (state.peer.change !== null) state.peer.change.attacker = v; });
  read('resets', int(0, 100), (v) => { state.peer.resetPercent = v; });
  read('dane', oneOf(DANE), (v) => { state.peer.context.dane = v; });
  read('mta_sts', oneOf(MTA_STS), (v) => { state.peer.context.mtaSts = v; });
  read('requiretls', flag, (v) => { state.peer.context.requiretls = v; });
  read('tls_required_no', flag, (v) => { state.peer.context.tlsRequiredNo = v; });
  read('sasl', flag, (v) => { state.peer.context.sasl = v; });
  read('profile', oneOf(PROFILES), (v) => { state.policy.profile = v; });
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
  read('seed', int(0, Number.MAX_SAFE_INTEGER), (v) => { state.seed = v; });
  read('view', (raw) => {
    const match = /^(\d{1,4}(?:\.\d+)?)-(\d{1,4}(?:\.\d+)?)$/.exec(raw);
    if (match === null) return undefined;
    const [from, to] = [Number(match[1]), Number(match[2])];
    return from < to ? { from, to } : undefined;
  }, (v) => { state.view = v; });
  return { state, problems };
}
