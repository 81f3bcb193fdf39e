// @tlsfallback/policy: the tlsfallback TLS fallback policy engine for Node MTAs.
//
// The engine is the WebAssembly component `tlsfallback export-component` writes (WIT package
// tlsfallback:policy@0.2.0, interface `engine`, zero imports), transpiled by jco into
// dist/component at build time. This module wraps it with:
//
//   - `PolicyEngine`: one operator policy (the contract's default policy plus your overrides),
//     one cached `decider` resource per distinct policy;
//   - `engine.decide(input)`: typed JS objects in, a typed decision out (see index.d.ts);
//   - `engine.decideJson(request)`: the `tlsfallback decide` wire format (one request line as a
//     parsed object in, the exact response object out).
//
// The engine is a pure function: it reads no clock, does no I/O and draws no random numbers.
// Your MTA resolves DNS (DANE, MTA-STS), makes the connections and handshakes, stores each
// peer's history blob, reads the clock, and calls `decide` once per step of a delivery.
//
// Bad input is never silently defaulted: a wrong type throws a TypeError and an out-of-range
// number a RangeError, both naming the offending field (e.g. `last.outcome.code`).

import { readFileSync } from 'node:fs';
import { createKit } from './core.js';

const DIST = new URL('../dist/', import.meta.url);

let component;
try {
  component = await import(new URL('component/policy_engine.js', DIST).href);
} catch (error) {
  throw new Error('@tlsfallback/policy: the transpiled component is missing or broken '
    + `(${new URL('component/policy_engine.js', DIST).pathname}); run \`npm run build\` `
    + 'with TLSFALLBACK_WASM pointing at the component', { cause: error });
}


export {
  TIERS, PROFILES, DANE_STATES, MTA_STS_STATES, TLS_ALERTS, CERTIFICATE_ERRORS, OUTCOMES,
  TLS_VERSIONS, TLS_RPT_RESULTS, REASONS, HISTORY_ERRORS, nodeTlsOptions, tlsVersionFromNode,
  createKit, toBase64, HistoryUnreadableError,
} from './core.js';

const kit = createKit({
  engine: component.engine,
  fleet: component.fleet,
  contract: JSON.parse(readFileSync(new URL('contract.json', DIST), 'utf8')),
});

/**
 * The shared kit contract (kits/vectors/contract.json, copied into dist at build time): the
 * interface, every case of the WIT's enums, flags and variants (the source of TIERS, REASONS and
 * the other lists), the TLS versions' wire names, the default policy (wire names), the
 * explanation of each reason and the history-error messages.
 * @type {{wit: {package: string, enums: Record<string, string[]>, flags: Record<string, string[]>,
 *         variants: Record<string, {name: string, payload: boolean}[]>},
 *         tls_version_names: Record<string, string>, default_policy: Record<string, unknown>,
 *         explanations: Record<string, string>, history_errors: Record<string, string>,
 *         interface: string}}
 */
export const contract = Object.freeze(kit.contract);

/** The WIT interface this package drives. */
export const INTERFACE = kit.INTERFACE;

/** The contract's default policy (camelCase keys), validated once at load. */
export const DEFAULT_POLICY = kit.DEFAULT_POLICY;

/** An operator's policy and the deciders made from it (see core.js and index.d.ts). */
export const PolicyEngine = kit.PolicyEngine;

export default PolicyEngine;

/**
 * The fleet's history merge (the component's `fleet` interface): the history to decide with,
 * `local` with the fleet's `shared` copy merged in. See `./fleet.js` for the Redis store.
 */
export const adoptShared = kit.adoptShared;

/** The fleet's history merge: the shared copy to write after `local` changed. */
export const blobToShare = kit.blobToShare;
