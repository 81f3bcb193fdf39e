// The simulation worker: instantiates policy components and runs scenarios, away from the page.
//
// A component you load runs here, not in the page: if it loops forever the page stays responsive
// and terminates this worker when it misses its deadline (src/engines.js), and a trap only ends
// the run that hit it. The built-in engine does not come here: it runs in the page, inside the
// tools component (src/model.js `runBuiltIn`). Messages: {id, scenario, engine: {label, kind:
// 'plugin', key, js, cores: {name: Uint8Array}}} in, {id, result: {label, run, timing} | {label,
// error}} out.
import { createKit } from '../vendor/kit/core.js';
import { createModel } from './model.js';
import { loadTools } from './tools.js';

/** The tools component (policy-core's simulator and engine) and the page's model over it. */
const ready = (async () => {
  const contract = await fetch(new URL('../vendor/kit/contract.json', import.meta.url)).then((r) => r.json());
  const exports = await loadTools(new URL('../vendor/tools/', import.meta.url), (url) => WebAssembly.compileStreaming(fetch(url)));
  const kit = createKit({ engine: exports.engine, contract });
  return { kit, model: createModel({ tools: exports.tools, kit }) };
})();
/** Instantiated components you loaded, by the key of their load. */
const engines = new Map();

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
    engine = (await instantiatePlugin(spec)).engine;
    if (typeof engine?.Decider !== 'function') throw new Error('the component exports no engine interface with a Decider');
    engines.set(spec.key, engine);
  }
  return engine;
}

function describeError(error, request) {
  const what = error instanceof WebAssembly.RuntimeError ? `the component trapped (${error.message})` : String(error?.message ?? error);
  return request === null ? { message: what } : { message: what, request };
}

/**
 * Runs `scenario` with the component `spec` names, answering each request of the tools
 * component's simulation: {label, run, timing} or {label, error}.
 */
async function runWith(spec, scenario) {
  const started = performance.now();
  let model;
  let kit;
  let engine;
  try {
    ({ model, kit } = await ready);
    engine = await engineFor(spec);
  } catch (error) {
    return { label: spec.label, error: { message: `could not instantiate: ${error?.message ?? error}` } };
  }
  const instantiated = performance.now();
  let decider;
  try {
    decider = new engine.Decider(kit.wire.policy(scenario.policy));
    const run = model.runStepped(scenario, (request) => decider.decide(request.context, request.history, request.last, request.now));
    const timing = { instantiateMs: instantiated - started, simulateMs: performance.now() - instantiated };
    return { label: spec.label, run, timing };
  } catch (error) {
    // A trapped instance must not be called again: the next run makes a fresh one.
    engines.delete(spec.key);
    return { label: spec.label, error: describeError(error, error?.request ?? null) };
  } finally {
    // A trapped instance cannot drop its resource either; the instance is dropped above.
    try { decider?.[Symbol.dispose]?.(); } catch { /* the error that ended the run is reported */ }
  }
}

self.onmessage = async ({ data }) => {
  self.postMessage({ id: data.id, result: await runWith(data.engine, data.scenario) });
};
