// Every shared vector (kits/vectors/decide.jsonl, generated from the native Rust engine) through
// decideJson: the response must deep-equal the vector's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { PolicyEngine } from '../src/index.js';

const vectors = readFileSync(new URL('../../vectors/decide.jsonl', import.meta.url), 'utf8')
  .split('\n').filter((line) => line.trim() !== '').map((line) => JSON.parse(line));

test('the vector file is the full set', () => {
  assert.equal(vectors.length, 2244);
  assert.equal(new Set(vectors.map((v) => v.name)).size, vectors.length, 'vector names are unique');
});

test('decideJson reproduces every vector exactly', () => {
  const engine = new PolicyEngine();
  const mismatches = [];
  for (const vector of vectors) {
    let got;
    try {
      got = engine.decideJson(structuredClone(vector.request));
    } catch (error) {
      got = { thrown: error.message };
    }
    if (!isDeepStrictEqual(got, vector.response)) mismatches.push({ name: vector.name, got, want: vector.response });
  }
  assert.deepEqual(mismatches.slice(0, 5), [],
    `${mismatches.length} of ${vectors.length} vectors differ; the first are shown`);
});

test('decideLine answers a JSON line with the same JSON, and key order matches the CLI', () => {
  const engine = new PolicyEngine();
  for (const vector of vectors.slice(0, 200)) {
    assert.equal(engine.decideLine(JSON.stringify(vector.request)), JSON.stringify(vector.response), vector.name);
  }
});

test('one decider per distinct policy', () => {
  const engine = new PolicyEngine();
  const distinct = new Set(vectors.map((v) => JSON.stringify(Object.entries(v.request.policy ?? {}).sort())));
  for (const vector of vectors) engine.decideJson(vector.request);
  // The base policy's decider, plus one per distinct non-empty override set (some may coincide).
  assert.ok(engine.cachedDeciders >= 2 && engine.cachedDeciders <= distinct.size + 1, `${engine.cachedDeciders}`);
  const before = engine.cachedDeciders;
  for (const vector of vectors) engine.decideJson(vector.request);
  assert.equal(engine.cachedDeciders, before, 'no new deciders for policies already seen');
});
