// `npm run build`: transpiles the policy component with jco into dist/component and copies the
// shared contract (default policy, explanations, history-error messages) into dist.
//
// The component is taken from $TLSFALLBACK_WASM (default ./policy_engine.wasm), e.g. the file
// `tlsfallback export-component policy_engine.wasm` writes.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const wasm = path.resolve(root, process.env.TLSFALLBACK_WASM || 'policy_engine.wasm');
const dist = path.join(root, 'dist');
const out = path.join(dist, 'component');
const contract = path.resolve(root, '../vectors/contract.json');

if (!existsSync(wasm)) {
  console.error(`build: no component at ${wasm}\n`
    + '  write one with `tlsfallback export-component policy_engine.wasm`, or set TLSFALLBACK_WASM');
  process.exit(1);
}
if (!existsSync(contract)) {
  console.error(`build: no contract at ${contract} (kits/vectors/contract.json)`);
  process.exit(1);
}

rmSync(dist, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
// The npm workspace's one install (`npm ci` at the repository root) holds the pinned jco.
const jco = path.join(root, '..', '..', 'node_modules', '@bytecodealliance', 'jco', 'src', 'jco.js');
execFileSync(process.execPath, [jco, 'transpile', wasm, '-o', out, '--name', 'policy_engine', '-q'],
  { stdio: 'inherit', cwd: root });
copyFileSync(contract, path.join(dist, 'contract.json'));
console.log(`build: ${path.relative(root, wasm) || wasm} -> dist/component (${readdirSync(out).join(', ')}), dist/contract.json`);
