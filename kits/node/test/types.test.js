// Type-checks src/index.d.ts and typecheck/usage.ts with the pinned TypeScript (tsc --noEmit).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
// The npm workspace's one install (`npm ci` at the repository root) holds the pinned TypeScript.
const tsc = fileURLToPath(new URL('../../../node_modules/typescript/bin/tsc', import.meta.url));

test('the TypeScript types check (tsc --noEmit)', { skip: !existsSync(tsc) && 'typescript is not installed (npm ci at the repository root)' }, () => {
  try {
    execFileSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: root, encoding: 'utf8', stdio: 'pipe' });
  } catch (error) {
    assert.fail(`tsc failed:\n${error.stdout}${error.stderr}`);
  }
});
