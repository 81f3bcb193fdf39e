// An example policy plugin in JavaScript: "TLS always, legacy when needed, never cleartext".
//
// Compiled into a WebAssembly component by ComponentizeJS (see build.mjs), it exports the
// `engine` interface of the WIT world `policy-engine` (package tlsfallback:policy@0.2.0, in
// ../../wit/policy.wit) and imports nothing: no clock, no randomness, no stdio. Like the built-in
// engine, it is a pure function of its arguments.
//
// The policy
// ----------
// * Cleartext is never attempted, whatever `policy.allowCleartext` says.
// * `relaxed` = the message carries `TLS-Required: No` and was not received with REQUIRETLS.
// * Authenticated TLS is required when the message was received with REQUIRETLS, or (unless
//   relaxed) when DANE is usable or MTA-STS enforces, or when the profile is `authenticated-only`.
//   The only tier is then `authenticated-tls`, verified with DANE when DANE is usable (and not
//   relaxed), with WebPKI otherwise.
// * Otherwise the top tier is `modern-tls`, and `legacy-tls` is allowed when the policy allows
//   legacy TLS and the profile is not `no-fallback`.
// * A new delivery (`last` undefined) starts at `legacy-tls` if the peer is remembered to need it
//   and legacy is allowed (reason `remembered-tier`), else at the top tier (`strongest-tier`).
//   Once `policy.reprobeIntervalSecs` have passed since the top tier was last tried for a peer
//   remembered at legacy, the delivery starts at the top tier again (`reprobe-upward`): peers
//   that upgrade are noticed.
// * A protocol-version, handshake-failure or insufficient-security alert at `modern-tls` steps
//   down to `legacy-tls` after `policy.stepDownDelaySecs` (`stepped-down-after-alert`) when legacy
//   is allowed.
// * Any alert at a remembered `legacy-tls` means the peer dropped old TLS (it upgraded): retry at
//   the top tier at once (`stepped-up-peer-wants-stronger`) and forget the legacy tier. Every
//   delivery is thus at most three attempts (legacy, top, legacy) before a deferral.
// * Success is `done` (`delivered`); the peer is remembered to need `legacy-tls` if that is where
//   it succeeded, and forgotten otherwise.
// * A peer without STARTTLS (not offered, or rejected) is deferred by `policy.retryAfterSecs`
//   (`tls-required-not-offered`) and reported to TLS-RPT as `starttls-not-supported`.
// * Anything else defers by `policy.retryAfterSecs`: `connect-failed` for a failed connection,
//   `transient-failure` for a timeout, a reset or a broken session, `no-tier-left` otherwise.
// * There is no pinning: this policy never sends cleartext, so there is nothing to pin against.
//
// History blob (this plugin's own format, 10 bytes, well under the 64-byte limit)
// -------------------------------------------------------------------------------
//   [0x4A, start, probed-at (8 bytes, little-endian)]
//     start      the index of the tier the next delivery starts at in the WIT `tier` enum
//                (cleartext 0, legacy-tls 1, modern-tls 2, authenticated-tls 3), 0 meaning
//                "nothing remembered"; this plugin only ever writes 0 or 1
//     probed-at  when the top tier was last tried, in seconds since the Unix epoch
// A missing or empty blob is an unknown peer. Any other blob (another engine's, a truncated one, a
// start this plugin never writes) is treated as an unknown peer too, and the decision says so in
// `historyError` ({ tag: 'malformed' }); nothing is thrown.
//
// How ComponentizeJS maps the WIT types (the same conventions as jco's transpiled bindings)
// ----------------------------------------------------------------------------------------
// * The exported interface `engine` is an exported object named `engine`; its resource `decider`
//   is a class named `Decider` in it; the constructor takes the `policy` record.
// * Records are objects with lowerCamelCase fields (`allow-legacy-tls` -> `allowLegacyTls`).
// * Enums are their WIT case names as strings: 'modern-tls', 'authenticated-only'.
// * Variants are `{ tag, val }` with the case name as tag: { tag: 'tls-alert', val:
//   'protocol-version' }, { tag: 'defer', val: 900 }, { tag: 'done' } (no `val` for a case without
//   a payload).
// * option<T> is the value or `undefined` (a value of `null` is accepted on input here too).
// * flags are objects of booleans with lowerCamelCase keys (`starttlsNotSupported`).
// * list<u8> is a Uint8Array; u64 (`now`) is a BigInt; u8/u16/u32 are plain numbers.

const MAGIC = 0x4a;
const HISTORY_LEN = 10;

/** Tier indices in the WIT `tier` enum, as stored in the history blob. */
const TIER_INDEX = {
  cleartext: 0,
  'legacy-tls': 1,
  'modern-tls': 2,
  'authenticated-tls': 3,
};
const NOTHING_REMEMBERED = 0;

/** The TLS-RPT flags, all off. */
function noReport() {
  return {
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
}

/** The TLS parameters of each tier: exactly these, the host refuses anything else. */
function tlsParameters(tier, verification) {
  switch (tier) {
    case 'legacy-tls':
      return {
        minVersion: 'tls10',
        maxVersion: 'tls12',
        ciphers: 'legacy-compatible',
        securityLevel: 0,
        verification: 'none',
        fallbackScsv: true,
      };
    case 'modern-tls':
      return {
        minVersion: 'tls12',
        maxVersion: 'tls13',
        ciphers: 'strong',
        securityLevel: 2,
        verification: 'none',
        fallbackScsv: false,
      };
    case 'authenticated-tls':
      return {
        minVersion: 'tls12',
        maxVersion: 'tls13',
        ciphers: 'strong',
        securityLevel: 2,
        verification,
        fallbackScsv: false,
      };
    default:
      // Never reached: this plugin never attempts cleartext.
      throw new Error(`no TLS parameters for tier ${tier}`);
  }
}

/**
 * Reads a history blob: `{ start, probedAt, error }`, where `start` is the remembered tier index,
 * `probedAt` (a BigInt) when the top tier was last tried, and `error` the WIT history-error for a
 * non-empty blob that could not be read (else undefined). Never throws.
 */
function readHistory(history) {
  if (history == null || history.length === 0) {
    return { start: NOTHING_REMEMBERED, probedAt: 0n, error: undefined };
  }
  if (
    history.length === HISTORY_LEN &&
    history[0] === MAGIC &&
    (history[1] === NOTHING_REMEMBERED || history[1] === TIER_INDEX['legacy-tls'])
  ) {
    const view = new DataView(history.buffer, history.byteOffset, history.byteLength);
    return { start: history[1], probedAt: view.getBigUint64(2, true), error: undefined };
  }
  return { start: NOTHING_REMEMBERED, probedAt: 0n, error: { tag: 'malformed' } };
}

function writeHistory(start, probedAt) {
  const blob = new Uint8Array(HISTORY_LEN);
  blob[0] = MAGIC;
  blob[1] = start;
  new DataView(blob.buffer).setBigUint64(2, probedAt, true);
  return blob;
}

/** The tiers this policy allows for `context`. */
function tiersFor(policy, context) {
  const relaxed = context.tlsRequiredNo && !context.requiretls;
  const authenticated =
    context.requiretls ||
    (!relaxed && (context.dane === 'usable' || context.mtaSts === 'enforce')) ||
    policy.profile === 'authenticated-only';
  if (authenticated) {
    return {
      top: 'authenticated-tls',
      verification: context.dane === 'usable' && !relaxed ? 'dane' : 'webpki',
      legacyAllowed: false,
    };
  }
  return {
    top: 'modern-tls',
    verification: 'none',
    legacyAllowed: policy.allowLegacyTls && policy.profile !== 'no-fallback',
  };
}

/** The alerts that mean "this peer cannot do modern TLS". */
const STEP_DOWN_ALERTS = new Set(['protocol-version', 'handshake-failure', 'insufficient-security']);

class Decider {
  /** @param {object} policy the WIT `policy` record */
  constructor(policy) {
    this.policy = policy;
  }

  /**
   * @param {object} context the WIT `delivery-context` record
   * @param {Uint8Array | undefined} history
   * @param {{ tier: string, outcome: { tag: string, val?: any } } | undefined} last
   * @param {bigint} now seconds since the Unix epoch
   */
  decide(context, history, last, now) {
    const policy = this.policy;
    const tiers = tiersFor(policy, context);
    const remembered = readHistory(history);
    let start = remembered.start;
    let probedAt = remembered.probedAt;

    const attempt = (tier, delaySecs, reason) => ({
      action: {
        tag: 'attempt',
        val: { tier, tls: tlsParameters(tier, tiers.verification), delaySecs },
      },
      reason,
    });
    const defer = (reason) => ({ action: { tag: 'defer', val: policy.retryAfterSecs }, reason });

    let step;
    let report = noReport();

    if (last == null) {
      // A new delivery.
      const legacyRemembered = start === TIER_INDEX['legacy-tls'] && tiers.legacyAllowed;
      if (legacyRemembered && now - probedAt < BigInt(policy.reprobeIntervalSecs)) {
        step = attempt('legacy-tls', 0, 'remembered-tier');
      } else {
        step = attempt(tiers.top, 0, legacyRemembered ? 'reprobe-upward' : 'strongest-tier');
        probedAt = now;
      }
    } else {
      const outcome = last.outcome;
      switch (outcome.tag) {
        case 'success':
          step = { action: { tag: 'done' }, reason: 'delivered' };
          start = last.tier === 'legacy-tls' ? TIER_INDEX['legacy-tls'] : NOTHING_REMEMBERED;
          break;
        case 'tls-alert':
          if (
            STEP_DOWN_ALERTS.has(outcome.val) &&
            last.tier === 'modern-tls' &&
            tiers.legacyAllowed
          ) {
            step = attempt('legacy-tls', policy.stepDownDelaySecs, 'stepped-down-after-alert');
          } else if (last.tier === 'legacy-tls' && start === TIER_INDEX['legacy-tls']) {
            // The peer no longer speaks the legacy tier it was remembered at: it upgraded.
            step = attempt(tiers.top, 0, 'stepped-up-peer-wants-stronger');
            start = NOTHING_REMEMBERED;
            probedAt = now;
          } else {
            step = defer('no-tier-left');
          }
          break;
        case 'starttls-not-offered':
        case 'starttls-rejected':
          step = defer('tls-required-not-offered');
          report.starttlsNotSupported = true;
          break;
        case 'connect-failed':
          step = defer('connect-failed');
          break;
        case 'handshake-timeout':
        case 'connection-reset':
        case 'post-handshake-failure':
          step = defer('transient-failure');
          break;
        default:
          step = defer('no-tier-left');
          break;
      }
    }

    return {
      action: step.action,
      reason: step.reason,
      report,
      history: writeHistory(start, probedAt),
      historyError: remembered.error,
    };
  }
}

/** The exported `engine` interface of the `policy-engine` world. */
export const engine = { Decider };
