// Types for @tlsfallback/policy (hand-written; the runtime is src/index.js). The case lists of
// the union types below are copies of wit/policy.wit's: tests/tests/names.rs fails, naming the
// type and the case, when one differs (the runtime reads them from contract.json).
// Names are the WIT's kebab-case names, which are also the `tlsfallback decide` wire names; TLS
// versions use Node's names ("TLSv1" ... "TLSv1.3"), also the wire names.

/** A level of transport security, weakest first. */
export type Tier = 'cleartext' | 'legacy-tls' | 'modern-tls' | 'authenticated-tls';

/** The operator's overall stance. */
export type Profile = 'opportunistic' | 'mandatory' | 'authenticated-only' | 'no-fallback' | 'browser-style';

/** DANE TLSA state of the MX host (RFC 7672). */
export type Dane = 'none' | 'usable' | 'unusable' | 'lookup-failed';

/** MTA-STS state of the recipient domain as it applies to this MX (RFC 8461). */
export type MtaSts = 'none' | 'testing' | 'enforce' | 'fetch-failed';

/** A TLS protocol version, as Node's `tls` module names it (`minVersion`, `getProtocol()`). */
export type TlsVersion = 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';

/** A TLS alert received (or raised by the local TLS stack) during the handshake. */
export type TlsAlert = 'protocol-version' | 'handshake-failure' | 'insufficient-security' | 'inappropriate-fallback' | 'other';

/** Why certificate verification failed. */
export type CertificateError = 'expired' | 'untrusted' | 'name-mismatch' | 'dane-mismatch';

/** The kind of outcome of an attempt. */
export type OutcomeKind =
  | 'success' | 'connect-failed' | 'starttls-not-offered' | 'starttls-rejected' | 'tls-alert'
  | 'certificate-error' | 'handshake-timeout' | 'connection-reset' | 'post-handshake-failure'
  | 'policy-lookup-failed';

/** The outcomes that carry no detail. */
export type PlainOutcomeKind =
  | 'connect-failed' | 'starttls-not-offered' | 'handshake-timeout' | 'connection-reset'
  | 'post-handshake-failure' | 'policy-lookup-failed';

/** Which cipher suites to offer. */
export type CipherPolicy = 'strong' | 'legacy-compatible';

/** How to verify the peer's certificate. */
export type Verification = 'none' | 'dane' | 'webpki';

/** What the MTA does next. */
export type ActionKind = 'attempt' | 'defer' | 'bounce' | 'done';

/** Why the engine decided what it did. */
export type Reason =
  | 'strongest-tier' | 'remembered-tier' | 'reprobe-upward' | 'history-unreadable'
  | 'stepped-down-after-alert' | 'stepped-down-no-starttls' | 'stepped-down-repeated-failures'
  | 'stepped-up-peer-wants-stronger' | 'delivered' | 'connect-failed' | 'policy-lookup-failed'
  | 'dane-lookup-failed' | 'transient-failure' | 'downgrade-refused-pinned'
  | 'starttls-missing-after-tls' | 'tls-required-not-offered' | 'no-tier-left'
  | 'authentication-failed' | 'requiretls-unsatisfiable' | 'downgrade-attack-suspected'
  | 'no-fallback-profile' | 'attempt-limit' | 'inconsistent-outcome';

/** RFC 8460 (TLS-RPT) result types. */
export type TlsRptResult =
  | 'starttls-not-supported' | 'certificate-host-mismatch' | 'certificate-expired'
  | 'certificate-not-trusted' | 'validation-failure' | 'tlsa-invalid' | 'dnssec-invalid'
  | 'dane-required' | 'sts-policy-fetch-error' | 'sts-policy-invalid' | 'sts-webpki-invalid';

/** Why a history blob could not be read. */
export type HistoryErrorKind = 'empty' | 'too-long' | 'unsupported-version' | 'truncated' | 'malformed' | 'trailing-bytes';

/** The operator's policy (camelCase keys of the WIT record `policy`). */
export interface Policy {
  profile: Profile;
  /** Whether the legacy-tls tier may be used at all. */
  allowLegacyTls: boolean;
  /** Whether cleartext may be used at all. */
  allowCleartext: boolean;
  /** Seconds to wait before an attempt at a weaker tier within one delivery (u32). */
  stepDownDelaySecs: number;
  /** Seconds after which a peer remembered below the strongest tier is re-probed (u32). */
  reprobeIntervalSecs: number;
  /** Seconds a peer that delivered over modern-tls or better stays pinned; 0 disables (u32). */
  pinDurationSecs: number;
  /** Failures in a row before an unpinned peer is stepped down (u8; below 1 counts as 1). */
  transientFailureThreshold: number;
  /** Seconds after which a deferred delivery should be retried (u32). */
  retryAfterSecs: number;
}

/** What the MTA resolved for this delivery. Missing fields are none/false. */
export interface DeliveryContext {
  dane?: Dane;
  mtaSts?: MtaSts;
  /** The message was received with REQUIRETLS (RFC 8689). */
  requiretls?: boolean;
  /** The message carries `TLS-Required: No` (RFC 8689). */
  tlsRequiredNo?: boolean;
  /** SASL credentials will be sent: never cleartext. */
  sasl?: boolean;
}

/** What happened on an attempt. */
export type Outcome =
  | { kind: 'success'; /** Negotiated version; absent/null for cleartext. */ version?: TlsVersion | null; /** Informational, ignored by the engine. */ cipher?: string | null }
  | { kind: 'starttls-rejected'; /** The non-220 SMTP reply code (u16). */ code: number }
  | { kind: 'tls-alert'; alert: TlsAlert }
  | { kind: 'certificate-error'; error: CertificateError }
  | { kind: PlainOutcomeKind };

/** The MTA's report of the attempt the engine last asked for. */
export interface AttemptReport {
  tier: Tier;
  outcome: Outcome;
}

/** The arguments of one `decide` call. */
export interface DecideInput {
  context?: DeliveryContext | null;
  /** The blob the previous decision for this peer returned; null/undefined for a new peer. An
   * empty array is an (unreadable) empty blob, not "no history". */
  history?: Uint8Array | null;
  /** The outcome of the attempt the previous decision asked for; null when a delivery starts. */
  last?: AttemptReport | null;
  /** Seconds since the Unix epoch (integer number or bigint). */
  now: number | bigint;
  /** Per-call overrides of the engine's policy (e.g. per destination); a decider is cached per
   * distinct policy. */
  policy?: Partial<Policy> | null;
}

/** TLS settings the MTA must apply. */
export interface TlsParameters {
  minVersion: TlsVersion;
  maxVersion: TlsVersion;
  ciphers: CipherPolicy;
  /** OpenSSL security level (0 to 5). */
  securityLevel: number;
  verification: Verification;
  /** Send TLS_FALLBACK_SCSV (RFC 7507). */
  fallbackScsv: boolean;
}

/** An RFC 3463 enhanced status code. */
export interface EnhancedStatus {
  class: number;
  subject: number;
  detail: number;
  /** "class.subject.detail", e.g. "5.7.10". */
  text: string;
}

/** Why the history passed in was unreadable. */
export interface HistoryError {
  kind: HistoryErrorKind;
  /** The case's number (bytes for too-long and trailing-bytes, the version for unsupported-version). */
  value?: number;
  /** The message `tlsfallback decide` writes as `history_error`. */
  message: string;
}

interface DecisionCommon {
  reason: Reason;
  /** The one-line explanation of `reason` (from the contract). */
  explanation: string;
  /** TLS-RPT result types to report for this step, in WIT declaration order. */
  report: TlsRptResult[];
  /** The peer's new history blob (at most 64 bytes): store it in place of the old one. */
  history: Uint8Array;
  /** Why the history passed in was unreadable, or null. */
  historyError: HistoryError | null;
}

/** Make this attempt (after `delaySecs`), then call `decide` again with its outcome. */
export interface AttemptDecision extends DecisionCommon {
  action: 'attempt';
  tier: Tier;
  /** TLS settings; null for cleartext (no STARTTLS). */
  tls: TlsParameters | null;
  delaySecs: number;
}
/** Stop trying this peer; retry no sooner than `retryAfterSecs` from now. */
export interface DeferDecision extends DecisionCommon {
  action: 'defer';
  retryAfterSecs: number;
}
/** Return the message to its sender with this status. */
export interface BounceDecision extends DecisionCommon {
  action: 'bounce';
  status: EnhancedStatus;
}
/** The message was delivered. */
export interface DoneDecision extends DecisionCommon {
  action: 'done';
}
/** The answer to one `decide` call; narrow on `action`. */
export type Decision = AttemptDecision | DeferDecision | BounceDecision | DoneDecision;

// --- The `tlsfallback decide` wire format -------------------------------------------------------

/** Policy overrides on the wire (snake_case). */
export interface WirePolicy {
  profile?: Profile;
  allow_legacy_tls?: boolean;
  allow_cleartext?: boolean;
  step_down_delay_secs?: number;
  reprobe_interval_secs?: number;
  pin_duration_secs?: number;
  transient_failure_threshold?: number;
  retry_after_secs?: number;
}

/** The delivery context on the wire (snake_case; missing fields are none/false). */
export interface WireContext {
  dane?: Dane;
  mta_sts?: MtaSts;
  requiretls?: boolean;
  tls_required_no?: boolean;
  sasl?: boolean;
}

/** `last` on the wire: the tier, the outcome, and the outcome's details where they apply. */
export type WireLast =
  | { tier: Tier; outcome: 'success'; version?: TlsVersion | null; cipher?: string | null }
  | { tier: Tier; outcome: 'starttls-rejected'; code: number }
  | { tier: Tier; outcome: 'tls-alert'; alert: TlsAlert }
  | { tier: Tier; outcome: 'certificate-error'; error: CertificateError }
  | { tier: Tier; outcome: PlainOutcomeKind };

/** One request line of `tlsfallback decide`. */
export interface WireRequest {
  peer: string;
  now: number | bigint;
  /** Base64 of the blob the last response returned; null for a new peer; "" is an empty blob. */
  history?: string | null;
  last?: WireLast | null;
  context?: WireContext | null;
  policy?: WirePolicy | null;
}

/** TLS settings on the wire. */
export interface WireTls {
  min_version: TlsVersion;
  max_version: TlsVersion;
  ciphers: CipherPolicy;
  security_level: number;
  verification: Verification;
  fallback_scsv: boolean;
}

/** One response line of `tlsfallback decide`; keys are present only where they apply. */
export interface WireResponse {
  peer: string;
  action: ActionKind;
  /** attempt only */
  tier?: Tier;
  /** attempt at a TLS tier only */
  tls?: WireTls;
  /** attempt only */
  delay_secs?: number;
  /** defer only */
  retry_after_secs?: number;
  /** bounce only: "class.subject.detail" */
  status?: string;
  /** Base64 of the new history blob. */
  history: string;
  reason: Reason;
  explanation: string;
  report: TlsRptResult[];
  /** Only when the history passed in was unreadable. */
  history_error?: string;
}

/** The shared kit contract (kits/vectors/contract.json, generated from wit/policy.wit and the
 * engine). */
export interface Contract {
  /** Every case of the WIT's enums, flags and variants, in declaration order. */
  wit: {
    /** "tlsfallback:policy@0.2.0" */
    package: string;
    enums: Record<string, string[]>;
    flags: Record<string, string[]>;
    variants: Record<string, { name: string; payload: boolean }[]>;
  };
  /** The wire name of each WIT tls-version case ("tls10" -> "TLSv1"). */
  tls_version_names: Record<string, TlsVersion>;
  default_policy: Required<WirePolicy>;
  explanations: Record<Reason, string>;
  history_errors: Record<HistoryErrorKind, string>;
  interface: string;
  /** The fleet's protocol around the merge (the Rust host's constants). */
  fleet: FleetProtocol;
}

/** How nodes share histories in Redis: contract.json's `fleet` section. */
export interface FleetProtocol {
  /** "tlsfallback:policy/fleet@0.2.0" */
  interface: string;
  /** A peer's key is key_prefix + peer + key_suffix ("tlsfb:v1:{" ... "}:h"). */
  key_prefix: string;
  key_suffix: string;
  /** The hash field of the copy's version, bumped by each write. */
  version_field: string;
  /** The hash field of the copy's history blob (memory only, no dance). */
  blob_field: string;
  /** The Lua compare-and-set script (KEYS[1]; ARGV: expected version, blob, TTL in ms). */
  compare_and_set: string;
  compare_and_set_rounds: number;
  shortest_key_ttl_secs: number;
  default_budget_ms: number;
  default_cache_ttl_ms: number;
}

/** A history blob given to the fleet merge cannot be read. */
export class HistoryUnreadableError extends Error {
  readonly kind: HistoryErrorKind;
  /** The number of too-long, unsupported-version and trailing-bytes. */
  readonly value?: number;
}

/**
 * The history to decide with: `local` (null for a peer this node never met) with the fleet's
 * `shared` copy merged in, and `local`'s own dance. Throws HistoryUnreadableError for the first
 * blob that cannot be read (`local` first): decide with `local` as it is then.
 */
export function adoptShared(local: Uint8Array | null, shared: Uint8Array): Uint8Array;

/**
 * The shared copy to write after `local` changed, over the copy `shared` last read (null: none):
 * both memories merged, no dance. Equal to `shared`: nothing to write. Throws
 * HistoryUnreadableError when `local` cannot be read.
 */
export function blobToShare(local: Uint8Array, shared: Uint8Array | null): Uint8Array;

export const contract: Readonly<Contract>;
/** "tlsfallback:policy/engine@0.2.0" */
export const INTERFACE: string;
/** The contract's default policy. */
export const DEFAULT_POLICY: Readonly<Policy>;

export const TIERS: readonly Tier[];
export const PROFILES: readonly Profile[];
export const DANE_STATES: readonly Dane[];
export const MTA_STS_STATES: readonly MtaSts[];
export const TLS_ALERTS: readonly TlsAlert[];
export const CERTIFICATE_ERRORS: readonly CertificateError[];
export const OUTCOMES: readonly OutcomeKind[];
export const TLS_VERSIONS: readonly TlsVersion[];
/** In WIT declaration order, the order of `report`. */
export const TLS_RPT_RESULTS: readonly TlsRptResult[];
/** In WIT declaration order. */
export const REASONS: readonly Reason[];
export const HISTORY_ERRORS: readonly HistoryErrorKind[];

export interface PolicyEngineOptions {
  /** How many per-policy deciders to keep (default 64); the oldest is dropped beyond that. */
  maxDeciders?: number;
}

/** An operator's policy and the deciders (one per distinct policy) made from it. */
export class PolicyEngine {
  /**
   * @param policy overrides of the contract's default policy. Unknown keys, wrong types and
   *   out-of-range numbers throw (TypeError/RangeError naming the field).
   */
  constructor(policy?: Partial<Policy> | null, options?: PolicyEngineOptions);
  /** The effective base policy. */
  readonly policy: Readonly<Policy>;
  /** The number of deciders (distinct policies) currently cached. */
  readonly cachedDeciders: number;
  /** Decides what the MTA does next for one peer. Throws TypeError/RangeError on bad input. */
  decide(input: DecideInput): Decision;
  /** Answers one `tlsfallback decide` request (parsed JSON) with its exact response object. */
  decideJson(request: WireRequest): WireResponse;
  /** Answers one JSON line with one JSON line; with `lineNumber`, errors become
   * `{"line": N, "error": "..."}` instead of throwing. */
  decideLine(line: string, lineNumber?: number): string;
  /** Drops every cached decider (they are made again on use). */
  close(): void;
}

/** Node `tls.connect` options for an attempt's TLS parameters, as a starting point (Node sends
 * no fallback SCSV; DANE must be checked by the caller on `secureConnect`). Null for cleartext. */
export function nodeTlsOptions(tls: TlsParameters | null | undefined): {
  minVersion: TlsVersion;
  maxVersion: TlsVersion;
  ciphers: string;
  rejectUnauthorized: boolean;
} | null;

/** The version Node reports (`tlsSocket.getProtocol()`) if it is one the engine knows. */
export function tlsVersionFromNode(protocol: string | null | undefined): TlsVersion | undefined;

/** Standard padded base64 of bytes (the wire format of `history`). */
export function toBase64(bytes: Uint8Array): string;

/** The kit bound to one transpiled component (src/core.js, which also runs in browsers). */
export interface Kit {
  PolicyEngine: typeof PolicyEngine;
  DEFAULT_POLICY: Readonly<Policy>;
  contract: Readonly<Contract>;
  INTERFACE: string;
  /** The fleet's merge (throws when the component does not export the fleet interface). */
  adoptShared: typeof adoptShared;
  blobToShare: typeof blobToShare;
  /** Whether the component exports the fleet interface. */
  sharesHistories: boolean;
  /** Conversions between the WIT records jco lifts and the wire format, for hosts that call a
   * component's `Decider` themselves. WIT values are typed `unknown`: their shape is jco's. */
  wire: {
    /** The WIT policy for wire (snake_case) overrides of the contract's default policy. */
    policy(overrides?: WirePolicy | null): Policy;
    /** The WIT outcome of a wire outcome (`{outcome, version|code|alert|error}`). */
    outcome(value: Omit<WireLast, 'tier'>): unknown;
    /** The wire form of a WIT outcome. */
    outcomeOf(outcome: unknown): Omit<WireLast, 'tier'>;
    /** The wire context of a WIT delivery context, fields at their defaults left out. */
    context(context: unknown): WireContext;
    /** The response `tlsfallback decide` writes for a WIT decision about `peer`. */
    response(peer: string, decision: unknown): WireResponse;
  };
}

/** Binds the kit to a component's exported `engine` interface as jco transpiles it (the built-in
 * component or an operator's policy component) and the parsed contract.json. */
export function createKit(options: {
  engine: { Decider: new (policy: Policy) => unknown };
  contract: Contract;
  /** The component's exported `fleet` interface, when it has one. */
  fleet?: { adoptShared: Function; blobToShare: Function };
}): Kit;

export default PolicyEngine;
