// `npm run bench`: decisions per second and µs per decision through this package, for the typed
// API (decide), the wire API (decideJson) and, for reference, the raw jco binding underneath.
// BENCH_SECONDS (default 1) per case.
import { readFileSync } from 'node:fs';
import { PolicyEngine, DEFAULT_POLICY } from '../src/index.js';
import { engine as raw } from '../dist/component/policy_engine.js';

const seconds = Number(process.env.BENCH_SECONDS ?? 1);
const NOW = 1767225600;

function time(name, fn) {
  for (let i = 0; i < 20000; i++) fn(i); // warm up the JIT
  let calls = 0;
  const started = performance.now();
  let elapsed = 0;
  while (elapsed < seconds * 1000) {
    for (let i = 0; i < 5000; i++) fn(i);
    calls += 5000;
    elapsed = performance.now() - started;
  }
  const perSecond = Math.round(calls / (elapsed / 1000));
  const us = (elapsed * 1000) / calls;
  console.log(`${name.padEnd(44)} ${String(perSecond).padStart(9)} decisions/s  ${us.toFixed(2).padStart(6)} µs/decision`);
  return { name, decisionsPerSecond: perSecond, usPerDecision: Number(us.toFixed(3)) };
}

const engine = new PolicyEngine();
const start = engine.decide({ now: NOW });
const alert = { tier: 'modern-tls', outcome: { kind: 'tls-alert', alert: 'protocol-version' } };
const stepped = engine.decide({ history: start.history, last: alert, now: NOW });
const done = engine.decide({ history: stepped.history, last: { tier: 'legacy-tls', outcome: { kind: 'success', version: 'TLSv1' } }, now: NOW });

const vectors = readFileSync(new URL('../../vectors/decide.jsonl', import.meta.url), 'utf8')
  .split('\n').filter(Boolean).map((line) => JSON.parse(line).request);
const lines = vectors.map((request) => JSON.stringify(request));

console.log(`node ${process.version}, ${seconds}s per case`);
const results = [
  time('decide: unknown peer, start', () => engine.decide({ history: null, last: null, now: NOW })),
  time('decide: step down after alert', () => engine.decide({ history: start.history, last: alert, now: NOW })),
  time('decide: remembered legacy, start', () => engine.decide({ history: done.history, now: NOW })),
  time('decideJson: the 2,244 vectors in turn', (i) => engine.decideJson(vectors[i % vectors.length])),
  time('decideLine: parse + decide + stringify', (i) => engine.decideLine(lines[i % lines.length])),
];
const decider = new raw.Decider(DEFAULT_POLICY);
const ctx = { dane: 'none', mtaSts: 'none', requiretls: false, tlsRequiredNo: false, sasl: false };
results.push(time('raw jco binding: unknown peer, start', () => decider.decide(ctx, undefined, undefined, 1767225600n)));
if (process.env.BENCH_JSON) console.log(JSON.stringify(results));
