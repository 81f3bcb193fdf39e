// The page's first look at a component you load (src/engines.js checkComponentBinary): the usual
// mistakes get their own message before jco sees the bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { checkComponentBinary } from '../src/engines.js';
import { PLAYGROUND } from './support.mjs';

const example = readFileSync(`${PLAYGROUND}/vendor/examples/first-contact.wasm`);
const builtIn = readFileSync(`${PLAYGROUND}/../target/playground/policy_engine.wasm`);

test('the example plugin and the built-in component pass', () => {
  assert.doesNotThrow(() => checkComponentBinary(example, 'first-contact.wasm'));
  assert.doesNotThrow(() => checkComponentBinary(builtIn, 'policy_engine.wasm'));
});

test('a cut component is reported as truncated, unless the cut falls between sections', () => {
  // Cuts at section boundaries are complete binaries with fewer sections; every other cut ends
  // inside a section.
  let truncated = 0;
  for (let length = 8; length < example.length; length += 97) {
    try {
      checkComponentBinary(example.subarray(0, length), 'cut.wasm');
    } catch (error) {
      assert.match(error.message, /^cut\.wasm is truncated/);
      truncated += 1;
    }
  }
  assert.ok(truncated > 300);
});

test('not WebAssembly, a core module, another version', () => {
  assert.throws(() => checkComponentBinary(new TextEncoder().encode('hello'), 'a.wasm'), /a\.wasm is not WebAssembly/);
  assert.throws(() => checkComponentBinary(Uint8Array.of(0, 0x61, 0x73, 0x6d, 1, 0, 0, 0), 'core.wasm'), /core\.wasm is a core WebAssembly module, not a component/);
  assert.throws(() => checkComponentBinary(Uint8Array.of(0, 0x61, 0x73, 0x6d, 0x0e, 0, 1, 0), 'next.wasm'), /next\.wasm is a WebAssembly binary of a version or layer/);
});

test('a component with imports names the first', () => {
  const name = new TextEncoder().encode('wasi:random/random@0.2.3');
  // Preamble, then an import section (id 10) with two imports; only the first name is read.
  const body = [2, 0x00, name.length, ...name, 0x05, 0x00, 0x00, 1, 0x61, 0x05, 0x00];
  const bytes = Uint8Array.of(0, 0x61, 0x73, 0x6d, 0x0d, 0, 1, 0, 10, body.length, ...body);
  assert.throws(() => checkComponentBinary(bytes, 'x.wasm'), /^Error: x\.wasm imports 2 items, the first wasi:random\/random@0\.2\.3: a policy component must import nothing$/);
});
