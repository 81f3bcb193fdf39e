// The page's words for the tools component (bindings/tools, `tlsfallback:policy/tools`): the peer
// outcomes by the short names the controls and links use, the presets the component lists, a
// scenario in the component's form, and a run as the page shows it, each step as the
// `tlsfallback decide` request and response the CLI would print for it.
//
// Nothing is simulated or decided here. The component runs policy-core's simulator, the one
// `tlsfallback simulate` runs, with its own engine (`run`) or stepped with any engine
// (`Simulation`); this module only renames its records. Case lists come from the contract
// (kits/vectors/contract.json, generated from the WIT) through the kit.
import { MTA_STS_STATES, DANE_STATES, PROFILES, TIERS, toBase64 } from '../vendor/kit/core.js';

/** Seconds in a simulated day. */
export const DAY = 86400;
/** 2026-01-01T00:00:00Z, where `tlsfallback simulate` starts (the tests hold the two equal). */
export const DEFAULT_START = 1767225600;
/** The peer name put in the requests shown (any name: the engine never reads it). */
export const PEER_NAME = 'mx.peer.example';

/**
 * What a simulated peer can answer, by the page's short name, in wire form. The names are the
 * page's (its URLs keep them); `createModel` checks every one against the WIT's outcomes.
 */
export const OUTCOMES = Object.freeze({
  'success-tls13': { outcome: 'success', version: 'TLSv1.3' },
  'success-tls12': { outcome: 'success', version: 'TLSv1.2' },
  'success-tls10': { outcome: 'success', version: 'TLSv1' },
  'success-cleartext': { outcome: 'success' },
  'alert-protocol-version': { outcome: 'tls-alert', alert: 'protocol-version' },
  'alert-handshake-failure': { outcome: 'tls-alert', alert: 'handshake-failure' },
  'alert-insufficient-security': { outcome: 'tls-alert', alert: 'insufficient-security' },
  'alert-inappropriate-fallback': { outcome: 'tls-alert', alert: 'inappropriate-fallback' },
  'starttls-not-offered': { outcome: 'starttls-not-offered' },
  'starttls-rejected-454': { outcome: 'starttls-rejected', code: 454 },
  'certificate-expired': { outcome: 'certificate-error', error: 'expired' },
  'certificate-untrusted': { outcome: 'certificate-error', error: 'untrusted' },
  'certificate-name-mismatch': { outcome: 'certificate-error', error: 'name-mismatch' },
  'certificate-dane-mismatch': { outcome: 'certificate-error', error: 'dane-mismatch' },
  'handshake-timeout': { outcome: 'handshake-timeout' },
  'connection-reset': { outcome: 'connection-reset' },
  'post-handshake-failure': { outcome: 'post-handshake-failure' },
  'connect-failed': { outcome: 'connect-failed' },
});

const camel = (name) => name.replace(/-([a-z])/g, (_, c) => c.toUpperCase());

/**
 * The page's model over an instantiated tools component (`tools`, its `tlsfallback:policy/tools`
 * export) and a kit (`createKit` of kits/node/src/core.js). Throws at load when the page names an
 * outcome the WIT does not have, or the component lists one the page has no name for.
 */
export function createModel({ tools, kit }) {
  const { wire } = kit;
  const witOutcome = Object.fromEntries(Object.entries(OUTCOMES).map(([name, o]) => [name, wire.outcome(o)]));
  const nameOf = new Map(Object.entries(witOutcome).map(([name, o]) => [JSON.stringify(o), name]));
  const outcomeName = (outcome) => {
    const name = nameOf.get(JSON.stringify(outcome));
    if (name === undefined) {
      throw new Error(`the tools component names an outcome the page has no name for: ${JSON.stringify(outcome)}`);
    }
    return name;
  };
  /** Tiers strongest first: the order of the peer table and of a behaviour in a link. */
  const peerTiers = Object.freeze([...TIERS].reverse());

  const behaviourOf = (wit) => Object.fromEntries(peerTiers.map((tier) => [tier, outcomeName(wit[camel(tier)])]));
  const witBehaviour = (behaviour) => Object.fromEntries(peerTiers.map((tier) => {
    if (!(behaviour[tier] in witOutcome)) throw new RangeError(`${tier}: no outcome is called ${JSON.stringify(behaviour[tier])}`);
    return [camel(tier), witOutcome[behaviour[tier]]];
  }));
  const peerOf = (wit) => ({
    behaviour: behaviourOf(wit.behaviour),
    change: wit.change === undefined ? null
      : { day: wit.change.day, behaviour: behaviourOf(wit.change.behaviour), attacker: wit.change.attacker },
    resetPercent: wit.resetPercent,
    context: { ...wit.context },
  });
  const witPeer = (peer) => ({
    behaviour: witBehaviour(peer.behaviour),
    change: peer.change === null ? undefined
      : { day: peer.change.day, behaviour: witBehaviour(peer.change.behaviour), attacker: peer.change.attacker },
    resetPercent: peer.resetPercent,
    context: { ...peer.context },
  });

  /** The component's presets by name, in `tlsfallback simulate`'s order. */
  const presets = Object.freeze(Object.fromEntries(tools.presets().map(({ name, description, peer }) => [name, Object.freeze({
    description,
    /** The preset's line with its change on `day`. */
    describe: (day) => tools.describePreset(name, day) ?? description,
    /** A fresh copy of its peer. */
    peer: () => peerOf(peer),
  })])));
  const backoff = tools.defaultBackoff();

  /** The scenario as the component takes it (the page's policy is in wire form). */
  function witScenario(scenario) {
    return {
      peer: witPeer(scenario.peer),
      policy: wire.policy(scenario.policy),
      start: BigInt(scenario.start),
      days: scenario.days,
      messagesPerDay: scenario.messagesPerDay,
      queueLifetimeSecs: BigInt(scenario.queueLifetimeSecs),
      backoff: { minimalSecs: BigInt(scenario.backoff.minimalSecs), maximalSecs: BigInt(scenario.backoff.maximalSecs) },
      seed: BigInt(scenario.seed),
    };
  }

  /** The wire request of a simulation's WIT request, as `tlsfallback decide` reads it. */
  function wireRequest(scenario, request) {
    const last = request.last === undefined ? null : { tier: request.last.tier, ...wire.outcomeOf(request.last.outcome) };
    return {
      peer: PEER_NAME,
      now: Number(request.now),
      history: request.history === undefined ? null : toBase64(request.history),
      last,
      context: wire.context(request.context),
      policy: scenario.policy,
    };
  }

  const context = (scenario) => wire.context(witPeer(scenario.peer).context);

  /**
   * A try as the page shows it: each step carries the request the engine was asked and its
   * response in wire form. The requests are the ones the simulation asked: the history is the
   * previous decision's (`history` before the try) and `last` the previous attempt of the same try,
   * as policy-core's simulator hands them on. Returns the delivery and the history after it.
   */
  function pageDelivery(scenario, d, historyBefore, wireContext = context(scenario)) {
    let history = historyBefore;
    let last = null;
    const steps = d.steps.map((step) => {
      const at = Number(step.at);
      const request = { peer: PEER_NAME, now: at, history, last, context: wireContext, policy: scenario.policy };
      const response = wire.response(PEER_NAME, step.decision);
      history = response.history;
      const outcome = step.outcome === undefined ? null : wire.outcomeOf(step.outcome);
      last = outcome === null ? null : { tier: response.tier, ...outcome };
      return { at, request, response, outcome };
    });
    const delivery = {
      message: d.message,
      queuedAt: Number(d.queuedAt),
      startedAt: Number(d.startedAt),
      endedAt: Number(d.endedAt),
      attackerActive: d.attackerActive,
      expired: d.expired,
      firstTier: d.firstTier ?? null,
      deliveredTier: d.deliveredTier ?? null,
      steps,
    };
    return { delivery, history };
  }

  /** The parts of a run every form has: blocks, totals (`latencySecs` given), the last history. */
  function compact(run, latencySecs) {
    const s = run.summary;
    return {
      tries: run.tries,
      decisions: run.decisions,
      blocks: run.blocks.map((b) => ({
        first: b.first, count: b.count, startedAt: Number(b.startedAt), endedAt: Number(b.endedAt), expired: b.expired,
      })),
      summary: {
        messages: s.messages,
        deliveredByTier: [...s.deliveredByTier],
        deferrals: s.deferrals,
        bounces: s.bounces,
        expired: s.expired,
        attempts: s.attempts,
        failedAttempts: s.failedAttempts,
        fallbackDelaySecs: Number(s.fallbackDelaySecs),
        cleartextToAttacker: s.cleartextToAttacker,
        refusedToAttacker: s.refusedToAttacker,
        stillQueued: s.stillQueued,
        latencySecs,
      },
      finalHistory: run.finalHistory === undefined ? null : toBase64(run.finalHistory),
    };
  }

  /**
   * A whole run in full from a stepped simulation's timeline: a plain object (a worker posts it
   * to the page), which `viewOf` turns into the form the page reads.
   */
  function pageRun(scenario, timeline) {
    const wireContext = context(scenario);
    let history = null;
    const latencySecs = [];
    const deliveries = timeline.deliveries.map((d) => {
      const shown = pageDelivery(scenario, d, history, wireContext);
      history = shown.history;
      if (shown.delivery.deliveredTier !== null) latencySecs.push(shown.delivery.endedAt - shown.delivery.queuedAt);
      return shown.delivery;
    });
    const tries = deliveries.length;
    const decisions = deliveries.reduce((n, d) => n + d.steps.length, 0);
    return { ...compact({ ...timeline, tries, decisions }, latencySecs), deliveries };
  }

  /**
   * Runs `scenario` with the component's own engine (policy-core's, the built-in one). The run
   * stays inside the component; its tries are lifted when first read, so a year of an attack
   * costs what the page shows of it, not every one of its decisions.
   */
  function runBuiltIn(scenario) {
    const handle = tools.SimulatedRun.start(witScenario(scenario));
    const run = compact(handle.summary(), Array.from(handle.latencies(), Number));
    const wireContext = context(scenario);
    const cache = new Map();
    /** The tries `first` to `first + count`, lifting those not read before. */
    const range = (first, count) => {
      const end = Math.min(first + count, run.tries);
      let missing = first;
      while (missing < end && cache.has(missing)) missing += 1;
      if (missing < end) {
        // The history before a try is the last decision of the one before it.
        const from = missing > 0 && !cache.has(missing - 1) ? missing - 1 : missing;
        let history = from === missing && from > 0 ? cache.get(from - 1).steps.at(-1).response.history : null;
        handle.deliveries(from, end - from).forEach((d, k) => {
          const index = from + k;
          if (index < missing) {
            history = toBase64(d.steps.at(-1).decision.history);
            return;
          }
          const shown = pageDelivery(scenario, d, history, wireContext);
          history = shown.history;
          cache.set(index, shown.delivery);
        });
      }
      const out = [];
      for (let i = first; i < end; i++) out.push(cache.get(i));
      return out;
    };
    return {
      ...run,
      range,
      delivery: (index) => range(index, 1)[0],
      between: (from, to) => {
        const [first, count] = handle.triesBetween(BigInt(Math.floor(from)), BigInt(Math.ceil(to)));
        return [first, count];
      },
      all: () => range(0, run.tries),
      /** Drops the run kept in the component (the page does when a new run replaces it). */
      dispose: () => handle[Symbol.dispose]?.(),
    };
  }

  /**
   * Runs `scenario` stepped with any engine: `decide(request)` takes the simulation's WIT request
   * and returns the engine's WIT decision (a component's `Decider.decide`). An error thrown by
   * `decide` comes out with `request`: the wire request it failed on, for the page to name.
   */
  function runStepped(scenario, decide) {
    const simulation = tools.Simulation.start(witScenario(scenario));
    try {
      for (let request = simulation.request(); request !== undefined; request = simulation.request()) {
        let decision;
        try {
          decision = decide(request);
        } catch (error) {
          if (error !== null && typeof error === 'object') error.request = wireRequest(scenario, request);
          throw error;
        }
        simulation.answer(decision);
      }
      return pageRun(scenario, simulation.finish());
    } finally {
      simulation[Symbol.dispose]?.();
    }
  }

  /** A scenario with `tlsfallback simulate`'s defaults: 30 days, 4 messages a day, 5-day lifetime. */
  function defaultScenario(peer, policy = {}) {
    return {
      peer,
      policy,
      start: DEFAULT_START,
      days: 30,
      messagesPerDay: 4,
      queueLifetimeSecs: 5 * DAY,
      backoff: { minimalSecs: Number(backoff.minimalSecs), maximalSecs: Number(backoff.maximalSecs) },
      seed: 0x5eed,
    };
  }

  return Object.freeze({
    presets,
    customDescription: tools.customPeerDescription(),
    outcomeNames: Object.freeze(Object.keys(OUTCOMES)),
    tiers: TIERS,
    peerTiers,
    profiles: PROFILES,
    dane: DANE_STATES,
    mtaSts: MTA_STS_STATES,
    witScenario,
    wireRequest,
    pageRun,
    runBuiltIn,
    runStepped,
    viewOf,
    defaultScenario,
  });
}

/**
 * The form the page reads a run in, for a run in full (`pageRun`, as a worker posts it): the same
 * `range`, `delivery`, `between` and `all` a built-in run has.
 */
export function viewOf(run) {
  if (typeof run.range === 'function') return run;
  const { deliveries } = run;
  const range = (first, count) => deliveries.slice(first, first + count);
  return {
    ...run,
    range,
    delivery: (index) => deliveries[index],
    between: (from, to) => {
      // Tries never overlap: those that end at or after `from` and start before `to` are consecutive.
      let first = 0;
      while (first < deliveries.length && deliveries[first].endedAt < from) first += 1;
      let end = first;
      while (end < deliveries.length && deliveries[end].startedAt < to) end += 1;
      return [first, end - first];
    },
    all: () => deliveries,
  };
}

/**
 * The object `tlsfallback simulate --json` prints for the same run: the backoff, the totals, per
 * delivery try when it started, the tiers and every decision's reason, and the blocks.
 */
export function comparable(preset, scenario, run) {
  const s = run.summary;
  return {
    preset,
    days: scenario.days,
    messages_per_day: scenario.messagesPerDay,
    backoff: { minimal_secs: scenario.backoff.minimalSecs, maximal_secs: scenario.backoff.maximalSecs },
    summary: {
      messages: s.messages,
      delivered_by_tier: Object.fromEntries(TIERS.map((t, i) => [t, s.deliveredByTier[i]])),
      deferrals: s.deferrals,
      bounces: s.bounces,
      expired: s.expired,
      attempts: s.attempts,
      failed_attempts: s.failedAttempts,
      fallback_delay_secs: s.fallbackDelaySecs,
      cleartext_to_attacker: s.cleartextToAttacker,
      refused_to_attacker: s.refusedToAttacker,
      still_queued: s.stillQueued,
    },
    deliveries: viewOf(run).all().map((d) => ({
      message: d.message,
      started_at: d.startedAt,
      attacker_active: d.attackerActive,
      expired: d.expired,
      first_tier: d.firstTier,
      delivered_tier: d.deliveredTier,
      reasons: d.steps.map((step) => step.response.reason),
    })),
    blocks: run.blocks.map((b) => ({ first: b.first, count: b.count, expired: b.expired })),
  };
}
