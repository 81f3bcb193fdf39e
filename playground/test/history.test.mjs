// The page's history decoder (src/history.js) against the engine, on every blob in the shared vectors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { decodeHistory, encodeHistory, HistoryDecodeError, hex } from '../src/history.js';
import { REPO } from './support.mjs';

const vectors = readFileSync(`${REPO}/kits/vectors/decide.jsonl`, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
const bytes = (b64) => Uint8Array.from(Buffer.from(b64, 'base64'));

test('every history the engine wrote decodes and re-encodes byte for byte', () => {
  const seen = new Set(vectors.map((v) => v.response.history));
  assert.ok(seen.size > 50, `only ${seen.size} distinct histories`);
  for (const b64 of seen) {
    const blob = bytes(b64);
    assert.deepEqual(encodeHistory(decodeHistory(blob)), blob, b64);
  }
});

test('every blob the engine refused gets the error kind the engine reported', () => {
  let refused = 0;
  for (const { name, request, response } of vectors) {
    if (request.history === null || request.history === undefined) continue;
    const blob = bytes(request.history);
    if (response.history_error === undefined) {
      assert.doesNotThrow(() => decodeHistory(blob), name);
      continue;
    }
    refused += 1;
    assert.throws(() => decodeHistory(blob), (error) => {
      assert.ok(error instanceof HistoryDecodeError);
      assert.equal(error.message, response.history_error, name);
      return true;
    });
  }
  assert.ok(refused > 0);
});

test('a new peer at the start of its first delivery', () => {
  const blob = bytes('AQAAAAAAgPLWygYAAQIBAQ==');
  assert.equal(hex(blob), '01 00 00 00 00 00 80 f2 d6 ca 06 00 01 02 01 01');
  assert.deepEqual(decodeHistory(blob), {
    memory: {
      startTier: null, lastSuccessTier: null, lastSuccessAt: 0n, seenTls: false, pinnedUntil: 0n,
      lastProbeAt: 1767225600n, transientFailures: 0,
    },
    dance: { tier: 'modern-tls', attempts: 1, reachedTop: true },
  });
});

test('overlong and out-of-range values are malformed, short blobs truncated', () => {
  const malformed = (b) => assert.throws(() => decodeHistory(Uint8Array.from(b)), { kind: 'malformed' });
  malformed([1, 1, 4]); // tier 4 does not exist
  malformed([1, 2]); // an option tag of 2
  malformed([1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]); // over u64
  assert.throws(() => decodeHistory(Uint8Array.from([1, 0])), { kind: 'truncated' });
  assert.throws(() => decodeHistory(new Uint8Array(65)), { kind: 'too-long' });
  assert.throws(() => decodeHistory(Uint8Array.from([2])), { kind: 'unsupported-version' });
});
