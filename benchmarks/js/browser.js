// `node browser.js DIR`: times the jco-transpiled component in DIR in headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core; no browser is downloaded) and prints one JSON
// line per case. The page is served from 127.0.0.1 on a free port.
import http from 'node:http';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const transpiled = process.argv[2];
if (!transpiled) {
  console.error('usage: node browser.js TRANSPILED_DIR');
  process.exit(64);
}
const seconds = Number(process.env.BENCH_SECONDS ?? 2);
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';

const TYPES = { '.js': 'text/javascript', '.wasm': 'application/wasm', '.html': 'text/html' };
const PAGE = `<!doctype html><meta charset="utf-8"><title>tlsfallback decide benchmark</title>
<script type="module">
  import { engine } from '/transpiled/policy_engine.js';
  import { run } from '/decide-bench.js';
  window.benchmark = () => run(engine, ${seconds});
  window.ready = true;
</script>`;

const server = http.createServer(async (request, response) => {
  const url = new URL(request.url, 'http://localhost');
  let file;
  if (url.pathname === '/') {
    response.writeHead(200, { 'content-type': 'text/html' }).end(PAGE);
    return;
  } else if (url.pathname.startsWith('/transpiled/')) {
    file = path.join(transpiled, path.normalize(url.pathname.slice('/transpiled/'.length)));
  } else {
    file = path.join(here, path.normalize(url.pathname));
  }
  try {
    const body = await fs.readFile(file);
    response.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
    response.end(body);
  } catch {
    response.writeHead(404).end();
  }
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address();

const browser = await chromium.launch({
  executablePath,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  page.on('pageerror', (error) => console.error(`page error: ${error}`));
  await page.goto(`http://127.0.0.1:${port}/`);
  await page.waitForFunction(() => window.ready === true);
  const version = browser.version();
  const results = await page.evaluate(() => window.benchmark());
  for (const result of results) {
    console.log(JSON.stringify({ runtime: `chromium ${version}`, ...result }));
  }
} finally {
  await browser.close();
  server.close();
}
