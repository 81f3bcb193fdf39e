// What the playground's tests share: the CLI binary, the built-in component in Node, and a
// chromium launched from Debian's /usr/bin/chromium (never a downloaded browser).
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { createKit } from '../vendor/kit/core.js';

export const PLAYGROUND = fileURLToPath(new URL('..', import.meta.url));
export const REPO = path.resolve(PLAYGROUND, '..');
/** The CLI the README builds; TLSFALLBACK_BIN overrides. */
export const CLI = process.env.TLSFALLBACK_BIN ?? path.join(REPO, 'target/debug/tlsfallback');
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
/** Where the screenshot goes (a CI artifact). */
export const ARTIFACTS = process.env.PLAYGROUND_ARTIFACTS ?? path.join(REPO, 'tests/artifacts');

if (!existsSync(CLI)) throw new Error(`no tlsfallback binary at ${CLI}: build it (cargo build -p tlsfallback-cli) or set TLSFALLBACK_BIN`);

/** The built-in component's engine in Node, through the same kit core the page uses. */
export async function nodeEngine() {
  const { instantiate } = await import('../vendor/policy/policy_engine.js');
  const dir = new URL('../vendor/policy/', import.meta.url);
  const exports = await instantiate((name) => WebAssembly.compile(readFileSync(new URL(name, dir))), {});
  const contract = JSON.parse(readFileSync(new URL('../vendor/kit/contract.json', import.meta.url), 'utf8'));
  const kit = createKit({ engine: exports.engine, contract });
  return new kit.PolicyEngine();
}

/**
 * The page's model (src/model.js) in Node, over the tools component the page loads, with the kit
 * bound to it; and the built-in policy component's engine, to step the simulation with.
 */
export async function nodeModel() {
  const { loadTools } = await import('../src/tools.js');
  const { createModel } = await import('../src/model.js');
  const tools = await loadTools(new URL('../vendor/tools/', import.meta.url), (url) => WebAssembly.compile(readFileSync(url)));
  const contract = JSON.parse(readFileSync(new URL('../vendor/kit/contract.json', import.meta.url), 'utf8'));
  const kit = createKit({ engine: tools.engine, contract });
  const { instantiate } = await import('../vendor/policy/policy_engine.js');
  const dir = new URL('../vendor/policy/', import.meta.url);
  const policy = await instantiate((name) => WebAssembly.compile(readFileSync(new URL(name, dir))), {});
  return { model: createModel({ tools: tools.tools, kit }), kit, contract, policyEngine: policy.engine };
}

/** Runs the CLI with `args`, feeding `input`; returns stdout. */
export function cli(args, input = '') {
  return execFileSync(CLI, args, { input, encoding: 'utf8', maxBuffer: 1 << 28 });
}

/** `tlsfallback playground` on a free port; resolves with {url, stop}. */
export function startServer(extraArgs = []) {
  const child = spawn(CLI, ['playground', '--dir', PLAYGROUND, '--listen', '127.0.0.1:0', ...extraArgs],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stderr.on('data', (chunk) => { err += chunk; });
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const match = /^playground: (http:\/\/127\.0\.0\.1:\d+\/)$/m.exec(out);
      if (match) resolve({ url: match[1], stop: () => child.kill() });
    });
    child.on('exit', (code) => reject(new Error(`tlsfallback playground exited (${code}): ${err}`)));
  });
}

/** Launches Debian's chromium through playwright-core. */
export async function launchChromium() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** Runs the pinned jco's command line (`jco parse`, `embed`, `new`). */
function jco(...args) {
  execFileSync(process.execPath, [path.join(PLAYGROUND, '../node_modules/@bytecodealliance/jco/src/jco.js'), ...args], { stdio: 'pipe' });
}

/** Writes the module or component in WebAssembly text `wat` to `out` as a binary (jco parse). */
export function watToBinary(wat, out) {
  writeFileSync(`${out}.wat`, wat);
  jco('parse', `${out}.wat`, '-o', out);
  return out;
}

/** Builds a component from a core module in WebAssembly text, with jco (parse, embed, new). */
export function componentFromWat(wat, dir) {
  const base = path.join(dir, 'fixture');
  watToBinary(wat, `${base}.core.wasm`);
  jco('embed', `${base}.core.wasm`, '--wit', path.join(REPO, 'wit'), '-n', 'policy-engine', '-o', `${base}.embedded.wasm`);
  jco('new', `${base}.embedded.wasm`, '-o', `${base}.wasm`);
  return `${base}.wasm`;
}
