// @tlsfallback/policy/fleet: a fleet's shared peer histories in Redis (or Valkey).
//
// Each node keeps its own history store, the source of truth for its own deliveries. Redis holds
// one shared copy per peer, which every node merges into its history before deciding and merges
// its changes into after. The merge is the engine's own (`adoptShared`, `blobToShare`: the
// component's `fleet` interface), so a pin or proof of a stronger tier learned by one node
// survives any order of exchanges, and a step-down forged on a node that proved less is dropped.
// The protocol (a peer's key, its two fields, the compare-and-set script) is contract.json's
// `fleet` section, the one the Rust host uses: Node nodes and `tlsfallback` nodes share a fleet.
//
// Redis is soft state. Every call is bounded by the client's `commandTimeout` (`connect`'s
// `budgetMs`, 50 ms by default); an error or a timeout leaves the decision to the local history,
// a circuit breaker stops calling Redis after repeated failures and lets one trial through after
// a cooldown, and a change Redis missed is merged up when it answers again (kept in memory: a
// node restarted during an outage shares the peer at its next change).

import { adoptShared, blobToShare, contract, HistoryUnreadableError } from './index.js';

const protocol = contract.fleet;
if (protocol === null || typeof protocol !== 'object') {
  throw new Error('@tlsfallback/policy/fleet: contract.json has no fleet section (rebuild the kit)');
}

/** The Redis key of a peer's shared copy (a Redis Cluster hash tag around the peer). */
export function keyOf(peer) {
  return `${protocol.key_prefix}${peer}${protocol.key_suffix}`;
}

/**
 * Seconds a shared copy lives after its last write: twice the longest pin or re-probe interval
 * of `policies`, and at least contract.json's shortest (a day).
 * @param {Iterable<{pinDurationSecs: number, reprobeIntervalSecs: number}>} policies
 */
export function keyTtlFor(policies) {
  let longest = 0;
  for (const p of policies) longest = Math.max(longest, p.pinDurationSecs, p.reprobeIntervalSecs);
  return Math.max(2 * longest, protocol.shortest_key_ttl_secs);
}

/** Redis gave no usable answer: the node decides from its local history. */
export class FleetUnavailableError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = 'FleetUnavailableError';
  }
}

const COMMAND = 'tlsfallbackCompareAndSet';

/**
 * A history store (`{get(peer), set(peer, history)}`, the Haraka plugin's) with the fleet merged
 * in: `get` gives the local history with the shared copy merged in (the local one alone when
 * Redis does not answer or the copy cannot be read), `set` stores locally, then merges up.
 */
export class FleetHistoryStore {
  #cache = new Map();
  #failures = 0;
  #openUntil = null;
  #recovered = false;

  /**
   * @param {object} options
   * @param {object} options.redis an ioredis client (`connect` makes one with the right timeouts)
   * @param {{get(peer: string): unknown, set(peer: string, history: Uint8Array): unknown}} [options.local]
   *   the node's own store (default a Map; persist it: it is the source of truth)
   * @param {number} [options.cacheTtlMs] how long a copy read is trusted (default contract's, 5 s)
   * @param {number} [options.keyTtlSecs] how long a copy lives after its last write
   * @param {number} [options.failuresToOpen] errors in a row that open the circuit (default 5)
   * @param {number} [options.cooldownMs] how long it stays open (default 2,000)
   * @param {() => number} [options.clock] a monotonic clock in milliseconds
   * @param {(line: string) => void} [options.log] where warnings go (default none)
   */
  constructor({ redis, local, cacheTtlMs, keyTtlSecs, failuresToOpen = 5, cooldownMs = 2000,
    clock = () => performance.now(), log = () => {} }) {
    if (typeof redis?.hmgetBuffer !== 'function' || typeof redis?.defineCommand !== 'function') {
      throw new TypeError('FleetHistoryStore: redis must be an ioredis client');
    }
    this.redis = redis;
    this.local = local ?? new MapStore();
    this.cacheTtlMs = cacheTtlMs ?? protocol.default_cache_ttl_ms;
    this.keyTtlSecs = keyTtlSecs ?? protocol.shortest_key_ttl_secs;
    this.failuresToOpen = Math.max(1, failuresToOpen);
    this.cooldownMs = cooldownMs;
    this.clock = clock;
    this.log = log;
    /** What went wrong with the fleet, newest last (the last 100). */
    this.warnings = [];
    /** Peers whose local change Redis has not taken yet. */
    this.unpublished = new Set();
    /** Reads, writes, unchanged merges, lost compare-and-set rounds, errors, skipped calls. */
    this.counters = { reads: 0, writes: 0, unchanged: 0, conflicts: 0, errors: 0, skipped: 0 };
    if (typeof redis[`${COMMAND}Buffer`] !== 'function') {
      // EVALSHA, with the script sent again when the server answers NOSCRIPT.
      redis.defineCommand(COMMAND, { numberOfKeys: 1, lua: protocol.compare_and_set });
    }
  }

  /**
   * A store on `url` (`redis://[user:password@]host:port[/db]`, `rediss://` for TLS, checked
   * against `ca` or Node's CAs) through ioredis, which the caller installs.
   * @param {string} url
   * @param {{budgetMs?: number, connectTimeoutMs?: number, ca?: string|Buffer} & object} [options]
   *   the constructor's options besides `redis`
   */
  static async connect(url, { budgetMs, connectTimeoutMs = 250, ca, ...options } = {}) {
    const { Redis } = await import('ioredis');
    const budget = budgetMs ?? protocol.default_budget_ms;
    const redis = new Redis(url, {
      commandTimeout: budget,
      connectTimeout: Math.max(budget, connectTimeoutMs),
      // No retry inside the client: a retry doubles the wait, and the breaker decides when to
      // call a failing server again. A command sent while the client (re)connects waits in its
      // queue, but no longer than commandTimeout: a new process's first call needs that.
      maxRetriesPerRequest: 0,
      enableOfflineQueue: true,
      ...(ca === undefined ? {} : { tls: { ca } }),
    });
    redis.on('error', () => {}); // reported per call, through the breaker
    return new FleetHistoryStore({ redis, ...options });
  }

  /** Whether calls are being skipped (until the cooldown lets one trial through). */
  get circuitOpen() {
    return this.#openUntil !== null && this.clock() < this.#openUntil;
  }

  #warn(message) {
    this.warnings.push(message);
    if (this.warnings.length > 100) this.warnings.shift();
    this.log(`tlsfallback fleet: ${message}`);
  }

  async #call(what, call) {
    if (this.circuitOpen) {
      this.counters.skipped += 1;
      throw new FleetUnavailableError(`${what}: the circuit is open after ${this.#failures} failures`);
    }
    let answer;
    try {
      answer = await call();
    } catch (error) {
      this.counters.errors += 1;
      this.#failures += 1;
      if (this.#failures >= this.failuresToOpen) {
        if (this.#openUntil === null) {
          this.#warn(`Redis failed ${this.#failures} times in a row; deciding from local histories for ${this.cooldownMs} ms`);
        }
        this.#openUntil = this.clock() + this.cooldownMs;
      }
      throw new FleetUnavailableError(`${what}: ${error?.message ?? error}`, { cause: error });
    }
    if (this.#openUntil !== null) {
      this.#warn('Redis answers again; merging up what it missed');
      this.#recovered = true;
    }
    this.#failures = 0;
    this.#openUntil = null;
    return answer;
  }

  #remember(peer, copy) {
    this.#cache.delete(peer);
    this.#cache.set(peer, { copy, readAt: this.clock() });
    if (this.#cache.size > 16384) this.#cache.delete(this.#cache.keys().next().value);
  }

  /**
   * The peer's shared copy as `{version, blob}` (Buffers), or null; from the cache while fresh.
   * The blob is outside input: merge it only through the engine.
   */
  async shared(peer) {
    const cached = this.#cache.get(peer);
    if (cached !== undefined && this.clock() - cached.readAt < this.cacheTtlMs) return cached.copy;
    this.counters.reads += 1;
    const [version, blob] = await this.#call(`reading ${peer}`,
      () => this.redis.hmgetBuffer(keyOf(peer), protocol.version_field, protocol.blob_field));
    const copy = version === null ? null : { version, blob: blob ?? Buffer.alloc(0) };
    this.#remember(peer, copy);
    return copy;
  }

  /**
   * Merges `local` (the peer's history on this node) into the shared copy; whether it wrote.
   * Throws `HistoryUnreadableError` when `local` cannot be read, `FleetUnavailableError` when
   * Redis gives no answer or the key stays too busy.
   */
  async publish(peer, local) {
    let current = await this.shared(peer);
    for (let round = 0; round < protocol.compare_and_set_rounds; round += 1) {
      const merged = blobToShare(local, current?.blob ?? null);
      if (current !== null && Buffer.from(merged).equals(current.blob)) {
        this.counters.unchanged += 1;
        return false;
      }
      const expected = current?.version ?? '';
      const [applied, version, stored] = await this.#call(`writing ${peer}`,
        () => this.redis[`${COMMAND}Buffer`](keyOf(peer), expected, Buffer.from(merged),
          String(this.keyTtlSecs * 1000)));
      const copy = version.length === 0 ? null : { version, blob: stored };
      this.#remember(peer, copy);
      if (applied === 1) {
        this.counters.writes += 1;
        return true;
      }
      this.counters.conflicts += 1;
      current = copy;
    }
    throw new FleetUnavailableError(`writing ${peer}: lost ${protocol.compare_and_set_rounds} compare-and-set rounds`);
  }

  /** The history to decide with for `peer` (null: nothing known anywhere). */
  async get(peer) {
    const local = (await this.local.get(peer)) ?? null;
    let shared = null;
    try {
      shared = await this.shared(peer);
    } catch (error) {
      if (!(error instanceof FleetUnavailableError)) throw error;
      this.#warn(`${error.message}; deciding from the local history`);
    }
    if (shared === null) return local;
    try {
      return adoptShared(local, shared.blob);
    } catch (error) {
      if (!(error instanceof HistoryUnreadableError)) throw error;
      // An unreadable local blob goes to the engine as it is, which reports it.
      this.#warn(`the shared copy of ${peer} or its local history is unreadable (${error.message}); `
        + 'deciding from the local history, which replaces the copy at the next write');
      return local;
    }
  }

  /** Stores `history` for `peer` locally, then merges it up (or keeps it for later). */
  async set(peer, history) {
    const before = (await this.local.get(peer)) ?? null;
    await this.local.set(peer, history);
    const unchanged = before !== null && Buffer.from(before).equals(Buffer.from(history));
    if (unchanged && !this.unpublished.has(peer)) return;
    await this.#publishOrKeep(peer, history);
    if (this.#recovered) {
      this.#recovered = false;
      await this.mergeUp();
    }
  }

  async #publishOrKeep(peer, history) {
    try {
      await this.publish(peer, history);
    } catch (error) {
      if (error instanceof HistoryUnreadableError) {
        this.unpublished.delete(peer); // never shareable: not a blob the engine wrote
        return true;
      }
      if (!(error instanceof FleetUnavailableError)) throw error;
      this.unpublished.add(peer);
      this.#warn(`${error.message}; kept to merge up later`);
      return false;
    }
    this.unpublished.delete(peer);
    return true;
  }

  /** Merges up every change Redis missed; how many are still waiting. */
  async mergeUp() {
    for (const peer of [...this.unpublished].sort()) {
      const history = (await this.local.get(peer)) ?? null;
      if (history === null) this.unpublished.delete(peer);
      else if (!(await this.#publishOrKeep(peer, history))) break;
    }
    return this.unpublished.size;
  }

  /** Drops the cached copy of `peer` (the next read asks Redis). */
  forgetCached(peer) {
    this.#cache.delete(peer);
  }

  /** Closes the Redis connection. */
  async close() {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

class MapStore {
  #map = new Map();

  get(peer) {
    return this.#map.get(peer) ?? null;
  }

  set(peer, history) {
    this.#map.set(peer, history);
  }
}
