// The simulation worker: instantiates policy components and runs scenarios, away from the page.
//
// A component you load runs here, not in the page: if it loops forever the page stays responsive
// and terminates this worker when it misses its deadline (src/engines.js), and a trap only ends
// the run that hit it. Messages: {id, scenario, engine: {label, kind: 'built-in', key} |
// {label, kind: 'plugin', key, js, cores: {name: Uint8Array}}} in, {id, result: {label, run,
// timing} | {label, error}} out.
import { createKit } from '../vendor/kit/core.js';
import { simulate } from './simulate.js';

const contract = fetch(new URL('../vendor/kit/contract.json', import.meta.url)).then((r) => r.json());
/** Instantiated engines by key ('built-in' or the key of a component's load). */
const engines = new Map();

async function instantiateBuiltIn() {
  const { instantiate } = await import('../vendor/policy/policy_engine.js');
  return instantiate(undefined, {});
}

async function instantiatePlugin({ js, cores }) {
  const url = URL.createObjectURL(new Blob([js], { type: 'text/javascript' }));
  try {
    const { instantiate } = await import(url);
    return await instantiate((name) => {
      if (!(name in cores)) throw new Error(`the transpiled component asks for a core module ${name} it did not produce`);
      return WebAssembly.compile(cores[name]);
    }, {});
  } finally {
    URL.revokeObjectURL(url);
  }
}

async function engineFor(spec) {
  let engine = engines.get(spec.key);
  if (engine === undefined) {
    const exports = spec.kind === 'built-in' ? await instantiateBuiltIn() : await instantiatePlugin(spec);
    const kit = createKit({ engine: exports.engine, contract: await contract });
    engine = new kit.PolicyEngine();
    engines.set(spec.key, engine);
  }
  return engine;
}

function describeError(error, request) {
  const what = error instanceof WebAssembly.RuntimeError ? `the component trapped (${error.message})` : String(error?.message ?? error);
  return { message: what, request };
}

/** Runs `scenario` with the engine `spec` names: {label, run, timing} or {label, error}. */
async function runWith(spec, scenario) {
  let engine;
  const started = performance.now();
  try {
    engine = await engineFor(spec);
  } catch (error) {
    return { label: spec.label, error: { message: `could not instantiate: ${error?.message ?? error}` } };
  }
  let current = null;
  const instantiated = performance.now();
  try {
    const run = simulate(scenario, (request) => {
      current = request;
      return engine.decideJson(request);
    });
    const timing = { instantiateMs: instantiated - started, simulateMs: performance.now() - instantiated };
    return { label: spec.label, run, timing };
  } catch (error) {
    // A trapped instance must not be called again: the next run makes a fresh one.
    engines.delete(spec.key);
    return { label: spec.label, error: describeError(error, current) };
  }
}

self.onmessage = async ({ data }) => {
  self.postMessage({ id: data.id, result: await runWith(data.engine, data.scenario) });
};
