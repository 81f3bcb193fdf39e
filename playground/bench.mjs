// `npm run bench`: how long the page takes, in Debian's chromium, to run the built-in engine over
// a few scenarios (in the tools component: policy-core's simulator and engine, the tries lifted
// only as far as the page shows them) and to draw them, and to transpile the example plugin. Prints a Markdown table (median of RUNS, default
// 3), or with BENCH_JSON=1 one JSON object (what scripts/bench puts in docs/benchmarks.md).
// Needs the built playground (scripts/playground --build-only) and target/debug/tlsfallback.
import { launchChromium, startServer } from './test/support.mjs';

const RUNS = Number(process.env.RUNS ?? 3);
const SCENARIOS = [
  ['legacy-only', 30, 4],
  ['stripping-attacker', 30, 4],
  ['flaky-network', 365, 4],
  ['upgrading', 365, 24],
  ['stripping-attacker', 365, 4],
];
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const json = process.env.BENCH_JSON === '1';
const report = { chromium: null, runs: RUNS, scenarios: [], transpileMs: [] };
const print = (line) => { if (!json) console.log(line); };

const server = await startServer();
const browser = await launchChromium();
try {
  report.chromium = browser.version();
  print(`chromium ${browser.version()}, median of ${RUNS} runs\n`);
  print('| scenario | days × messages/day | decisions | run, first in a fresh page | run, again | µs a decision (again) | draw (SVG) |');
  print('|---|---|---|---|---|---|---|');
  for (const [preset, days, perDay] of SCENARIOS) {
    const first = [];
    const again = [];
    for (let i = 0; i < RUNS; i++) {
      const page = await browser.newPage({ viewport: { width: 1600, height: 1200 } });
      await page.goto(`${server.url}?preset=${preset}&days=${days}&per_day=${perDay}`);
      await page.waitForFunction(() => document.body.dataset.state === 'done', null, { timeout: 120000 });
      first.push(await page.evaluate(() => window.playground.timings));
      // The same run again: the tools component's code is compiled and warm by now.
      await page.evaluate(() => { document.body.dataset.state = 'again'; });
      await page.click('#run');
      await page.waitForFunction(() => document.body.dataset.state === 'done', null, { timeout: 120000 });
      again.push(await page.evaluate(() => window.playground.timings));
      await page.close();
    }
    const cold = median(first.map((s) => s.builtInSimulateMs));
    const warm = median(again.map((s) => s.builtInSimulateMs));
    const draw = median(again.map((s) => s.drawMs));
    const decisions = first[0].builtInDecisions;
    report.scenarios.push({ preset, days, perDay, decisions, firstRunMs: cold, runMs: warm, drawMs: draw });
    print(`| ${preset} | ${days} × ${perDay} | ${decisions} | ${cold.toFixed(0)} ms | ${warm.toFixed(0)} ms | `
      + `${((warm * 1000) / decisions).toFixed(2)} | ${draw.toFixed(0)} ms |`);
  }
  const transpile = [];
  for (let i = 0; i < RUNS; i++) {
    const page = await browser.newPage();
    await page.goto(`${server.url}?preset=modern&days=1`);
    await page.waitForFunction(() => document.body.dataset.state === 'done');
    await page.click('#load-example');
    await page.waitForFunction(() => document.body.dataset.plugin === 'loaded', null, { timeout: 60000 });
    transpile.push(Number(/transpiled in (\d+) ms/.exec(await page.textContent('#plugin-status'))[1]));
    await page.close();
  }
  report.transpileMs = transpile;
  print(`\nTranspiling the example plugin (first-contact.wasm) in the page, jco's transpiler loaded `
    + `fresh each time: median ${median(transpile)} ms (${transpile.join(', ')}).`);
  if (json) console.log(JSON.stringify(report));
} finally {
  await browser.close();
  server.stop();
}
