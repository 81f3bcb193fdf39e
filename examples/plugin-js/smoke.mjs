// Smoke test of the built component: transpiles it with jco, runs it in Node, walks one peer
// through a few deliveries and checks every decision.
//
//   node smoke.mjs [COMPONENT]   (COMPONENT defaults to $OUT, then to dist/plugin.wasm)
//
// Exits non-zero on the first decision that is not the expected one.

import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { deepStrictEqual } from 'node:assert/strict';

import { transpile } from '@bytecodealliance/jco';

const here = dirname(fileURLToPath(import.meta.url));
const componentPath = resolve(process.argv[2] ?? process.env.OUT ?? join(here, 'dist/plugin.wasm'));

const outDir = await mkdtemp(join(tmpdir(), 'tlsfallback-plugin-js-'));
try {
  const { files, imports, exports } = await transpile(await readFile(componentPath), {
    name: 'plugin',
  });
  if (imports.length !== 0) {
    throw new Error(`the transpiled component imports ${imports.join(', ')}`);
  }
  for (const [name, bytes] of Object.entries(files)) {
    await mkdir(dirname(join(outDir, name)), { recursive: true });
    await writeFile(join(outDir, name), bytes);
  }
  const { engine } = await import(pathToFileURL(join(outDir, 'plugin.js')).href);
  console.log(`transpiled ${componentPath}: imports none, exports ${exports.map(([n]) => n).join(', ')}`);
  run(engine);
} finally {
  await rm(outDir, { recursive: true, force: true });
}

function run(engine) {
  const policy = {
    profile: 'opportunistic',
    allowLegacyTls: true,
    allowCleartext: true,
    stepDownDelaySecs: 1,
    reprobeIntervalSecs: 86400,
    pinDurationSecs: 2592000,
    transientFailureThreshold: 2,
    retryAfterSecs: 900,
  };
  const context = { dane: 'none', mtaSts: 'none', requiretls: false, tlsRequiredNo: false, sasl: false };
  const decider = new engine.Decider(policy);
  const now = 1_700_000_000n;

  const noReport = {
    starttlsNotSupported: false,
    certificateHostMismatch: false,
    certificateExpired: false,
    certificateNotTrusted: false,
    validationFailure: false,
    tlsaInvalid: false,
    dnssecInvalid: false,
    daneRequired: false,
    stsPolicyFetchError: false,
    stsPolicyInvalid: false,
    stsWebpkiInvalid: false,
  };
  const tls = {
    'legacy-tls': {
      minVersion: 'tls10',
      maxVersion: 'tls12',
      ciphers: 'legacy-compatible',
      securityLevel: 0,
      verification: 'none',
      fallbackScsv: true,
    },
    'modern-tls': {
      minVersion: 'tls12',
      maxVersion: 'tls13',
      ciphers: 'strong',
      securityLevel: 2,
      verification: 'none',
      fallbackScsv: false,
    },
    webpki: {
      minVersion: 'tls12',
      maxVersion: 'tls13',
      ciphers: 'strong',
      securityLevel: 2,
      verification: 'webpki',
      fallbackScsv: false,
    },
  };
  const attempt = (tier, delaySecs, params = tls[tier]) => ({
    tag: 'attempt',
    val: { tier, tls: params, delaySecs },
  });

  // This plugin's history blob: [0x4a, start, probed-at as 8 little-endian bytes].
  const blob = (start, probedAt = now) => {
    const bytes = new Uint8Array(10);
    bytes[0] = 0x4a;
    bytes[1] = start;
    new DataView(bytes.buffer).setBigUint64(2, probedAt, true);
    return [...bytes];
  };

  let failed = 0;
  let history; // none: a peer never seen
  const step = (title, ctx, last, expected) => {
    const decision = decider.decide(ctx, history, last, now);
    const got = {
      action: decision.action,
      reason: decision.reason,
      report: decision.report,
      history: [...decision.history],
      historyError: decision.historyError,
    };
    console.log(`${title.padEnd(42)} -> ${summary(got)}`);
    try {
      deepStrictEqual(got, { report: noReport, historyError: undefined, ...expected });
    } catch (e) {
      failed++;
      console.error(`  MISMATCH\n${e.message}`);
    }
    history = decision.history;
  };

  step('new delivery', context, undefined, {
    action: attempt('modern-tls', 0),
    reason: 'strongest-tier',
    history: blob(0),
  });
  step(
    'tls-alert protocol-version at modern-tls',
    context,
    { tier: 'modern-tls', outcome: { tag: 'tls-alert', val: 'protocol-version' } },
    { action: attempt('legacy-tls', 1), reason: 'stepped-down-after-alert', history: blob(0) },
  );
  step(
    'success at legacy-tls',
    context,
    { tier: 'legacy-tls', outcome: { tag: 'success', val: 'tls12' } },
    { action: { tag: 'done' }, reason: 'delivered', history: blob(1) },
  );
  step('new delivery, legacy-tls remembered', context, undefined, {
    action: attempt('legacy-tls', 0),
    reason: 'remembered-tier',
    history: blob(1),
  });
  step(
    'starttls-not-offered at legacy-tls',
    context,
    { tier: 'legacy-tls', outcome: { tag: 'starttls-not-offered' } },
    {
      action: { tag: 'defer', val: 900 },
      reason: 'tls-required-not-offered',
      report: { ...noReport, starttlsNotSupported: true },
      history: blob(1),
    },
  );
  step('new delivery, MTA-STS enforce', { ...context, mtaSts: 'enforce' }, undefined, {
    action: attempt('authenticated-tls', 0, tls.webpki),
    reason: 'strongest-tier',
    history: blob(1),
  });
  history = Uint8Array.from(blob(1, now - 86400n));
  step('new delivery, re-probe interval passed', context, undefined, {
    action: attempt('modern-tls', 0),
    reason: 'reprobe-upward',
    history: blob(1),
  });
  history = Uint8Array.from(blob(1));
  step(
    'alert at the remembered legacy-tls',
    context,
    { tier: 'legacy-tls', outcome: { tag: 'tls-alert', val: 'protocol-version' } },
    { action: attempt('modern-tls', 0), reason: 'stepped-up-peer-wants-stronger', history: blob(0) },
  );
  history = Uint8Array.of(1, 2, 3);
  step('new delivery, unreadable history', context, undefined, {
    action: attempt('modern-tls', 0),
    reason: 'strongest-tier',
    history: blob(0),
    historyError: { tag: 'malformed' },
  });

  // Every outcome at every tier, under each kind of context: no exception, never cleartext, and
  // only the three parameter sets the host accepts.
  const outcomes = [
    { tag: 'success', val: undefined },
    { tag: 'success', val: 'tls13' },
    { tag: 'connect-failed' },
    { tag: 'starttls-not-offered' },
    { tag: 'starttls-rejected', val: 454 },
    ...['protocol-version', 'handshake-failure', 'insufficient-security', 'inappropriate-fallback', 'other'].map(
      (val) => ({ tag: 'tls-alert', val }),
    ),
    ...['expired', 'untrusted', 'name-mismatch', 'dane-mismatch'].map((val) => ({ tag: 'certificate-error', val })),
    { tag: 'handshake-timeout' },
    { tag: 'connection-reset' },
    { tag: 'post-handshake-failure' },
    { tag: 'policy-lookup-failed' },
  ];
  const contexts = [
    context,
    { ...context, dane: 'usable' },
    { ...context, dane: 'unusable' },
    { ...context, requiretls: true },
    { ...context, tlsRequiredNo: true, mtaSts: 'enforce' },
  ];
  const histories = [undefined, new Uint8Array(0), Uint8Array.from(blob(1)), Uint8Array.from(blob(9)), new Uint8Array(100)];
  const accepted = new Set(
    [tls['legacy-tls'], tls['modern-tls'], tls.webpki, { ...tls.webpki, verification: 'dane' }].map((t) =>
      JSON.stringify(t),
    ),
  );
  let calls = 0;
  for (const profile of ['opportunistic', 'mandatory', 'authenticated-only', 'no-fallback', 'browser-style']) {
    const d = new engine.Decider({ ...policy, profile });
    for (const ctx of contexts) {
      for (const h of histories) {
        for (const last of [undefined, ...['cleartext', 'legacy-tls', 'modern-tls', 'authenticated-tls'].flatMap(
          (tier) => outcomes.map((outcome) => ({ tier, outcome })),
        )]) {
          calls++;
          let decision;
          try {
            decision = d.decide(ctx, h, last, now);
          } catch (e) {
            failed++;
            console.error(`decide threw (${profile}, ${JSON.stringify(ctx)}, ${h}, ${JSON.stringify(last)}): ${e}`);
            continue;
          }
          const a = decision.action;
          if (a.tag === 'attempt' && (a.val.tier === 'cleartext' || !accepted.has(JSON.stringify(a.val.tls)))) {
            failed++;
            console.error(`unexpected attempt ${JSON.stringify(a.val)} (${profile}, ${JSON.stringify(last)})`);
          }
        }
      }
    }
  }
  console.log(`sweep: ${calls} decisions, no exception, no cleartext, only accepted TLS parameters`);

  if (failed) {
    console.error(`${failed} decision(s) not as expected`);
    process.exit(1);
  }
  console.log('all decisions as expected');
}

function summary(d) {
  const a = d.action;
  const action =
    a.tag === 'attempt'
      ? `attempt ${a.val.tier} (${a.val.tls.minVersion}-${a.val.tls.maxVersion}, verify ${a.val.tls.verification}) after ${a.val.delaySecs}s`
      : a.tag === 'defer'
        ? `defer ${a.val}s`
        : a.tag;
  const flags = Object.keys(d.report).filter((k) => d.report[k]);
  return (
    `${action}, ${d.reason}, history [${d.history.map((b) => '0x' + b.toString(16)).join(', ')}]` +
    (flags.length ? `, report ${flags.join('+')}` : '') +
    (d.historyError ? `, history-error ${d.historyError.tag}` : '')
  );
}
