// The transpile worker: jco's transpiler (itself a component, 8.6 MB) turns a component you load
// into JavaScript and core modules here, off the page, so a 12 MB component does not freeze the
// page for seconds and a file that makes the transpiler run away can be stopped (src/engines.js).
// Messages: {id, bytes} in; {id, imports, exports, files} or {id, error} out.
import { generate } from '../vendor/jco/browser.js';

self.onmessage = async ({ data: { id, bytes } }) => {
  try {
    const out = await generate(bytes, { name: 'plugin', instantiation: { tag: 'async' }, noTypescript: true, noNodejsCompat: true });
    const buffers = out.files.map(([, content]) => content.buffer);
    self.postMessage({ id, imports: out.imports, exports: out.exports, files: out.files }, buffers);
  } catch (error) {
    self.postMessage({ id, error: String(error?.message ?? error) });
  }
};
