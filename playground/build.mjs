// `npm run build`: everything the static page loads that is not in git, under vendor/.
//
//   vendor/policy/     the built-in policy component (TLSFALLBACK_WASM, the file
//                      `tlsfallback export-component` writes), transpiled by jco in `async`
//                      instantiation mode, the same way the page transpiles a component you load
//   vendor/tools/      the tools component (TLSFALLBACK_TOOLS_WASM, the file
//                      `tlsfallback export-component --tools` writes): policy-core's simulator,
//                      presets and history decoder, transpiled the same way
//   vendor/kit/        the Node kit's browser-safe core (kits/node/src/core.js) and the shared
//                      contract (kits/vectors/contract.json): the wire format, identical to the CLI's
//   vendor/jco/        jco's transpiler (itself a component) for loading your own .wasm in the page
//   vendor/preview2-shim/  the WASI shims the transpiler imports (browser build; the transpiler's
//                      imports are rewritten to point here)
//   vendor/examples/   the Rust example plugin, when TLSFALLBACK_EXAMPLE_PLUGIN names one
//
// scripts/playground does this with the right environment; run it by hand with
//   TLSFALLBACK_WASM=policy_engine.wasm TLSFALLBACK_TOOLS_WASM=policy_tools.wasm \
//     [TLSFALLBACK_EXAMPLE_PLUGIN=first-contact.wasm] npm run build
import { generate } from '@bytecodealliance/jco/component';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..');
const vendor = path.join(here, 'vendor');
const fail = (message) => {
  console.error(`playground build: ${message}`);
  process.exit(1);
};

const wasm = path.resolve(process.env.TLSFALLBACK_WASM || 'policy_engine.wasm');
if (!existsSync(wasm)) {
  fail(`no component at ${wasm}: write one with \`tlsfallback export-component FILE\` and set TLSFALLBACK_WASM`);
}
const tools = path.resolve(process.env.TLSFALLBACK_TOOLS_WASM || 'policy_tools.wasm');
if (!existsSync(tools)) {
  fail(`no tools component at ${tools}: write one with \`tlsfallback export-component --tools FILE\` and set TLSFALLBACK_TOOLS_WASM`);
}
const plugin = process.env.TLSFALLBACK_EXAMPLE_PLUGIN ? path.resolve(process.env.TLSFALLBACK_EXAMPLE_PLUGIN) : null;
if (plugin !== null && !existsSync(plugin)) fail(`no example plugin at ${plugin}`);

/** Transpiles a component exactly as src/engines.js does in the page. */
async function transpile(bytes, name) {
  const out = await generate(bytes, {
    name, instantiation: { tag: 'async' }, noTypescript: true, noNodejsCompat: true,
  });
  if (out.imports.length !== 0) fail(`${name} imports ${out.imports.join(', ')}; a policy component imports nothing`);
  return out.files;
}

rmSync(vendor, { recursive: true, force: true });
const policyDir = path.join(vendor, 'policy');
mkdirSync(policyDir, { recursive: true });
for (const [file, bytes] of await transpile(readFileSync(wasm), 'policy_engine')) {
  mkdirSync(path.dirname(path.join(policyDir, file)), { recursive: true });
  writeFileSync(path.join(policyDir, file), bytes);
}

const toolsDir = path.join(vendor, 'tools');
mkdirSync(toolsDir, { recursive: true });
for (const [file, bytes] of await transpile(readFileSync(tools), 'policy_tools')) {
  mkdirSync(path.dirname(path.join(toolsDir, file)), { recursive: true });
  writeFileSync(path.join(toolsDir, file), bytes);
}

const kitDir = path.join(vendor, 'kit');
mkdirSync(kitDir, { recursive: true });
cpSync(path.join(repo, 'kits/node/src/core.js'), path.join(kitDir, 'core.js'));
cpSync(path.join(repo, 'kits/vectors/contract.json'), path.join(kitDir, 'contract.json'));

// The npm workspace's one install (`npm ci` at the repository root) holds the pinned packages.
const modules = path.join(repo, 'node_modules/@bytecodealliance');
const jcoDir = path.join(vendor, 'jco');
mkdirSync(jcoDir, { recursive: true });
for (const file of ['js-component-bindgen-component.js', 'js-component-bindgen-component.core.wasm',
  'js-component-bindgen-component.core2.wasm']) {
  cpSync(path.join(modules, 'jco/obj', file), path.join(jcoDir, file));
}
cpSync(path.join(modules, 'jco/src/browser.js'), path.join(jcoDir, 'browser.js'));
// browser.js imports '../obj/…'; in vendor/ the transpiler sits beside it.
writeFileSync(path.join(jcoDir, 'browser.js'),
  readFileSync(path.join(jcoDir, 'browser.js'), 'utf8').replace('../obj/', './'));
cpSync(path.join(modules, 'preview2-shim/lib/browser'), path.join(vendor, 'preview2-shim'), { recursive: true });
// The transpiler imports its WASI shims by package name. It runs in a module worker (so a big
// component does not freeze the page), where Chromium applies no import map: the names become
// relative paths here.
const bindgen = path.join(jcoDir, 'js-component-bindgen-component.js');
let bindgenSource = readFileSync(bindgen, 'utf8');
const shimImport = /'@bytecodealliance\/preview2-shim\/([a-z]+)'/g;
const shims = [...bindgenSource.matchAll(shimImport)].map((m) => m[1]);
for (const shim of shims) {
  if (!existsSync(path.join(vendor, 'preview2-shim', `${shim}.js`))) fail(`jco's transpiler imports a shim ${shim} the browser build lacks`);
}
bindgenSource = bindgenSource.replace(shimImport, (_, shim) => `'../preview2-shim/${shim}.js'`);
if (bindgenSource.includes('@bytecodealliance/')) fail('jco\'s transpiler imports a package this build does not map');
writeFileSync(bindgen, bindgenSource);
const versions = {
  jco: JSON.parse(readFileSync(path.join(modules, 'jco/package.json'), 'utf8')).version,
  'preview2-shim': JSON.parse(readFileSync(path.join(modules, 'preview2-shim/package.json'), 'utf8')).version,
  component_bytes: readFileSync(wasm).length,
  tools_component_bytes: readFileSync(tools).length,
};

if (plugin !== null) {
  mkdirSync(path.join(vendor, 'examples'), { recursive: true });
  cpSync(plugin, path.join(vendor, 'examples', 'first-contact.wasm'));
  versions.example_plugin = 'examples/first-contact.wasm';
}
writeFileSync(path.join(vendor, 'build.json'), `${JSON.stringify(versions, null, 2)}\n`);
console.log(`playground build: vendor/ (policy component ${versions.component_bytes} B, jco ${versions.jco}`
  + `${plugin === null ? '' : ', example plugin'})`);
