// Reads a history blob for display: the layout policy-core writes (format version 1: a version
// byte, then the postcard encoding of `History`; see policy-core/src/history.rs).
//
// Written by hand because no JavaScript postcard reader follows serde's data model for these
// types; it is display-only (the engine never reads what this returns) and the playground's tests
// hold it to the engine: every blob in kits/vectors decodes and re-encodes byte for byte, and every
// corrupt blob there gets the same error kind the engine reported.

/** The tiers in their postcard variant order (policy-core's `Tier`, weakest first). */
export const TIER_ORDER = Object.freeze(['cleartext', 'legacy-tls', 'modern-tls', 'authenticated-tls']);

/** The largest blob the engine writes or accepts. */
export const MAX_HISTORY_LEN = 64;

/** A blob the engine would refuse; `kind` is the WIT `history-error` case name. */
export class HistoryDecodeError extends Error {
  constructor(kind, message, value) {
    super(message);
    this.name = 'HistoryDecodeError';
    this.kind = kind;
    this.value = value;
  }
}

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.at = 0;
  }

  byte() {
    if (this.at >= this.bytes.length) throw new HistoryDecodeError('truncated', 'the history blob is truncated');
    return this.bytes[this.at++];
  }

  /** A postcard varint of at most `maxBytes` bytes whose last byte is at most `maxLast`. */
  varint(maxBytes, maxLast) {
    let out = 0n;
    for (let i = 0; i < maxBytes; i++) {
      const byte = this.byte();
      out |= BigInt(byte & 0x7f) << BigInt(7 * i);
      if ((byte & 0x80) === 0) {
        if (i === maxBytes - 1 && byte > maxLast) break;
        return out;
      }
    }
    throw new HistoryDecodeError('malformed', 'the history blob holds a value no engine writes');
  }

  u64() {
    return this.varint(10, 0x01);
  }

  bool() {
    const byte = this.byte();
    if (byte > 1) throw new HistoryDecodeError('malformed', 'the history blob holds a value no engine writes');
    return byte === 1;
  }

  tier() {
    const index = this.varint(5, 0x0f);
    if (index >= BigInt(TIER_ORDER.length)) {
      throw new HistoryDecodeError('malformed', 'the history blob holds a value no engine writes');
    }
    return TIER_ORDER[Number(index)];
  }

  option(read) {
    return this.bool() ? read() : null;
  }
}

/**
 * Decodes a blob into `{memory, dance}` (times as bigint seconds since the Unix epoch, 0 for
 * never), or throws a `HistoryDecodeError` naming the same kind the engine reports.
 * @param {Uint8Array} blob
 */
export function decodeHistory(blob) {
  if (blob.length === 0) throw new HistoryDecodeError('empty', 'the history blob is empty');
  if (blob.length > MAX_HISTORY_LEN) {
    throw new HistoryDecodeError('too-long', `the history blob is ${blob.length} bytes, more than the ${MAX_HISTORY_LEN} this engine ever writes`, blob.length);
  }
  if (blob[0] !== 1) {
    throw new HistoryDecodeError('unsupported-version', `the history blob has format version ${blob[0]}, this engine reads version 1`, blob[0]);
  }
  const r = new Reader(blob);
  r.at = 1;
  const memory = {
    startTier: r.option(() => r.tier()),
    lastSuccessTier: r.option(() => r.tier()),
    lastSuccessAt: r.u64(),
    seenTls: r.bool(),
    pinnedUntil: r.u64(),
    lastProbeAt: r.u64(),
    transientFailures: r.byte(),
  };
  const dance = r.option(() => ({ tier: r.tier(), attempts: r.byte(), reachedTop: r.bool() }));
  if (r.at !== blob.length) {
    const trailing = blob.length - r.at;
    throw new HistoryDecodeError('trailing-bytes', `the history blob has ${trailing} bytes after its last field`, trailing);
  }
  return { memory, dance };
}

function pushVarint(out, value) {
  let v = BigInt(value);
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
}

/** Encodes a decoded history back into its blob (for the tests' round trip). */
export function encodeHistory({ memory, dance }) {
  const out = [1];
  const tier = (t) => pushVarint(out, TIER_ORDER.indexOf(t));
  const option = (value, write) => {
    if (value === null) out.push(0);
    else { out.push(1); write(value); }
  };
  option(memory.startTier, tier);
  option(memory.lastSuccessTier, tier);
  pushVarint(out, memory.lastSuccessAt);
  out.push(memory.seenTls ? 1 : 0);
  pushVarint(out, memory.pinnedUntil);
  pushVarint(out, memory.lastProbeAt);
  out.push(memory.transientFailures);
  option(dance, (d) => { tier(d.tier); out.push(d.attempts); out.push(d.reachedTop ? 1 : 0); });
  return Uint8Array.from(out);
}

/** Lower-case hex, bytes separated by spaces. */
export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');
}
