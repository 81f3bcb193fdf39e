// A Haraka outbound plugin that lets the tlsfallback engine choose the TLS tier per MX host and
// remembers each peer's history (in a Map by default, or any async store you plug in).
//
// The shape is Haraka's: `register()`, and outbound hooks called as `hook_X(next, hmail, ...)`
// with `next(code, msg)`. Haraka compiles plain plugin files in a vm sandbox where import() is
// unavailable, and this package is an ES module with top-level await, so Haraka loads it through
// the CommonJS adapter next to it (examples/haraka-plugin.cjs, the package's
// `@tlsfallback/policy/haraka`). Node MTAs other than Haraka can use the hooks directly (the
// tests do, with a fake hmail).
//
// The flow for one message (notes live in hmail.todo.notes, which Haraka keeps with the queued
// message):
//
//   hook_get_mx     pick the MX (static routes first, else DNS), then either carry out the attempt
//                   already decided for this delivery or ask the engine how to start; answer with
//                   the MX (OK), a temporary failure (DENYSOFT, when the engine defers) or a
//                   bounce (DENY).
//   tls_options()   the `tls.connect` options for the attempt, or null for cleartext.
//   record_tls()    the negotiated version (`socket.getProtocol()`) once TLS is up.
//   hook_deferred   the attempt failed: report the outcome (mapped from the Node error), then
//                   retry after the engine's delay at the tier it chose (DENYSOFT + seconds).
//   hook_delivered  report success; the engine answers `done` and the new history is stored.
//   hook_bounce     forget the pending attempt.
//
// In real Haraka, hook_get_mx also watches the attempt's socket (watchHarakaAttempts): Haraka
// core has no per-MX TLS hook and tells hook_deferred only "Tried all MXs", so the plugin applies
// tls_options() to the STARTTLS upgrade itself, records the first socket error and the
// negotiated version, and refuses to let Haraka send the envelope in cleartext when the engine
// chose a TLS tier (a stripped STARTTLS becomes `starttls-not-offered`, never a cleartext
// delivery).

import { createRequire } from 'node:module';
import dns from 'node:dns';
import { PolicyEngine, nodeTlsOptions } from '../src/index.js';
import { FleetHistoryStore } from '../src/fleet.js';

/** Haraka's return codes (haraka-constants), used when that package is not installed. */
const FALLBACK_CONSTANTS = { cont: 900, stop: 901, deny: 902, denysoft: 903, ok: 906 };
let constants = FALLBACK_CONSTANTS;
try {
  constants = createRequire(import.meta.url)('haraka-constants');
} catch {
  // not running inside Haraka: the numeric values above are Haraka's
}
export { constants };

/** The default history store: a Map, peer (MX host name) → history blob. Lost on restart. */
export class MapHistoryStore {
  #map = new Map();

  async get(peer) {
    return this.#map.get(peer) ?? null;
  }

  async set(peer, history) {
    this.#map.set(peer, history);
  }
}

/** Maps a Node socket/TLS error to an engine outcome (typed API shape). */
export function outcomeFromError(err, { phase } = {}) {
  const code = err?.code ?? '';
  const text = `${code} ${err?.message ?? err ?? ''}`;
  if (code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH'
    || code === 'ENOTFOUND' || (code === 'ETIMEDOUT' && phase !== 'tls')) {
    return { kind: 'connect-failed' };
  }
  if (code === 'ECONNRESET' || code === 'EPIPE') return { kind: 'connection-reset' };
  if (code === 'ETIMEDOUT') return { kind: 'handshake-timeout' };
  if (/PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL|NO_PROTOCOLS_AVAILABLE/.test(text)) {
    return { kind: 'tls-alert', alert: 'protocol-version' };
  }
  if (/INAPPROPRIATE_FALLBACK/.test(text)) return { kind: 'tls-alert', alert: 'inappropriate-fallback' };
  if (/INSUFFICIENT_SECURITY/.test(text)) return { kind: 'tls-alert', alert: 'insufficient-security' };
  if (/HANDSHAKE_FAILURE|NO_SHARED_CIPHER|NO_CIPHERS_AVAILABLE/.test(text)) {
    return { kind: 'tls-alert', alert: 'handshake-failure' };
  }
  if (code === 'CERT_HAS_EXPIRED') return { kind: 'certificate-error', error: 'expired' };
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return { kind: 'certificate-error', error: 'name-mismatch' };
  if (/^(UNABLE_TO_|SELF_SIGNED|DEPTH_ZERO|CERT_)/.test(code)) return { kind: 'certificate-error', error: 'untrusted' };
  if (/^ERR_SSL_/.test(code)) return { kind: 'tls-alert', alert: 'other' };
  // SMTP-level answers Haraka reports as text.
  const starttls = /STARTTLS.*?\b([45]\d\d)\b/i.exec(text);
  if (starttls) return { kind: 'starttls-rejected', code: Number(starttls[1]) };
  if (/STARTTLS/i.test(text) && /not (offered|supported|advertised)/i.test(text)) {
    return { kind: 'starttls-not-offered' };
  }
  return phase === 'tls' ? { kind: 'post-handshake-failure' } : { kind: 'connect-failed' };
}

/**
 * Makes the plugin object (Haraka calls `register` on it, then the hooks with `this` bound to
 * it). Options:
 *   engine   a PolicyEngine (default: the contract's default policy)
 *   store    { get(peer) → Uint8Array|null, set(peer, history) } (sync or async), default a Map;
 *            a FleetHistoryStore (src/fleet.js) shares histories across nodes through Redis
 *   routes   { domain: [{exchange, priority, address?, port?}] }: static MX routes, used instead
 *            of resolveMx for the domains listed. `exchange` names the peer (its history key);
 *            `address` is where to connect instead of resolving that name, `port` the SMTP port
 *            (default 25). Haraka's adapter reads them from config/tlsfallback.json (`mx`).
 *   policy   overrides of the default policy (PolicyEngine's argument)
 *   resolveMx(domain) → [{exchange, priority}] (default: node:dns)
 *   context(hmail, peer) → the delivery context (DANE, MTA-STS, REQUIRETLS...; default none)
 *   clock()  → seconds since the epoch (default: Date.now())
 */
export function createPlugin(options = {}) {
  const plugin = {
    name: 'tlsfallback',
    engine: options.engine ?? null,
    store: options.store ?? new MapHistoryStore(),
    routes: options.routes ?? {},
    resolveMx: options.resolveMx ?? (async (domain) => dns.promises.resolveMx(domain)),
    context: options.context ?? (() => null),
    clock: options.clock ?? (() => Math.floor(Date.now() / 1000)),
    loginfo: options.log ?? (() => {}),

    register() {
      this.engine ??= new PolicyEngine(options.policy);
    },

    /**
     * Applies an operator's settings, Haraka's config/tlsfallback.json: `policy` (the
     * PolicyEngine's overrides of the default policy, camelCase) and `mx` (the routes).
     */
    configure({ policy, mx } = {}) {
      this.engine = new PolicyEngine(policy);
      this.routes = mx ?? {};
    },

    /** The engine's step for the MX `mx`: decide, store the new history, remember the attempt. */
    async step(hmail, mx, last) {
      const peer = mx.exchange;
      const history = await this.store.get(peer);
      const decision = this.engine.decide({
        context: this.context(hmail, peer), history, last, now: this.clock(),
      });
      await this.store.set(peer, decision.history);
      const notes = hmail.todo.notes;
      notes.tlsfallback = {
        peer,
        mx,
        action: decision.action,
        tier: decision.action === 'attempt' ? decision.tier : null,
        tls: decision.action === 'attempt' ? decision.tls : null,
        delaySecs: decision.action === 'attempt' ? decision.delaySecs : null,
        retryAfterSecs: decision.action === 'defer' ? decision.retryAfterSecs : null,
        status: decision.action === 'bounce' ? decision.status.text : null,
        reason: decision.reason,
        report: decision.report,
        negotiated: null,
        failure: null,
      };
      this.loginfo(`tlsfallback ${peer}: ${decision.action}`
        + `${decision.action === 'attempt' ? ` ${decision.tier}` : ''} (${decision.reason}: ${decision.explanation})`);
      return decision;
    },

    /** The domain's MX hosts, preferred first: its static route, else resolveMx. */
    async mxFor(domain) {
      const mxs = this.routes[domain.toLowerCase()] ?? await this.resolveMx(domain);
      return mxs.slice().sort((a, b) => a.priority - b.priority);
    },

    /** hook_get_mx(next, hmail, domain): pick the MX and the tier for this attempt. */
    async hook_get_mx(next, hmail, domain) {
      try {
        let state = hmail.todo.notes.tlsfallback;
        if (state?.action !== 'attempt') {
          const [preferred] = await this.mxFor(domain);
          if (!preferred) return next(constants.denysoft, `no MX for ${domain}`);
          const mx = {
            exchange: preferred.exchange,
            priority: preferred.priority,
            address: preferred.address ?? null,
            port: preferred.port ?? 25,
          };
          if (state?.action !== 'bounce') await this.step(hmail, mx, null);
          state = hmail.todo.notes.tlsfallback;
        }
        // Otherwise: the attempt decided when the last one failed, same MX, the tier the engine chose.
        switch (state.action) {
          case 'attempt': {
            if (typeof hmail.try_deliver_host_on_socket === 'function') watchHarakaAttempts(this, hmail);
            const { exchange, priority, address, port } = state.mx;
            return next(constants.ok, [{
              exchange: address ?? exchange, priority, port,
              tlsfallback: { tier: state.tier, tls: state.tls },
            }]);
          }
          case 'defer':
            return next(constants.denysoft, `tlsfallback: ${state.reason}`);
          case 'bounce':
            return next(constants.deny, `${state.status} tlsfallback: ${state.reason}`);
          default:
            return next(constants.cont);
        }
      } catch (err) {
        this.loginfo(`tlsfallback: ${err.message}`);
        return next(constants.cont); // let Haraka resolve the MX itself
      }
    },

    /** The TLS-choice hook: `tls.connect` options for this attempt, or null for cleartext. */
    tls_options(hmail) {
      const state = hmail.todo.notes.tlsfallback;
      if (!state || state.action !== 'attempt') return undefined; // not ours: Haraka's defaults
      return nodeTlsOptions(state.tls);
    },

    /** Records the negotiated version (`tlsSocket.getProtocol()`) for the success report. */
    record_tls(hmail, protocol) {
      const state = hmail.todo.notes.tlsfallback;
      if (state) state.negotiated = protocol;
    },

    /** Records what ended this attempt (the first one wins), for hook_deferred. */
    record_failure(hmail, outcome) {
      const state = hmail.todo.notes.tlsfallback;
      if (state?.action === 'attempt') state.failure ??= outcome;
    },

    /** hook_deferred(next, hmail, {delay, err}): report the failure, retry as the engine says. */
    async hook_deferred(next, hmail, params) {
      const state = hmail.todo.notes.tlsfallback;
      if (!state || state.action !== 'attempt') return next(constants.cont);
      try {
        const outcome = params.outcome ?? state.failure
          ?? outcomeFromError(params.err, { phase: state.negotiated ? 'tls' : undefined });
        const decision = await this.step(hmail, state.mx, { tier: state.tier, outcome });
        switch (decision.action) {
          case 'attempt': return next(constants.denysoft, String(decision.delaySecs));
          case 'defer': return next(constants.denysoft, String(decision.retryAfterSecs));
          // A bounce is carried out by the next hook_get_mx (DENY), at once.
          case 'bounce': return next(constants.denysoft, '0');
          default: return next(constants.cont);
        }
      } catch (err) {
        this.loginfo(`tlsfallback: ${err.message}`);
        return next(constants.cont);
      }
    },

    /** hook_delivered(next, hmail, params): report success; the engine answers done. */
    async hook_delivered(next, hmail) {
      const state = hmail.todo.notes.tlsfallback;
      if (state?.action === 'attempt') {
        try {
          const version = state.tier === 'cleartext' ? null : state.negotiated;
          await this.step(hmail, state.mx, { tier: state.tier, outcome: { kind: 'success', version } });
        } catch (err) {
          this.loginfo(`tlsfallback: ${err.message}`);
        }
      }
      delete hmail.todo.notes.tlsfallback;
      return next();
    },

    /** hook_bounce(next, hmail, err): the message is returned; forget the pending attempt. */
    hook_bounce(next, hmail) {
      delete hmail.todo.notes.tlsfallback;
      return next();
    },
  };
  return plugin;
}

/** Commands Haraka may send before STARTTLS has made the connection encrypted. */
const BEFORE_TLS = /^(EHLO|HELO|LHLO|STARTTLS|QUIT)\b/i;
const WATCHED = Symbol('tlsfallback.watched');

/**
 * Haraka 3.x (outbound/hmail.js) hands each attempt's socket to
 * `hmail.try_deliver_host_on_socket(mx, host, port, socket)`, and that is the one place where a
 * plugin can reach it: this wraps the method on the hmail (once) so that, on every socket of an
 * attempt the engine decided,
 *   - the STARTTLS upgrade gets the tier's `tls.connect` options (over tls.ini's; a
 *     `rejectUnauthorized` that Haraka or tls.ini set stays set),
 *   - the negotiated version is recorded (record_tls) for the success report,
 *   - the first socket error is recorded as the attempt's outcome: Haraka itself only passes
 *     "Tried all MXs" to hook_deferred,
 *   - and, when the tier is a TLS tier, nothing but EHLO/HELO/LHLO/STARTTLS/QUIT is written before
 *     the connection is encrypted. Haraka sends the envelope in cleartext to a peer whose EHLO
 *     offers no STARTTLS; here that write is refused and the socket fails instead, so an
 *     on-path attacker who strips STARTTLS gets `starttls-not-offered` reported, never the mail.
 */
function watchHarakaAttempts(plugin, hmail) {
  if (hmail[WATCHED]) return;
  hmail[WATCHED] = true;
  const tryDeliver = hmail.try_deliver_host_on_socket;
  hmail.try_deliver_host_on_socket = function tryDeliverWatched(mx, host, port, socket) {
    tryDeliver.call(this, mx, host, port, socket);
    // After Haraka's own set-up: it removes every 'error' listener before adding its own, and
    // ours must run before its handler moves on to the next MX and to hook_deferred.
    socket.prependListener('error', (err) => {
      const phase = hmail.todo.notes.tlsfallback?.negotiated ? 'tls' : undefined;
      plugin.record_failure(hmail, outcomeFromError(err, { phase }));
    });

    const upgrade = socket.upgrade;
    socket.upgrade = (haraka, callback) => {
      const ours = plugin.tls_options(hmail);
      const options = ours
        ? { ...haraka, ...ours, rejectUnauthorized: Boolean(haraka.rejectUnauthorized || ours.rejectUnauthorized) }
        : haraka;
      socket.once('secure', () => plugin.record_tls(hmail, socket.cleartext.getProtocol()));
      return upgrade(options, callback);
    };

    const write = socket.write;
    socket.write = function writeUnlessCleartext(data, ...rest) {
      const state = hmail.todo.notes.tlsfallback;
      const tlsTier = state?.action === 'attempt' && state.tls !== null;
      if (!tlsTier || socket.isEncrypted() || BEFORE_TLS.test(String(data))) {
        return write.call(this, data, ...rest);
      }
      plugin.record_failure(hmail, { kind: 'starttls-not-offered' });
      // Fail the socket as a network error would: Haraka's error handler drops the connection,
      // runs out of MXs and calls hook_deferred, where the outcome above is reported.
      process.nextTick(() => socket.emit('error', new Error(
        `tlsfallback: ${state.peer} did not offer STARTTLS, refusing to send in cleartext at ${state.tier}`,
      )));
      return true;
    };
  };
}

// Haraka-style module exports: a default plugin with a Map store, or, when TLSFALLBACK_FLEET
// names a Redis (`redis://[user:password@]host:port[/db]`), the fleet's store over a Map: every
// Haraka node of the fleet then knows what any of them learned about a peer.
const fleetUrl = process.env.TLSFALLBACK_FLEET;
const defaultPlugin = createPlugin(fleetUrl ? {
  store: await FleetHistoryStore.connect(fleetUrl, {
    log: (line) => defaultPlugin.loginfo(line),
  }),
} : {});
export const register = (...args) => defaultPlugin.register(...args);
export const hook_get_mx = (...args) => defaultPlugin.hook_get_mx(...args);
export const hook_deferred = (...args) => defaultPlugin.hook_deferred(...args);
export const hook_delivered = (...args) => defaultPlugin.hook_delivered(...args);
export const hook_bounce = (...args) => defaultPlugin.hook_bounce(...args);
export const tls_options = (...args) => defaultPlugin.tls_options(...args);
export const record_tls = (...args) => defaultPlugin.record_tls(...args);
export default defaultPlugin;
