// Types of src/fleet.js: a fleet's shared peer histories in Redis (see that file).

/** The Redis key of a peer's shared copy. */
export function keyOf(peer: string): string;

/** Seconds a shared copy lives after its last write, for these policies. */
export function keyTtlFor(
  policies: Iterable<{ pinDurationSecs: number; reprobeIntervalSecs: number }>,
): number;

/** Redis gave no usable answer: the node decides from its local history. */
export class FleetUnavailableError extends Error {}

/** A node's own history store (the Haraka plugin's shape; sync or async). */
export interface HistoryStore {
  get(peer: string): Uint8Array | null | Promise<Uint8Array | null>;
  set(peer: string, history: Uint8Array): unknown;
}

export interface FleetOptions {
  /** The node's own store (default a Map; persist it: it is the source of truth). */
  local?: HistoryStore;
  /** How long a copy read is trusted, in ms (default 5,000). */
  cacheTtlMs?: number;
  /** How long a copy lives after its last write, in seconds (default a day). */
  keyTtlSecs?: number;
  /** Errors in a row that open the circuit (default 5). */
  failuresToOpen?: number;
  /** How long the circuit stays open, in ms (default 2,000). */
  cooldownMs?: number;
  /** A monotonic clock in milliseconds (default performance.now). */
  clock?: () => number;
  /** Where warnings go. */
  log?: (line: string) => void;
}

/** A shared copy as read: its version and blob. */
export interface SharedCopy {
  version: Uint8Array;
  blob: Uint8Array;
}

/** A history store with the fleet's shared copies merged in. */
export class FleetHistoryStore implements HistoryStore {
  /** `redis`: an ioredis client. */
  constructor(options: FleetOptions & { redis: unknown });
  /** A store on a `redis://` or `rediss://` URL through ioredis. */
  static connect(
    url: string,
    options?: FleetOptions & { budgetMs?: number; connectTimeoutMs?: number; ca?: string | Uint8Array },
  ): Promise<FleetHistoryStore>;
  readonly local: HistoryStore;
  readonly warnings: string[];
  readonly unpublished: Set<string>;
  readonly counters: Record<'reads' | 'writes' | 'unchanged' | 'conflicts' | 'errors' | 'skipped', number>;
  readonly circuitOpen: boolean;
  get(peer: string): Promise<Uint8Array | null>;
  set(peer: string, history: Uint8Array): Promise<void>;
  shared(peer: string): Promise<SharedCopy | null>;
  publish(peer: string, local: Uint8Array): Promise<boolean>;
  mergeUp(): Promise<number>;
  forgetCached(peer: string): void;
  close(): Promise<void>;
}
