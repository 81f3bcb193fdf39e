// Components you load, for the page: transpiled by jco in a worker, then run in workers of their own.
//
// Transpiling runs jco's transpiler in its own worker (src/transpiler.js); the transpiled code
// runs in the simulation workers (src/worker.js), one per engine, which this module terminates
// when a run misses its deadline.

/** The interface a policy component must export: the version range the host accepts. */
export const ENGINE_INTERFACE = /^tlsfallback:policy\/engine@0\.2\.\d+$/;
/** How long a run may take before the worker is terminated (a component that never answers). */
export const RUN_DEADLINE_MS = 10000;
/** How long transpiling a component may take (the 12 MB JavaScript example takes about 7 s). */
export const TRANSPILE_DEADLINE_MS = 120000;

/** A component the page could not use; the message says why. */
export class ComponentError extends Error {}

let loads = 0;

/** Runs jco's transpiler on `bytes` in a worker of its own, stopped at the deadline. */
function generateInWorker(bytes, name, deadlineMs) {
  const worker = new Worker(new URL('./transpiler.js', import.meta.url), { type: 'module' });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      worker.terminate();
      reject(new ComponentError(`jco did not finish transpiling ${name} within ${deadlineMs / 1000} s; stopped`));
    }, deadlineMs);
    const finish = () => {
      clearTimeout(timer);
      worker.terminate();
    };
    worker.onmessage = ({ data }) => {
      finish();
      if (data.error !== undefined) reject(new ComponentError(`${name} is not a WebAssembly component jco can read: ${data.error}`));
      else resolve(data);
    };
    worker.onerror = (event) => {
      finish();
      reject(new ComponentError(`jco's transpiler failed on ${name}: ${event.message ?? 'unknown error'}`));
    };
    const copy = bytes.slice();
    worker.postMessage({ id: 1, bytes: copy }, [copy.buffer]);
  });
}

/** Reads a LEB128 u32 at `at`; returns [value, next offset], or throws when the bytes end. */
function leb(bytes, at, name) {
  let value = 0;
  for (let shift = 0; shift < 35; shift += 7) {
    if (at >= bytes.length) throw new ComponentError(`${name} is truncated (it ends inside a section)`);
    const byte = bytes[at++];
    value += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return [value, at];
  }
  throw new ComponentError(`${name} is not a valid WebAssembly binary (an overlong number)`);
}

/**
 * Checks the binary's preamble and its top-level import sections before jco sees it, so the usual
 * mistakes get their own message: not WebAssembly at all, a core module that was never wrapped
 * into a component, a component that imports something (jco lists only imports it uses).
 * Written by hand: these few bytes of the component binary format are all it needs.
 */
export function checkComponentBinary(bytes, name) {
  const has = (offset, expected) => expected.every((b, i) => bytes[offset + i] === b);
  if (bytes.length < 8 || !has(0, [0x00, 0x61, 0x73, 0x6d])) {
    throw new ComponentError(`${name} is not WebAssembly (it does not start with \\0asm)`);
  }
  if (has(4, [0x01, 0x00, 0x00, 0x00])) {
    throw new ComponentError(`${name} is a core WebAssembly module, not a component: wrap it with `
      + '`wasm-tools component new` (or `jco new`) first');
  }
  if (!has(4, [0x0d, 0x00, 0x01, 0x00])) {
    throw new ComponentError(`${name} is a WebAssembly binary of a version or layer this page does not read`);
  }
  const imports = [];
  let at = 8;
  while (at < bytes.length) {
    const id = bytes[at];
    const [size, body] = leb(bytes, at + 1, name);
    if (body + size > bytes.length) throw new ComponentError(`${name} is truncated (a section runs past its end)`);
    if (id === 10) {
      let [count, cursor] = leb(bytes, body, name);
      if (count > 0 && (bytes[cursor] === 0x00 || bytes[cursor] === 0x01)) {
        const [length, start] = leb(bytes, cursor + 1, name);
        imports.push(new TextDecoder().decode(bytes.subarray(start, Math.min(start + length, body + size))));
        count -= 1;
      }
      for (; count > 0; count -= 1) imports.push('…');
    }
    at = body + size;
  }
  if (imports.length !== 0) {
    throw new ComponentError(`${name} imports ${imports.length === 1 ? imports[0] : `${imports.length} items, the first ${imports[0]}`}: `
      + 'a policy component must import nothing');
  }
}

/**
 * Transpiles a component's bytes for the simulation worker. Refuses (ComponentError) anything that
 * is not a component, imports anything, or does not export the engine interface at 0.2.x.
 * @returns {Promise<{js: string, cores: Record<string, Uint8Array>, key: string, bytes: number, exportName: string}>}
 */
export async function transpileComponent(bytes, name, deadlineMs = TRANSPILE_DEADLINE_MS) {
  checkComponentBinary(bytes, name);
  const out = await generateInWorker(bytes, name, deadlineMs);
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
 * Runs scenarios in workers, one per component you load, so a component that never answers is
 * stopped (its worker terminated) without holding up the others.
 */
export class Simulator {
  /** Workers by the key of a component's load (`spec.key`). */
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
    const { key } = spec;
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
        resolve(data.result);
      });
      worker.onerror = (event) => {
        clearTimeout(timer);
        stop();
        resolve({ label: spec.label, error: { message: `the simulation worker failed: ${event.message ?? 'unknown error'}` } });
      };
      worker.postMessage({ id, scenario, engine: spec });
    });
  }

  /** Stops the workers of components no longer loaded. */
  forget(keepKeys) {
    for (const [key, worker] of this.#workers) {
      if (!keepKeys.includes(key)) {
        worker.terminate();
        this.#workers.delete(key);
      }
    }
  }
}
