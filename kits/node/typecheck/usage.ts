// Compiled (not run) by `npm run typecheck` / test/types.test.js: the hand-written types accept
// the documented usage and reject mistakes (each @ts-expect-error must be an error).
import { PolicyEngine, type Decision, type WireResponse, type Tier, nodeTlsOptions } from '@tlsfallback/policy';

const engine = new PolicyEngine({ pinDurationSecs: 0 });
const d: Decision = engine.decide({ history: null, last: null, now: 1767225600 });
if (d.action === 'attempt') {
  const tier: Tier = d.tier;
  const delay: number = d.delaySecs;
  const min = d.tls?.minVersion;
  void [tier, delay, min, nodeTlsOptions(d.tls)];
} else if (d.action === 'bounce') {
  const text: string = d.status.text;
  void text;
} else if (d.action === 'defer') {
  const retry: number = d.retryAfterSecs;
  void retry;
}
const next = engine.decide({
  context: { dane: 'usable', mtaSts: 'enforce', requiretls: true },
  history: d.history,
  last: { tier: 'modern-tls', outcome: { kind: 'tls-alert', alert: 'protocol-version' } },
  now: 1767225605n,
  policy: { profile: 'mandatory' },
});
void next.historyError?.message;
engine.decide({ now: 1, last: { tier: 'legacy-tls', outcome: { kind: 'success', version: 'TLSv1' } } });
engine.decide({ now: 1, last: { tier: 'legacy-tls', outcome: { kind: 'starttls-rejected', code: 454 } } });

const r: WireResponse = engine.decideJson({
  peer: 'mx.example.net', now: 1767225600, history: null,
  last: { tier: 'modern-tls', outcome: 'tls-alert', alert: 'protocol-version' },
  context: { mta_sts: 'testing' }, policy: { allow_cleartext: false },
});
void r.history_error;

// @ts-expect-error: unknown tier
engine.decide({ now: 1, last: { tier: 'tls', outcome: { kind: 'connect-failed' } } });
// @ts-expect-error: a tls-alert needs its alert
engine.decide({ now: 1, last: { tier: 'modern-tls', outcome: { kind: 'tls-alert' } } });
// @ts-expect-error: WIT version names are not the API's
engine.decide({ now: 1, last: { tier: 'modern-tls', outcome: { kind: 'success', version: 'tls13' } } });
// @ts-expect-error: now is required
engine.decide({ history: null });
// @ts-expect-error: snake_case is the wire format's
new PolicyEngine({ pin_duration_secs: 0 });
// @ts-expect-error: tier only exists on attempts
void d.tier;

// The fleet's merge and its Redis store.
import { adoptShared, blobToShare, HistoryUnreadableError } from '@tlsfallback/policy';
import { FleetHistoryStore, keyOf } from '@tlsfallback/policy/fleet';

export async function shareOnce(local: Uint8Array, shared: Uint8Array | null): Promise<string> {
  try {
    const adopted: Uint8Array = shared === null ? local : adoptShared(local, shared);
    const written: Uint8Array = blobToShare(adopted, shared);
    const store = await FleetHistoryStore.connect('redis://127.0.0.1:6379/0', { budgetMs: 50 });
    await store.set('mx.example.net', written);
    await store.close();
    return keyOf('mx.example.net');
  } catch (error) {
    if (error instanceof HistoryUnreadableError) return error.kind;
    throw error;
  }
}
