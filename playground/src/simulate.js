// The simulated peer and mail queue, driving any decide function over simulated time.
//
// A port of policy-core's `sim` module (policy-core/src/sim.rs), the one `tlsfallback simulate`
// runs: the same presets, queue, backoff, clock and seeded network resets, so the page and the CLI
// tell the same story. The playground's tests hold the two to each other (every preset, the same
// per-delivery reasons and totals). The engine is only ever reached through `decide(request)`,
// which takes and returns the `tlsfallback decide` JSON wire format, so every step the page shows
// can be replayed through the CLI.

/** Seconds in a simulated day. */
export const DAY = 86400;
/** Seconds a simulated SMTP attempt takes, from connect to outcome. */
export const ATTEMPT_SECS = 1;
/** Tiers, weakest first (the index of `deliveredByTier`). */
export const TIERS = Object.freeze(['cleartext', 'legacy-tls', 'modern-tls', 'authenticated-tls']);
/** 2026-01-01T00:00:00Z, the CLI simulation's start. */
export const DEFAULT_START = 1767225600;
/** The peer name put in the requests (any name: the engine never reads it). */
export const PEER_NAME = 'mx.peer.example';

/** Outcomes a simulated peer can produce, by the short name the page and its URL use. */
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

/** What a peer does at each tier (short outcome names), in the order of policy-core's tables. */
export const BEHAVIOURS = Object.freeze({
  modern: { 'authenticated-tls': 'success-tls13', 'modern-tls': 'success-tls13', 'legacy-tls': 'alert-inappropriate-fallback', cleartext: 'success-cleartext' },
  'legacy-only': { 'authenticated-tls': 'alert-protocol-version', 'modern-tls': 'alert-protocol-version', 'legacy-tls': 'success-tls10', cleartext: 'success-cleartext' },
  'no-starttls': { 'authenticated-tls': 'starttls-not-offered', 'modern-tls': 'starttls-not-offered', 'legacy-tls': 'starttls-not-offered', cleartext: 'success-cleartext' },
  'broken-starttls': { 'authenticated-tls': 'starttls-rejected-454', 'modern-tls': 'starttls-rejected-454', 'legacy-tls': 'starttls-rejected-454', cleartext: 'success-cleartext' },
});

const NO_CONTEXT = Object.freeze({ dane: 'none', mtaSts: 'none', requiretls: false, tlsRequiredNo: false, sasl: false });

/** A peer that always behaves the same. */
function steady(behaviour) {
  return { behaviour: { ...BEHAVIOURS[behaviour] }, change: null, resetPercent: 0, context: { ...NO_CONTEXT } };
}

/** The built-in peer presets (policy-core's `Preset`), with a line each. */
export const PRESETS = Object.freeze({
  modern: { describe: 'TLS 1.3 with a valid certificate', peer: () => steady('modern') },
  'legacy-only': { describe: 'speaks only TLS 1.0 with CBC-SHA1 suites', peer: () => steady('legacy-only') },
  'no-starttls': { describe: 'offers no STARTTLS at all', peer: () => steady('no-starttls') },
  'broken-starttls': { describe: 'offers STARTTLS and answers it with 454', peer: () => steady('broken-starttls') },
  'flaky-network': {
    describe: 'a modern peer behind a network that resets 30% of attempts',
    peer: () => ({ ...steady('modern'), resetPercent: 30 }),
  },
  'stripping-attacker': {
    describe: 'a modern peer; from day N an on-path attacker strips STARTTLS',
    peer: () => ({ ...steady('modern'), change: { day: 3, behaviour: { ...BEHAVIOURS['no-starttls'] }, attacker: true } }),
  },
  'dane-protected': {
    describe: 'a modern peer with usable DANE TLSA records; from day N an attacker strips STARTTLS',
    peer: () => ({
      ...steady('modern'),
      change: { day: 3, behaviour: { ...BEHAVIOURS['no-starttls'] }, attacker: true },
      context: { ...NO_CONTEXT, dane: 'usable' },
    }),
  },
  upgrading: {
    describe: 'speaks only TLS 1.0 until day N, then TLS 1.3',
    peer: () => ({ ...steady('legacy-only'), change: { day: 10, behaviour: { ...BEHAVIOURS.modern }, attacker: false } }),
  },
});

/** A scenario with the CLI's defaults: 30 days, 4 messages a day, 5-day queue lifetime. */
export function defaultScenario(peer, policy = {}) {
  return {
    peer, policy, start: DEFAULT_START, days: 30, messagesPerDay: 4, queueLifetimeSecs: 5 * DAY, seed: 0x5eed,
  };
}

/**
 * The queue's backoff, as policy-core's `QueueBackoff::POSTFIX` (Postfix's qmgr): the message's
 * age in the queue clamped to [300 s, 4000 s], never shorter than the engine's retry-after.
 */
function backoffSecs(retryAfterSecs, ageSecs) {
  return Math.max(Math.max(retryAfterSecs, 1), Math.min(Math.max(ageSecs, 300), 4000));
}

const MASK64 = (1n << 64n) - 1n;

/** policy-core's counter-based SplitMix64 roll: the same seed and counter, the same percentage. */
export function percentRoll(seed, counter) {
  let z = (BigInt(seed) + BigInt(counter) * 0x9e3779b97f4a7c15n) & MASK64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  z ^= z >> 31n;
  return Number(z % 100n);
}

function attackerActive(peer, day) {
  return peer.change !== null && peer.change.attacker && day >= peer.change.day;
}

function behaviourOn(peer, day) {
  return peer.change !== null && day >= peer.change.day ? peer.change.behaviour : peer.behaviour;
}

/** The wire `context` of a request (snake_case, defaults left out as the CLI allows). */
function wireContext(context) {
  const out = {};
  if (context.dane !== 'none') out.dane = context.dane;
  if (context.mtaSts !== 'none') out.mta_sts = context.mtaSts;
  if (context.requiretls) out.requiretls = true;
  if (context.tlsRequiredNo) out.tls_required_no = true;
  if (context.sasl) out.sasl = true;
  return out;
}

const isSuccess = (outcome) => outcome.outcome === 'success';

/**
 * Runs a scenario. `decide(request)` answers one `tlsfallback decide` request object with its
 * response object (throwing ends the run with that error). The scenario's `policy` holds wire
 * (snake_case) overrides of the engine's default policy, as a request's `policy` does.
 */
export function simulate(scenario, decide) {
  const { peer } = scenario;
  const end = scenario.start + scenario.days * DAY;
  const spacing = Math.floor(DAY / Math.max(scenario.messagesPerDay, 1));
  const total = scenario.days * scenario.messagesPerDay;
  const context = wireContext(peer.context);
  const queue = [];
  const deliveries = [];
  const summary = {
    messages: total,
    deliveredByTier: [0, 0, 0, 0],
    deferrals: 0,
    bounces: 0,
    expired: 0,
    attempts: 0,
    failedAttempts: 0,
    fallbackDelaySecs: 0,
    cleartextToAttacker: 0,
    refusedToAttacker: 0,
    stillQueued: 0,
    latencySecs: [],
  };
  let nextMessage = 0;
  let history = null;
  let attemptCounter = 0;
  // The earliest time the next try may start: tries are sequential, like one SMTP client.
  let clock = scenario.start;

  for (;;) {
    const arrival = scenario.start + nextMessage * spacing;
    let due = null;
    queue.forEach((q, index) => {
      if (due === null || q.nextTry < due.nextTry || (q.nextTry === due.nextTry && q.message < due.message)) {
        due = { index, nextTry: q.nextTry, message: q.message };
      }
    });
    const takeArrival = nextMessage < total && (due === null || arrival <= due.nextTry);
    let item;
    if (takeArrival) {
      nextMessage += 1;
      item = { message: nextMessage - 1, queuedAt: arrival, nextTry: arrival, tries: 0 };
    } else if (due !== null) {
      // Rust's swap_remove: the last element takes the removed one's place.
      item = queue[due.index];
      queue[due.index] = queue[queue.length - 1];
      queue.pop();
    } else {
      break;
    }
    if (item.nextTry >= end) {
      summary.stillQueued += 1 + queue.length;
      break;
    }
    let now = Math.max(clock, item.nextTry);
    const attacker = attackerActive(peer, Math.floor((now - scenario.start) / DAY));
    const delivery = {
      message: item.message, queuedAt: item.queuedAt, startedAt: now, attackerActive: attacker, steps: [], expired: false,
    };
    let last = null;
    for (;;) {
      const request = { peer: PEER_NAME, now, history, last, context, policy: scenario.policy };
      const response = decide(request);
      history = response.history;
      if (response.action === 'attempt') {
        const { tier } = response;
        const delay = response.delay_secs;
        summary.attempts += 1;
        summary.fallbackDelaySecs += delay;
        now += delay;
        attemptCounter += 1;
        const day = Math.floor((now - scenario.start) / DAY);
        const reset = percentRoll(scenario.seed, attemptCounter) < peer.resetPercent;
        const outcome = reset && tier !== 'cleartext'
          ? OUTCOMES['connection-reset']
          : OUTCOMES[behaviourOn(peer, day)[tier]];
        if (!isSuccess(outcome)) summary.failedAttempts += 1;
        delivery.steps.push({ at: now - delay, request, response, outcome });
        now += ATTEMPT_SECS;
        last = { tier, ...outcome };
      } else {
        delivery.steps.push({ at: now, request, response, outcome: null });
        if (response.action === 'defer') {
          summary.deferrals += 1;
          if (attacker) summary.refusedToAttacker += 1;
          const nextTry = now + backoffSecs(response.retry_after_secs, now - item.queuedAt);
          if (nextTry - item.queuedAt > scenario.queueLifetimeSecs) {
            summary.expired += 1;
            delivery.expired = true;
          } else {
            queue.push({ ...item, nextTry, tries: item.tries + 1 });
          }
        } else if (response.action === 'bounce') {
          summary.bounces += 1;
          if (attacker) summary.refusedToAttacker += 1;
        }
        break;
      }
    }
    const tier = deliveredTier(delivery);
    if (tier !== null) {
      summary.deliveredByTier[TIERS.indexOf(tier)] += 1;
      summary.latencySecs.push(now - delivery.queuedAt);
      if (tier === 'cleartext' && attacker) summary.cleartextToAttacker += 1;
    }
    delivery.endedAt = now;
    clock = now;
    deliveries.push(delivery);
  }
  return { deliveries, summary, finalHistory: history };
}

/** The tier a delivery try delivered the message at, or null. */
export function deliveredTier(delivery) {
  const n = delivery.steps.length;
  if (n < 2) return null;
  const attempt = delivery.steps[n - 2];
  return attempt.response.action === 'attempt' && attempt.outcome !== null && isSuccess(attempt.outcome)
    && delivery.steps[n - 1].response.action === 'done' ? attempt.response.tier : null;
}

/** The first tier a delivery try attempted, or null. */
export function firstTier(delivery) {
  const first = delivery.steps[0];
  return first !== undefined && first.response.action === 'attempt' ? first.response.tier : null;
}

/**
 * The comparison form `tlsfallback simulate --json` prints for the same run: the totals and, per
 * delivery try, when it started, the tiers and every decision's reason.
 */
export function comparable(preset, scenario, run) {
  const s = run.summary;
  return {
    preset,
    days: scenario.days,
    messages_per_day: scenario.messagesPerDay,
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
    deliveries: run.deliveries.map((d) => ({
      message: d.message,
      started_at: d.startedAt,
      attacker_active: d.attackerActive,
      expired: d.expired,
      first_tier: firstTier(d),
      delivered_tier: deliveredTier(d),
      reasons: d.steps.map((step) => step.response.reason),
    })),
  };
}
