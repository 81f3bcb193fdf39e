// `node dance.js DIR`: runs fixed deliveries through the jco-transpiled component in DIR and
// prints one line per decision: `peer action tier reason history-hex`. tests/tests/jco.rs runs
// the same deliveries through native policy-core and compares the lines.
import { pathToFileURL } from 'node:url';
import path from 'node:path';
import { DEFAULT_POLICY } from './decide-bench.js';

const { engine } = await import(pathToFileURL(path.resolve(process.argv[2], 'policy_engine.js')).href);

/** What each simulated peer answers at each tier (WIT outcome shapes). */
const PEERS = {
  modern: () => ({ tag: 'success', val: 'tls13' }),
  'legacy-only': (tier) => (tier === 'legacy-tls' ? { tag: 'success', val: 'tls10' }
    : tier === 'cleartext' ? { tag: 'success', val: undefined }
      : { tag: 'tls-alert', val: 'protocol-version' }),
  'no-starttls': (tier) => (tier === 'cleartext' ? { tag: 'success', val: undefined }
    : { tag: 'starttls-not-offered' }),
};
const CONTEXT = { dane: 'none', mtaSts: 'none', requiretls: false, tlsRequiredNo: false, sasl: false };
const hex = (bytes) => Buffer.from(bytes).toString('hex');

const decider = new engine.Decider(DEFAULT_POLICY);
for (const [name, outcomeAt] of Object.entries(PEERS)) {
  let history;
  // Three deliveries a day apart: the dance, then the memory.
  for (let day = 0; day < 3; day++) {
    const now = 1767225600n + BigInt(day * 86400);
    let last;
    for (let step = 0; step < 8; step++) {
      const decision = decider.decide(CONTEXT, history, last, now);
      history = decision.history;
      const tier = decision.action.tag === 'attempt' ? decision.action.val.tier : '-';
      console.log(`${name} ${decision.action.tag} ${tier} ${decision.reason} ${hex(history)}`);
      if (decision.action.tag !== 'attempt') break;
      last = { tier, outcome: outcomeAt(tier) };
    }
  }
}
