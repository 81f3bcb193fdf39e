// `node node.js DIR`: times the jco-transpiled component in DIR (policy_engine.js) in Node and
// prints one JSON line per case.
import { pathToFileURL } from 'node:url';
import path from 'node:path';
import { run } from './decide-bench.js';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node node.js TRANSPILED_DIR');
  process.exit(64);
}
const { engine } = await import(pathToFileURL(path.resolve(dir, 'policy_engine.js')).href);
for (const result of run(engine, Number(process.env.BENCH_SECONDS ?? 2))) {
  console.log(JSON.stringify({ runtime: `node ${process.version}`, ...result }));
}
