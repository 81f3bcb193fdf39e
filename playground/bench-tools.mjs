// Times the tools component's whole-run `run` (a year of the stripping-attacker preset) in Debian's
// chromium, in the served page's context: `node bench-tools.mjs` after scripts/playground --build-only.
// Prints the median of 5 runs, in ms and µs per decision (the compact result: summary, blocks and
// the last history; the page asks `deliveries` for the tries in view).
import { launchChromium, startServer } from './test/support.mjs';
const server = await startServer();
const browser = await launchChromium();
try {
  const page = await browser.newPage();
  await page.goto(`${server.url}?preset=modern&days=1`);
  await page.waitForFunction(() => document.body.dataset.state === 'done');
  const out = await page.evaluate(async () => {
    const base = new URL('vendor/tools/', location.href);
    const { instantiate } = await import(new URL('policy_tools.js', base));
    const { tools } = await instantiate((n) => WebAssembly.compileStreaming(fetch(new URL(n, base))), {});
    const contract = await (await fetch(new URL('vendor/kit/contract.json', location.href))).json();
    const policy = Object.fromEntries(Object.entries(contract.default_policy).map(([k, v]) => [k.replace(/_([a-z])/g, (_, c) => c.toUpperCase()), v]));
    const peer = tools.presets().find((p) => p.name === 'stripping-attacker').peer;
    const scenario = { peer, policy, start: 1767225600n, days: 365, messagesPerDay: 4, queueLifetimeSecs: 432000n, backoff: tools.defaultBackoff(), seed: 0x5eedn };
    const runs = [];
    let decisions = 0;
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now(); const t = tools.run(scenario); runs.push(performance.now() - t0);
      ({ decisions } = t);
    }
    return { runs, decisions };
  });
  const sorted = [...out.runs].sort((a, b) => a - b);
  const median = sorted[2];
  console.log(`chromium ${browser.version()}: ${out.decisions} decisions, runs ${out.runs.map((r) => r.toFixed(0)).join(', ')} ms, median ${median.toFixed(0)} ms = ${(median * 1000 / out.decisions).toFixed(1)} us/decision`);
} finally { await browser.close(); server.stop(); }
