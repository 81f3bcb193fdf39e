// Builds plugin.js into a WebAssembly component that exports tlsfallback:policy/engine
// (world `policy-engine` of ../../wit) and imports nothing, then checks that it imports nothing.
//
//   node build.mjs [OUT]      (OUT defaults to $OUT, then to dist/plugin.wasm)
//
// Exits non-zero, with a message, when componentizing fails or the component imports anything
// (the component is then removed).

import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';

import { componentize, version as componentizeVersion } from '@bytecodealliance/componentize-js';
import { componentWit } from '@bytecodealliance/jco';

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? process.env.OUT ?? resolve(here, 'dist/plugin.wasm'));

const started = performance.now();
const { component } = await componentize({
  sourcePath: resolve(here, 'plugin.js'),
  witPath: resolve(here, '../../wit'),
  worldName: 'policy-engine',
  // Every engine feature off (console, Math.random/crypto, Date.now/performance.now, fetch and
  // the fetch event): the component then needs no WASI at all. The policy uses none of them.
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});
const seconds = (performance.now() - started) / 1000;

await mkdir(dirname(out), { recursive: true });
await writeFile(out, component);

// Zero imports, checked twice: the count of entries in the binary's top-level import sections,
// and the world that jco (wasm-tools) reads back from the component.
const importCount = topLevelImportCount(component);
const wit = await componentWit(component);
const witImports = wit.split('\n').filter((line) => /^\s*import\s/.test(line));
// The interface and its version, from the contract generated from the WIT (never spelled out here).
const { interface: engineInterface } = JSON.parse(
  await readFile(resolve(here, '../../kits/vectors/contract.json'), 'utf8'),
);
const exportsEngine = wit.split('\n').some((line) => line.trim() === `export ${engineInterface};`);
console.log(
  `componentize-js ${componentizeVersion}: wrote ${relative(process.cwd(), out) || out} ` +
    `(${component.byteLength} bytes) in ${seconds.toFixed(1)} s; ` +
    `imports: ${importCount}; exports ${engineInterface}: ${exportsEngine}`,
);

if (importCount !== 0 || witImports.length !== 0) {
  await fail(
    `the component imports ${importCount} item(s); a policy component must import nothing ` +
      `(check disableFeatures and the componentize-js version)`,
  );
}
if (!exportsEngine) {
  await fail(`the component does not export ${engineInterface}`);
}

/** Removes the component just written (so that nobody loads it), explains, exits non-zero. */
async function fail(message) {
  await rm(out, { force: true });
  console.error(`error: ${message}; ${out} removed. Its world:\n${wit}`);
  process.exit(1);
}

/**
 * The number of top-level imports of a component binary. A component is the preamble
 * `\0asm` 0d 00 01 00 followed by sections (an id byte, a LEB128 size, the contents); a top-level
 * import section has id 10 and starts with the LEB128 count of its entries. The sections of
 * nested components and core modules sit inside sections 4 and 1 and are not counted: only the
 * outermost imports are what a host must provide.
 */
function topLevelImportCount(bytes) {
  const preamble = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
  if (!preamble.every((b, i) => bytes[i] === b)) {
    throw new Error('not a WebAssembly component (bad preamble)');
  }
  let pos = preamble.length;
  const leb = () => {
    let result = 0;
    for (let shift = 0; ; shift += 7) {
      const byte = bytes[pos++];
      if (byte === undefined) throw new Error('truncated component');
      result += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return result;
    }
  };
  let count = 0;
  while (pos < bytes.length) {
    const id = bytes[pos++];
    const size = leb();
    const end = pos + size;
    if (id === 10) count += leb();
    pos = end;
  }
  return count;
}
