// Engines for the page: the built-in component, and components you load, transpiled here by jco.
//
// Transpiling needs jco's transpiler (vendor/jco, itself a component that imports WASI shims
// through the page's import map), so it runs on the page; the transpiled code runs in the
// simulation worker (src/worker.js), which this module restarts when a run misses its deadline.

/** The interface a policy component must export: the version range the host accepts. */
export const ENGINE_INTERFACE = /^tlsfallback:policy\/engine@0\.2\.\d+$/;
/** How long a run may take before the worker is terminated (a component that never answers). */
export const RUN_DEADLINE_MS = 10000;

/** A component the page could not use; the message says why. */
export class ComponentError extends Error {}

let transpiler = null;
let loads = 0;

/**
 * Transpiles a component's bytes for the worker. Refuses (ComponentError) anything that is not
 * a component, imports anything, or does not export the engine interface at 0.2.x.
 * @returns {Promise<{js: string, cores: Record<string, Uint8Array>, key: string, bytes: number, exportName: string}>}
 */
export async function transpileComponent(bytes, name) {
  transpiler ??= import('../vendor/jco/browser.js');
  const { generate } = await transpiler;
  let out;
  try {
    out = await generate(bytes, { name: 'plugin', instantiation: { tag: 'async' }, noTypescript: true, noNodejsCompat: true });
  } catch (error) {
    throw new ComponentError(`${name} is not a WebAssembly component jco can read: ${error?.message ?? error}`);
  }
  if (out.imports.length !== 0) {
    throw new ComponentError(`${name} imports ${out.imports.join(', ')}: a policy component must import nothing`);
  }
  const exported = out.exports.map(([exportName]) => exportName);
  const engine = exported.find((e) => ENGINE_INTERFACE.test(e));
  if (engine === undefined) {
    throw new ComponentError(`${name} does not export tlsfallback:policy/engine@0.2.x (it exports ${exported.join(', ') || 'nothing'})`);
  }
  const decoder = new TextDecoder();
  const cores = {};
  let js = null;
  for (const [file, content] of out.files) {
    if (file === 'plugin.js') js = decoder.decode(content);
    else if (file.endsWith('.wasm')) cores[file] = content;
  }
  if (js === null) throw new ComponentError(`jco produced no JavaScript for ${name}`);
  // A key per load, not per content: crypto.subtle (for a digest) exists only in secure contexts,
  // and the page may be served over plain HTTP from another host.
  loads += 1;
  return { js, cores, key: `component-${loads}`, bytes: bytes.length, exportName: engine };
}

/**
 * Runs scenarios in workers, one per engine, so a component that never answers is stopped (its
 * worker terminated) without holding up the others.
 */
export class Simulator {
  /** Workers by engine key ('built-in' or the key of a component's load). */
  #workers = new Map();
  #next = 0;

  /**
   * Runs `scenario` with every engine in `engines` (see src/worker.js). Resolves with one result
   * per engine, each `{label, run}` or `{label, error: {message, request?}}`; never rejects.
   */
  run(scenario, engines, deadlineMs = RUN_DEADLINE_MS) {
    return Promise.all(engines.map((spec) => this.#runOne(scenario, spec, deadlineMs)));
  }

  #runOne(scenario, spec, deadlineMs) {
    const key = spec.kind === 'built-in' ? 'built-in' : spec.key;
    let worker = this.#workers.get(key);
    if (worker === undefined) {
      worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
      this.#workers.set(key, worker);
    }
    const id = ++this.#next;
    const stop = () => {
      worker.terminate();
      if (this.#workers.get(key) === worker) this.#workers.delete(key);
    };
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        stop();
        resolve({
          label: spec.label,
          error: { message: `no answer within ${deadlineMs / 1000} s (a component that never returns, or a scenario too large for the time allowed); its worker was stopped` },
        });
      }, deadlineMs);
      worker.addEventListener('message', function answer({ data }) {
        if (data.id !== id) return;
        worker.removeEventListener('message', answer);
        clearTimeout(timer);
        resolve(data.results[0]);
      });
      worker.onerror = (event) => {
        clearTimeout(timer);
        stop();
        resolve({ label: spec.label, error: { message: `the simulation worker failed: ${event.message ?? 'unknown error'}` } });
      };
      worker.postMessage({ id, scenario, engines: [spec] });
    });
  }

  /** Stops the workers of components no longer loaded. */
  forget(keepKeys) {
    for (const [key, worker] of this.#workers) {
      if (key !== 'built-in' && !keepKeys.includes(key)) {
        worker.terminate();
        this.#workers.delete(key);
      }
    }
  }
}
