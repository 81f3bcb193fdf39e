// The tools component (bindings/tools, transpiled by jco into vendor/tools/): policy-core's own
// simulator, presets and history decoder, so what the page shows about a run or a history blob is
// what the engine's Rust code says, not a JavaScript copy of it.

/**
 * Instantiates the tools component; `compile(url)` turns a core module's URL into a
 * `WebAssembly.Module` (fetch-and-compile in the page, read-and-compile in the tests).
 */
export async function loadTools(base, compile) {
  const { instantiate } = await import(new URL('policy_tools.js', base));
  return instantiate((name) => compile(new URL(name, base)), {});
}

/**
 * Reads a history blob with the component's decoder, as the engine reads it: `{history}` (times
 * as bigint seconds, 0 for never) or `{error: {kind, message}}` with the message the engine's
 * decide response gives for the same blob (the contract's `history_errors`).
 */
export function readHistory(tools, contract, blob) {
  try {
    return { history: tools.decodeHistory(blob) };
  } catch (error) {
    const refusal = error?.payload;
    if (refusal === undefined || typeof contract.history_errors?.[refusal.tag] !== 'string') throw error;
    const message = contract.history_errors[refusal.tag].replaceAll('{0}', String(refusal.val));
    return { error: { kind: refusal.tag, message } };
  }
}

/** Lower-case hex, bytes separated by spaces. */
export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');
}
