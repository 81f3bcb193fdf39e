// Decisions per second through the jco-transpiled component, in whatever JavaScript engine
// imports this module (Node, or Chromium via browser.js). The cases match the Rust benchmark's.

const NOW = 1767225600n;

/** Policy::DEFAULT of policy-core. */
export const DEFAULT_POLICY = {
  profile: 'opportunistic',
  allowLegacyTls: true,
  allowCleartext: true,
  stepDownDelaySecs: 5,
  reprobeIntervalSecs: 7 * 86400,
  pinDurationSecs: 30 * 86400,
  transientFailureThreshold: 3,
  retryAfterSecs: 300,
};

const NO_CONTEXT = { dane: 'none', mtaSts: 'none', requiretls: false, tlsRequiredNo: false, sasl: false };

/** Runs a delivery against a peer answering each tier with outcomeAt(tier); returns its history. */
function deliver(decider, outcomeAt) {
  let decision = decider.decide(NO_CONTEXT, undefined, undefined, NOW);
  while (decision.action.tag === 'attempt') {
    const tier = decision.action.val.tier;
    decision = decider.decide(NO_CONTEXT, decision.history, { tier, outcome: outcomeAt(tier) }, NOW);
  }
  return decision.history;
}

function cases(decider) {
  const start = decider.decide(NO_CONTEXT, undefined, undefined, NOW);
  const legacy = deliver(decider, (tier) => (tier === 'legacy-tls'
    ? { tag: 'success', val: 'tls10' }
    : { tag: 'tls-alert', val: 'protocol-version' }));
  return [
    { name: 'unknown-peer-start', history: undefined, last: undefined },
    {
      name: 'step-down-after-alert',
      history: start.history,
      last: { tier: start.action.val.tier, outcome: { tag: 'tls-alert', val: 'protocol-version' } },
    },
    { name: 'remembered-legacy-start', history: legacy, last: undefined },
  ];
}

/**
 * Times each case for about `seconds` and returns [{ name, decisionsPerSecond, nsPerDecision }],
 * plus the first decision of each case (to check against the native engine).
 */
export function run(engine, seconds = 1) {
  const decider = new engine.Decider(DEFAULT_POLICY);
  const results = [];
  for (const c of cases(decider)) {
    const first = decider.decide(NO_CONTEXT, c.history, c.last, NOW);
    // Warm up the JIT, then time batches until the budget is spent.
    for (let i = 0; i < 20000; i++) decider.decide(NO_CONTEXT, c.history, c.last, NOW);
    let calls = 0;
    const started = performance.now();
    let elapsed = 0;
    while (elapsed < seconds * 1000) {
      for (let i = 0; i < 10000; i++) decider.decide(NO_CONTEXT, c.history, c.last, NOW);
      calls += 10000;
      elapsed = performance.now() - started;
    }
    results.push({
      name: c.name,
      decisionsPerSecond: Math.round(calls / (elapsed / 1000)),
      nsPerDecision: Math.round((elapsed * 1e6) / calls),
      reason: first.reason,
      action: first.action.tag,
    });
  }
  return results;
}
