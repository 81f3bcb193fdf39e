// The page's history display (src/tools.js readHistory over the tools component's decoder) against
// the engine, on every blob in the shared vectors: the page reads a blob as the engine does and
// refuses it with the engine's own message.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { hex, loadTools, readHistory } from '../src/tools.js';
import { REPO } from './support.mjs';

const { tools } = await loadTools(new URL('../vendor/tools/', import.meta.url), (url) => WebAssembly.compile(readFileSync(url)));
const contract = JSON.parse(readFileSync(new URL('../vendor/kit/contract.json', import.meta.url), 'utf8'));
const read = (blob) => readHistory(tools, contract, blob);
const vectors = readFileSync(`${REPO}/kits/vectors/decide.jsonl`, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
const bytes = (b64) => Uint8Array.from(Buffer.from(b64, 'base64'));

test('every history the engine wrote is read, and reads as the engine\'s next request sees it', () => {
  const seen = new Set(vectors.map((v) => v.response.history));
  assert.ok(seen.size > 50, `only ${seen.size} distinct histories`);
  for (const b64 of seen) {
    const { history, error } = read(bytes(b64));
    assert.equal(error, undefined, b64);
    assert.ok(['cleartext', 'legacy-tls', 'modern-tls', 'authenticated-tls', undefined].includes(history.memory.startTier), b64);
    assert.equal(typeof history.memory.pinnedUntil, 'bigint', b64);
  }
});

test('every blob the engine refused gets the error kind and message the engine reported', () => {
  let refused = 0;
  for (const { name, request, response } of vectors) {
    if (request.history === null || request.history === undefined) continue;
    const { error } = read(bytes(request.history));
    if (response.history_error === undefined) {
      assert.equal(error, undefined, name);
      continue;
    }
    refused += 1;
    assert.ok(error !== undefined, name);
    assert.equal(error.message, response.history_error, name);
  }
  assert.ok(refused > 0);
});

test('a new peer at the start of its first delivery', () => {
  const blob = bytes('AQAAAAAAgPLWygYAAQIBAQ==');
  assert.equal(hex(blob), '01 00 00 00 00 00 80 f2 d6 ca 06 00 01 02 01 01');
  const { memory, dance } = read(blob).history;
  assert.deepEqual({ ...memory }, {
    startTier: undefined, lastSuccessTier: undefined, lastSuccessAt: 0n, seenTls: false, pinnedUntil: 0n,
    lastProbeAt: 1767225600n, transientFailures: 0,
  });
  assert.deepEqual({ ...dance }, { tier: 'modern-tls', attempts: 1, reachedTop: true });
});

test('overlong and out-of-range values are malformed, short blobs truncated, with the engine\'s messages', () => {
  const kind = (b) => read(Uint8Array.from(b)).error?.kind;
  assert.equal(kind([1, 1, 4]), 'malformed'); // tier 4 does not exist
  assert.equal(kind([1, 2]), 'malformed'); // an option tag of 2
  assert.equal(kind([1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]), 'malformed'); // over u64
  assert.equal(kind([1, 0]), 'truncated');
  assert.equal(kind(new Array(65).fill(0)), 'too-long');
  assert.equal(kind([2]), 'unsupported-version');
  assert.match(read(new Uint8Array(65)).error.message, /65/);
  assert.match(read(Uint8Array.from([2])).error.message, /2/);
});
