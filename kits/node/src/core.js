// The browser-safe core of @tlsfallback/policy: names, input validation, the typed and wire
// (`tlsfallback decide` JSON) conversions and `PolicyEngine`, bound to a transpiled component by
// `createKit`. It imports nothing, so the Node entry point (index.js) and the browser playground
// (playground/) run the same code over the same component.

// --- Names ------------------------------------------------------------------------------------
//
// Every case list comes from the contract (kits/vectors/contract.json, whose `wit` section is
// generated from wit/policy.wit): the WIT's kebab-case names are the wire names; TLS versions use
// the wire names the contract gives (Node's, "TLSv1" ... "TLSv1.3"). `createKit` binds them; they
// are live bindings, so `index.js` re-exports them after binding.

export let TIERS;
export let PROFILES;
export let DANE_STATES;
export let MTA_STS_STATES;
export let TLS_ALERTS;
export let CERTIFICATE_ERRORS;
export let OUTCOMES;
/** Node's own names (tls.connect minVersion/maxVersion), also the wire names. */
export let TLS_VERSIONS;
/** RFC 8460 result types, in the WIT flags' declaration order (the order of `report`). */
export let TLS_RPT_RESULTS;
/** Every reason, in WIT declaration order. */
export let REASONS;
export let HISTORY_ERRORS;

let WIT_VERSION;
let WIRE_VERSION;
let RPT_FLAGS;
let TIER_SET;
let PROFILE_SET;
let DANE_SET;
let MTA_STS_SET;
let ALERT_SET;
let CERT_SET;
let OUTCOME_SET;
let boundFrom;

const camel = (name) => name.replace(/-([a-z])/g, (_, c) => c.toUpperCase());

/** The case list of the WIT type `name` in the contract; throws naming what is missing. */
function witCases(contract, kind, name) {
  const list = contract.wit?.[kind]?.[name];
  if (!Array.isArray(list) || list.length === 0) {
    throw new Error(`contract.json: wit.${kind} has no ${name} (regenerate kits/vectors/contract.json)`);
  }
  return Object.freeze(list.map((c) => (kind === 'variants' ? c.name : c)));
}

/** Binds the names from `contract`; a second kit must bring the same names. */
function bindNames(contract) {
  const wit = JSON.stringify(contract.wit) + JSON.stringify(contract.tls_version_names);
  if (boundFrom !== undefined) {
    if (boundFrom !== wit) throw new Error('createKit: this contract names other cases than the first kit\'s');
    return;
  }
  TIERS = witCases(contract, 'enums', 'tier');
  PROFILES = witCases(contract, 'enums', 'profile');
  DANE_STATES = witCases(contract, 'enums', 'dane');
  MTA_STS_STATES = witCases(contract, 'enums', 'mta-sts');
  TLS_ALERTS = witCases(contract, 'enums', 'tls-alert');
  CERTIFICATE_ERRORS = witCases(contract, 'enums', 'certificate-error');
  OUTCOMES = witCases(contract, 'variants', 'outcome');
  REASONS = witCases(contract, 'enums', 'reason');
  TLS_RPT_RESULTS = witCases(contract, 'flags', 'tls-rpt-results');
  HISTORY_ERRORS = witCases(contract, 'variants', 'history-error');
  const versions = witCases(contract, 'enums', 'tls-version');
  WIRE_VERSION = {};
  for (const version of versions) {
    const wire = contract.tls_version_names?.[version];
    if (typeof wire !== 'string') throw new Error(`contract.json: tls_version_names has no ${version}`);
    WIRE_VERSION[version] = wire;
  }
  WIT_VERSION = Object.fromEntries(Object.entries(WIRE_VERSION).map(([wit, wire]) => [wire, wit]));
  TLS_VERSIONS = Object.freeze(Object.values(WIRE_VERSION));
  RPT_FLAGS = TLS_RPT_RESULTS.map((name) => [camel(name), name]);
  TIER_SET = new Set(TIERS);
  PROFILE_SET = new Set(PROFILES);
  DANE_SET = new Set(DANE_STATES);
  MTA_STS_SET = new Set(MTA_STS_STATES);
  ALERT_SET = new Set(TLS_ALERTS);
  CERT_SET = new Set(CERTIFICATE_ERRORS);
  OUTCOME_SET = new Set(OUTCOMES);
  boundFrom = wit;
}

const U8 = 0xff;
const U16 = 0xffff;
const U32 = 0xffffffff;
const U64 = (1n << 64n) - 1n;

// --- Validation helpers: every failure names the field ---------------------------------------

const hasOwn = (object, key) => Object.prototype.hasOwnProperty.call(object, key);
const describe = (value) => (value === null ? 'null' : Array.isArray(value) ? 'an array'
  : typeof value === 'string' ? JSON.stringify(value) : typeof value);

function plainObject(value, field) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new TypeError(`${field} must be an object, not ${describe(value)}`);
  }
  return value;
}

function noUnknownKeys(object, allowed, field) {
  for (const key of Object.keys(object)) {
    if (!allowed.has(key)) {
      throw new TypeError(`${field} has an unknown key ${JSON.stringify(key)} `
        + `(expected one of ${[...allowed].join(', ')})`);
    }
  }
}

function oneOf(value, names, field) {
  if (typeof value !== 'string' || !names.has(value)) {
    const message = `${field} must be one of ${[...names].map((n) => JSON.stringify(n)).join(', ')}, `
      + `not ${describe(value)}`;
    throw typeof value === 'string' ? new RangeError(message) : new TypeError(message);
  }
  return value;
}

function bool(value, field) {
  if (typeof value !== 'boolean') throw new TypeError(`${field} must be a boolean, not ${describe(value)}`);
  return value;
}

function uint(value, max, field) {
  if (typeof value !== 'number') throw new TypeError(`${field} must be a number, not ${describe(value)}`);
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(`${field} must be an integer from 0 to ${max}, not ${value}`);
  }
  return value;
}

function unixSeconds(value, field) {
  if (typeof value === 'bigint') {
    if (value < 0n || value > U64) throw new RangeError(`${field} must be from 0 to 2^64-1, not ${value}`);
    return value;
  }
  if (typeof value !== 'number') {
    throw new TypeError(`${field} must be seconds since the Unix epoch (a number or bigint), not ${describe(value)}`);
  }
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${field} must be a non-negative integer number of seconds (use a bigint beyond 2^53), not ${value}`);
  }
  return BigInt(value);
}

/** Standard padded base64 of bytes (btoa, so the module also runs in browsers). */
export function toBase64(bytes) {
  let text = '';
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text);
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function historyBytes(value, field) {
  if (value === null || value === undefined) return undefined;
  if (!(value instanceof Uint8Array)) {
    throw new TypeError(`${field} must be a Uint8Array (or Buffer) or null, not ${describe(value)}`);
  }
  return value;
}

function historyBase64(value, field) {
  if (value === null || value === undefined) return undefined;
  if (typeof value !== 'string') throw new TypeError(`${field} must be a base64 string or null, not ${describe(value)}`);
  if (!BASE64.test(value)) throw new RangeError(`${field} is not valid base64 (standard alphabet, padded)`);
  return Uint8Array.from(atob(value), (c) => c.charCodeAt(0));
}

// --- Policy ------------------------------------------------------------------------------------

/** [wire name, camelCase name, validator] for each policy field, in WIT order. */
const POLICY_FIELDS = [
  ['profile', 'profile', (v, f) => oneOf(v, PROFILE_SET, f)],
  ['allow_legacy_tls', 'allowLegacyTls', bool],
  ['allow_cleartext', 'allowCleartext', bool],
  ['step_down_delay_secs', 'stepDownDelaySecs', (v, f) => uint(v, U32, f)],
  ['reprobe_interval_secs', 'reprobeIntervalSecs', (v, f) => uint(v, U32, f)],
  ['pin_duration_secs', 'pinDurationSecs', (v, f) => uint(v, U32, f)],
  ['transient_failure_threshold', 'transientFailureThreshold', (v, f) => uint(v, U8, f)],
  ['retry_after_secs', 'retryAfterSecs', (v, f) => uint(v, U32, f)],
];
const WIRE_POLICY_KEYS = new Set(POLICY_FIELDS.map(([wire]) => wire));
const CAMEL_POLICY_KEYS = new Set(POLICY_FIELDS.map(([, key]) => key));

/** Applies overrides (camelCase keys, or wire snake_case keys when `wire`) to a policy. */
function applyPolicy(base, overrides, field, wire) {
  if (overrides === undefined || overrides === null) return base;
  plainObject(overrides, field);
  noUnknownKeys(overrides, wire ? WIRE_POLICY_KEYS : CAMEL_POLICY_KEYS, field);
  const policy = { ...base };
  for (const [wireKey, key, check] of POLICY_FIELDS) {
    const name = wire ? wireKey : key;
    if (hasOwn(overrides, name)) policy[key] = check(overrides[name], `${field}.${name}`);
  }
  return policy;
}

const policyKey = (p) => `${p.profile}|${+p.allowLegacyTls}|${+p.allowCleartext}|${p.stepDownDelaySecs}|`
  + `${p.reprobeIntervalSecs}|${p.pinDurationSecs}|${p.transientFailureThreshold}|${p.retryAfterSecs}`;

// --- Inputs ------------------------------------------------------------------------------------

const NO_CONTEXT = Object.freeze({ dane: 'none', mtaSts: 'none', requiretls: false, tlsRequiredNo: false, sasl: false });
const CONTEXT_KEYS = new Set(['dane', 'mtaSts', 'requiretls', 'tlsRequiredNo', 'sasl']);
const WIRE_CONTEXT_KEYS = new Set(['dane', 'mta_sts', 'requiretls', 'tls_required_no', 'sasl']);

function toContext(value, field, wire) {
  if (value === undefined || value === null) return NO_CONTEXT;
  plainObject(value, field);
  noUnknownKeys(value, wire ? WIRE_CONTEXT_KEYS : CONTEXT_KEYS, field);
  const mtaStsKey = wire ? 'mta_sts' : 'mtaSts';
  const noKey = wire ? 'tls_required_no' : 'tlsRequiredNo';
  return {
    dane: value.dane === undefined ? 'none' : oneOf(value.dane, DANE_SET, `${field}.dane`),
    mtaSts: value[mtaStsKey] === undefined ? 'none' : oneOf(value[mtaStsKey], MTA_STS_SET, `${field}.${mtaStsKey}`),
    requiretls: value.requiretls === undefined ? false : bool(value.requiretls, `${field}.requiretls`),
    tlsRequiredNo: value[noKey] === undefined ? false : bool(value[noKey], `${field}.${noKey}`),
    sasl: value.sasl === undefined ? false : bool(value.sasl, `${field}.sasl`),
  };
}

/** Which detail key each outcome takes (besides `kind`/`outcome`). */
const OUTCOME_DETAIL = {
  success: ['version', 'cipher'],
  'starttls-rejected': ['code'],
  'tls-alert': ['alert'],
  'certificate-error': ['error'],
};

/** Converts an outcome, `{kind, ...details}` (typed) or the wire `last` (`{tier, outcome,
 * ...details}`), into the WIT variant. */
function toOutcome(value, kind, field, kindField, wire) {
  oneOf(kind, OUTCOME_SET, `${field}.${kindField}`);
  const details = OUTCOME_DETAIL[kind] ?? [];
  for (const key of Object.keys(value)) {
    if (key !== kindField && !(wire && key === 'tier') && !details.includes(key)) {
      throw new TypeError(`${field} has key ${JSON.stringify(key)}, which does not apply to outcome ${JSON.stringify(kind)}`
        + (details.length ? ` (it takes ${details.join(', ')})` : ' (it takes no details)'));
    }
  }
  switch (kind) {
    case 'success': {
      const version = value.version;
      if (value.cipher !== undefined && value.cipher !== null && typeof value.cipher !== 'string') {
        throw new TypeError(`${field}.cipher must be a string, not ${describe(value.cipher)}`);
      }
      if (version === undefined || version === null) return { tag: 'success', val: undefined };
      if (typeof version !== 'string' || !hasOwn(WIT_VERSION, version)) {
        const message = `${field}.version must be one of ${TLS_VERSIONS.map((v) => JSON.stringify(v)).join(', ')} `
          + `(or absent for cleartext), not ${describe(version)}`;
        throw typeof version === 'string' ? new RangeError(message) : new TypeError(message);
      }
      return { tag: 'success', val: WIT_VERSION[version] };
    }
    case 'starttls-rejected':
      if (value.code === undefined) throw new TypeError(`${field}.code is required for outcome "starttls-rejected"`);
      return { tag: kind, val: uint(value.code, U16, `${field}.code`) };
    case 'tls-alert':
      if (value.alert === undefined) throw new TypeError(`${field}.alert is required for outcome "tls-alert"`);
      return { tag: kind, val: oneOf(value.alert, ALERT_SET, `${field}.alert`) };
    case 'certificate-error':
      if (value.error === undefined) throw new TypeError(`${field}.error is required for outcome "certificate-error"`);
      return { tag: kind, val: oneOf(value.error, CERT_SET, `${field}.error`) };
    default:
      return { tag: kind };
  }
}

function toLastTyped(value, field) {
  if (value === undefined || value === null) return undefined;
  plainObject(value, field);
  noUnknownKeys(value, new Set(['tier', 'outcome']), field);
  const tier = oneOf(value.tier, TIER_SET, `${field}.tier`);
  const outcome = plainObject(value.outcome, `${field}.outcome`);
  return { tier, outcome: toOutcome(outcome, outcome.kind, `${field}.outcome`, 'kind', false) };
}

function toLastWire(value, field) {
  if (value === undefined || value === null) return undefined;
  plainObject(value, field);
  const tier = oneOf(value.tier, TIER_SET, `${field}.tier`);
  return { tier, outcome: toOutcome(value, value.outcome, field, 'outcome', true) };
}

// --- Outputs -----------------------------------------------------------------------------------

/** The wire form of a WIT outcome: `{outcome}` and its detail (`version`, `code`, `alert`, `error`). */
function wireOutcome(outcome) {
  switch (outcome.tag) {
    case 'success':
      return outcome.val === undefined ? { outcome: 'success' } : { outcome: 'success', version: WIRE_VERSION[outcome.val] };
    case 'starttls-rejected':
      return { outcome: outcome.tag, code: outcome.val };
    case 'tls-alert':
      return { outcome: outcome.tag, alert: outcome.val };
    case 'certificate-error':
      return { outcome: outcome.tag, error: outcome.val };
    default:
      return { outcome: outcome.tag };
  }
}

function reportNames(flags) {
  const names = [];
  for (const [key, name] of RPT_FLAGS) if (flags[key]) names.push(name);
  return names;
}

function historyErrorMessage(contract, error) {
  return contract.history_errors[error.tag].replaceAll('{0}', String(error.val));
}

function explanation(contract, reason) {
  return contract.explanations[reason];
}

function tlsParameters(tls) {
  return {
    minVersion: WIRE_VERSION[tls.minVersion],
    maxVersion: WIRE_VERSION[tls.maxVersion],
    ciphers: tls.ciphers,
    securityLevel: tls.securityLevel,
    verification: tls.verification,
    fallbackScsv: tls.fallbackScsv,
  };
}

/** The typed decision (see index.d.ts `Decision`). */
function typedDecision(contract, d) {
  const out = { action: d.action.tag };
  switch (d.action.tag) {
    case 'attempt': {
      const a = d.action.val;
      out.tier = a.tier;
      out.tls = a.tls === undefined ? null : tlsParameters(a.tls);
      out.delaySecs = a.delaySecs;
      break;
    }
    case 'defer':
      out.retryAfterSecs = d.action.val;
      break;
    case 'bounce': {
      const s = d.action.val;
      out.status = { class: s.class, subject: s.subject, detail: s.detail, text: `${s.class}.${s.subject}.${s.detail}` };
      break;
    }
    default:
      break;
  }
  out.reason = d.reason;
  out.explanation = explanation(contract, d.reason);
  out.report = reportNames(d.report);
  out.history = d.history;
  out.historyError = d.historyError === undefined ? null : {
    kind: d.historyError.tag,
    ...(d.historyError.val === undefined ? {} : { value: d.historyError.val }),
    message: historyErrorMessage(contract, d.historyError),
  };
  return out;
}

/** The wire response, keys in the order `tlsfallback decide` writes them. */
function wireResponse(contract, peer, d) {
  const out = { peer, action: d.action.tag };
  switch (d.action.tag) {
    case 'attempt': {
      const a = d.action.val;
      out.tier = a.tier;
      if (a.tls !== undefined) {
        const t = a.tls;
        out.tls = {
          min_version: WIRE_VERSION[t.minVersion],
          max_version: WIRE_VERSION[t.maxVersion],
          ciphers: t.ciphers,
          security_level: t.securityLevel,
          verification: t.verification,
          fallback_scsv: t.fallbackScsv,
        };
      }
      out.delay_secs = a.delaySecs;
      break;
    }
    case 'defer':
      out.retry_after_secs = d.action.val;
      break;
    case 'bounce': {
      const s = d.action.val;
      out.status = `${s.class}.${s.subject}.${s.detail}`;
      break;
    }
    default:
      break;
  }
  out.history = toBase64(d.history);
  out.reason = d.reason;
  out.explanation = explanation(contract, d.reason);
  out.report = reportNames(d.report);
  if (d.historyError !== undefined) out.history_error = historyErrorMessage(contract, d.historyError);
  return out;
}

// --- The engine --------------------------------------------------------------------------------

const DECIDE_KEYS = new Set(['context', 'history', 'last', 'now', 'policy']);
const REQUEST_KEYS = new Set(['peer', 'now', 'history', 'last', 'context', 'policy']);

/**
 * Binds the kit to one transpiled policy component and the shared contract.
 *
 * `engine` is the component's exported `tlsfallback:policy/engine` interface as jco transpiles it
 * (an object with a `Decider` class): the built-in component or any operator's policy component.
 * `contract` is kits/vectors/contract.json, parsed. `fleet`, optional, is the component's
 * exported `tlsfallback:policy/fleet` interface (the built-in component has it; a plugin need
 * not): the history merge of `adoptShared` and `blobToShare`. Throws when the contract is
 * incomplete: fail at load, not mid-delivery.
 *
 * @returns {{PolicyEngine: typeof PolicyEngine, DEFAULT_POLICY: object, contract: object, INTERFACE: string,
 *   adoptShared: Function, blobToShare: Function, sharesHistories: boolean}}
 */
export function createKit({ engine, contract, fleet }) {
  if (typeof engine?.Decider !== 'function') {
    throw new TypeError('createKit: engine must be the component\'s exported engine interface (with a Decider class)');
  }
  plainObject(contract, 'contract');
  bindNames(contract);
  for (const reason of REASONS) {
    if (typeof contract.explanations?.[reason] !== 'string') {
      throw new Error(`contract has no explanation for reason ${reason}`);
    }
  }
  for (const kind of HISTORY_ERRORS) {
    if (typeof contract.history_errors?.[kind] !== 'string') {
      throw new Error(`contract has no message for history error ${kind}`);
    }
  }

  /** The contract's default policy (camelCase keys), validated once at load. */
  const DEFAULT_POLICY = Object.freeze(applyPolicy({}, contract.default_policy,
    'contract.default_policy', true));
  for (const [, key] of POLICY_FIELDS) {
    if (!hasOwn(DEFAULT_POLICY, key)) throw new Error(`contract.json: default_policy lacks ${key}`);
  }

  /**
   * An operator's policy and the deciders made from it.
   *
   * ```js
   * const engine = new PolicyEngine({ pinDurationSecs: 0 });
   * const d = engine.decide({ history: null, last: null, now: Date.now() / 1000 | 0 });
   * ```
   */
  class PolicyEngine {
    /** @type {Map<string, object>} */
    #deciders = new Map();
    #maxDeciders;
    #baseDecider;

    /**
     * @param {Partial<import('./index.js').Policy>} [policy] overrides (camelCase keys) of the
     *   contract's default policy. Unknown keys and wrong types throw.
     * @param {{maxDeciders?: number}} [options] how many per-policy deciders to keep (default 64;
     *   the least recently made is dropped beyond that).
     */
    constructor(policy, options = {}) {
      /** The effective base policy (frozen). */
      this.policy = Object.freeze(applyPolicy(DEFAULT_POLICY, policy, 'policy', false));
      plainObject(options, 'options');
      noUnknownKeys(options, new Set(['maxDeciders']), 'options');
      this.#maxDeciders = options.maxDeciders === undefined ? 64
        : uint(options.maxDeciders, 1 << 20, 'options.maxDeciders') || 1;
      this.#baseDecider = this.#decider(this.policy);
    }

    /** The cached decider for a full policy. */
    #decider(policy) {
      const key = policyKey(policy);
      let decider = this.#deciders.get(key);
      if (decider === undefined) {
        decider = new engine.Decider(policy);
        if (this.#deciders.size >= this.#maxDeciders) {
          // Drop the oldest, never the base policy's.
          for (const [oldKey, old] of this.#deciders) {
            if (old === this.#baseDecider) continue;
            this.#deciders.delete(oldKey);
            old[Symbol.dispose]?.();
            break;
          }
        }
        this.#deciders.set(key, decider);
      }
      return decider;
    }

    /** The number of deciders (distinct policies) currently cached. */
    get cachedDeciders() {
      return this.#deciders.size;
    }

    /**
     * Decides what the MTA does next for one peer (typed API).
     *
     * @param {import('./index.js').DecideInput} input
     * @returns {import('./index.js').Decision}
     */
    decide(input) {
      plainObject(input, 'input');
      noUnknownKeys(input, DECIDE_KEYS, 'input');
      const decider = input.policy === undefined || input.policy === null ? this.#baseDecider
        : this.#decider(applyPolicy(this.policy, input.policy, 'input.policy', false));
      const context = toContext(input.context, 'input.context', false);
      const history = historyBytes(input.history, 'input.history');
      const last = toLastTyped(input.last, 'input.last');
      if (!hasOwn(input, 'now')) throw new TypeError('input.now is required (seconds since the Unix epoch)');
      const now = unixSeconds(input.now, 'input.now');
      return typedDecision(contract, decider.decide(context, history, last, now));
    }

    /**
     * Answers one `tlsfallback decide` request line (already parsed from JSON) with the response
     * object `tlsfallback decide` writes. `request.policy` overrides (snake_case) apply to this
     * engine's policy, as the CLI applies them to its policy file.
     *
     * @param {import('./index.js').WireRequest} request
     * @returns {import('./index.js').WireResponse}
     */
    decideJson(request) {
      plainObject(request, 'request');
      noUnknownKeys(request, REQUEST_KEYS, 'request');
      if (typeof request.peer !== 'string') throw new TypeError(`request.peer must be a string, not ${describe(request.peer)}`);
      if (!hasOwn(request, 'now')) throw new TypeError('request.now is required (seconds since the Unix epoch)');
      const now = unixSeconds(request.now, 'request.now');
      let decider = this.#baseDecider;
      const overrides = request.policy;
      if (overrides !== undefined && overrides !== null) {
        plainObject(overrides, 'request.policy');
        if (Object.keys(overrides).length !== 0) {
          decider = this.#decider(applyPolicy(this.policy, overrides, 'request.policy', true));
        }
      }
      const context = toContext(request.context, 'request.context', true);
      const history = historyBase64(request.history, 'request.history');
      const last = toLastWire(request.last, 'request.last');
      return wireResponse(contract, request.peer, decider.decide(context, history, last, now));
    }

    /**
     * Answers one JSON line (a string) with one JSON line, as `tlsfallback decide` does: a line
     * that cannot be parsed or is invalid gets `{"line": N, "error": "..."}` when `lineNumber` is
     * given, and throws otherwise.
     * @param {string} line
     * @param {number} [lineNumber]
     * @returns {string}
     */
    decideLine(line, lineNumber) {
      try {
        return JSON.stringify(this.decideJson(JSON.parse(line)));
      } catch (error) {
        if (lineNumber === undefined) throw error;
        return JSON.stringify({ line: lineNumber, error: error.message });
      }
    }

    /** Drops every cached decider. The engine can still be used (deciders are made again). */
    close() {
      for (const decider of this.#deciders.values()) decider[Symbol.dispose]?.();
      this.#deciders.clear();
      this.#baseDecider = this.#decider(this.policy);
    }
  }

  /**
   * The conversions between the WIT records a component takes and gives (as jco lifts them) and
   * the `tlsfallback decide` wire format, for hosts that call a component's `Decider` themselves
   * (the playground steps the tools component's simulation with any engine and shows each step
   * as the CLI would print it).
   */
  const wire = Object.freeze({
    /** The WIT policy for wire (snake_case) overrides of the contract's default policy. */
    policy: (overrides) => applyPolicy(DEFAULT_POLICY, overrides, 'policy', true),
    /** The WIT outcome of a wire outcome (`{outcome, version|code|alert|error}`). */
    outcome: (value) => toOutcome(plainObject(value, 'outcome'), value.outcome, 'outcome', 'outcome', false),
    /** The wire form (`{outcome, ...details}`) of a WIT outcome. */
    outcomeOf: wireOutcome,
    /** The wire `context` of a WIT delivery context, fields at their defaults left out. */
    context: (context) => {
      const out = {};
      if (context.dane !== 'none') out.dane = context.dane;
      if (context.mtaSts !== 'none') out.mta_sts = context.mtaSts;
      if (context.requiretls) out.requiretls = true;
      if (context.tlsRequiredNo) out.tls_required_no = true;
      if (context.sasl) out.sasl = true;
      return out;
    },
    /** The response `tlsfallback decide` writes for a WIT decision about `peer`. */
    response: (peer, decision) => wireResponse(contract, peer, decision),
  });

  /**
   * Calls one function of the component's fleet interface: its answer, or a
   * `HistoryUnreadableError` for the `history-error` it returned.
   */
  const fleetCall = (name, ...args) => {
    if (typeof fleet?.[name] !== 'function') {
      throw new Error(`the component does not export ${contract.fleet?.interface ?? 'the fleet interface'}: `
        + 'it cannot merge histories');
    }
    try {
      return fleet[name](...args);
    } catch (error) {
      const tag = error?.payload?.tag;
      if (typeof tag !== 'string') throw error;
      throw new HistoryUnreadableError(tag, error.payload.val, historyErrorMessage(contract, error.payload));
    }
  };

  /**
   * The history to decide with: `local` (null for a peer this node never met) with the fleet's
   * `shared` copy merged in, and `local`'s own dance (the component's `fleet.adopt-shared`).
   * Throws `HistoryUnreadableError` for the first blob that cannot be read (`local` first):
   * decide with `local` as it is then.
   * @param {Uint8Array|null} local
   * @param {Uint8Array} shared
   * @returns {Uint8Array}
   */
  const adoptShared = (local, shared) => {
    const localBytes = historyBytes(local, 'local');
    if (!(shared instanceof Uint8Array)) throw new TypeError(`shared must be a Uint8Array (or Buffer), not ${describe(shared)}`);
    return fleetCall('adoptShared', localBytes, shared);
  };

  /**
   * The shared copy to write after `local` changed, over the copy `shared` last read (null: none):
   * both memories merged, no dance; an unreadable `shared` is replaced by the local memory
   * (`fleet.blob-to-share`). Equal to `shared`: nothing to write. Throws
   * `HistoryUnreadableError` when `local` cannot be read.
   * @param {Uint8Array} local
   * @param {Uint8Array|null} shared
   * @returns {Uint8Array}
   */
  const blobToShare = (local, shared) => {
    if (!(local instanceof Uint8Array)) throw new TypeError(`local must be a Uint8Array (or Buffer), not ${describe(local)}`);
    return fleetCall('blobToShare', local, historyBytes(shared, 'shared'));
  };

  return Object.freeze({
    PolicyEngine, DEFAULT_POLICY, contract, INTERFACE: contract.interface, wire,
    adoptShared, blobToShare, sharesHistories: typeof fleet?.adoptShared === 'function',
  });
}

/** A history blob given to the fleet merge cannot be read. */
export class HistoryUnreadableError extends Error {
  /**
   * @param {string} kind the `history-error` case (`truncated`, `too-long`, ...)
   * @param {number|undefined} value its number, for the cases that carry one
   * @param {string} message contract.json's message
   */
  constructor(kind, value, message) {
    super(message);
    this.name = 'HistoryUnreadableError';
    this.kind = kind;
    if (value !== undefined) this.value = value;
  }
}

/** Converts a typed decision's `tls` into `tls.connect` options for Node (no cipher strings:
 * `ciphers` and the security level are returned as OpenSSL strings you may adjust). */
export function nodeTlsOptions(tls) {
  if (tls === null || tls === undefined) return null;
  plainObject(tls, 'tls');
  const ciphers = tls.ciphers === 'strong'
    ? 'ECDHE+AESGCM:ECDHE+CHACHA20'
    : 'ALL:!aNULL:!eNULL';
  return {
    minVersion: tls.minVersion,
    maxVersion: tls.maxVersion,
    ciphers: `${ciphers}:@SECLEVEL=${tls.securityLevel}`,
    rejectUnauthorized: tls.verification === 'webpki',
  };
}

/** The wire name of a TLS version Node reports (`tlsSocket.getProtocol()`), or undefined. */
export function tlsVersionFromNode(protocol) {
  return typeof protocol === 'string' && hasOwn(WIT_VERSION, protocol) ? protocol : undefined;
}

