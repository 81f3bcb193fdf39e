"""The shared vectors (kits/vectors/decide.jsonl, from the native Rust engine) through the
component, plus the typed API and bad input."""

import base64
import copy

import pytest
import wasmtime
import tlsfallback

from tlsfallback import (
    ActionKind, AttemptReport, CertificateError, Dane, Decision, DeliveryContext, Engine,
    EngineError, EngineTrap, HistoryErrorKind, MtaSts, Outcome, OutcomeKind, Policy, Profile,
    Reason, Tier, TlsAlert, TlsRptResult, TlsVersion, Verification, contract,
)

from conftest import VECTORS, load_vectors

NOW = 1767225600
VECTOR_LIST = load_vectors()


def test_vector_file_is_complete():
    assert len(VECTOR_LIST) == 2244
    assert len({v["name"] for v in VECTOR_LIST}) == len(VECTOR_LIST)


def test_every_vector(engine):
    """Every vector's response reproduced exactly; mismatches reported by name."""
    mismatches = []
    for vector in VECTOR_LIST:
        request = copy.deepcopy(vector["request"])
        try:
            got = engine.decide_json(request)
        except Exception as e:  # reported with the vector's name below
            got = f"{type(e).__name__}: {e}"
        if got != vector["response"]:
            mismatches.append(f"{vector['name']}: got {got!r}, want {vector['response']!r}")
    assert not mismatches, f"{len(mismatches)} of {len(VECTOR_LIST)} vectors differ:\n" + "\n".join(mismatches[:20])


def test_vectors_key_order_matches_cli(engine):
    # Not required for JSON equality, but the CLI's key order is kept (handy for diffing).
    for vector in VECTOR_LIST[:200]:
        assert list(engine.decide_json(vector["request"])) == list(vector["response"])


def test_fresh_engine_agrees_with_warm_engine():
    # A second engine (own store, own deciders) answers the same: the engine is a pure function.
    other = Engine()
    for vector in VECTOR_LIST[::97]:
        assert other.decide_json(vector["request"]) == vector["response"], vector["name"]


# ------------------------------------------------------------------------------------------------
# The typed API


def test_policy_defaults_come_from_contract():
    default = contract()["default_policy"]
    p = Policy()
    assert p.to_wire() == default
    assert p.profile is Profile(default["profile"])
    assert Policy.from_wire({"profile": "mandatory"}) == Policy(profile=Profile.MANDATORY)
    assert hash(Policy()) == hash(Policy.from_wire({}))


def test_typed_dance(engine):
    policy, ctx = Policy(step_down_delay_secs=1), DeliveryContext()
    first = engine.decide(policy, ctx, None, None, NOW)
    assert first.action is ActionKind.ATTEMPT and first.tier is Tier.MODERN_TLS
    assert first.reason is Reason.STRONGEST_TIER and first.delay_secs == 0
    assert first.tls.min_version is TlsVersion.TLS1_2 and first.tls.max_version is TlsVersion.TLS1_3
    assert first.tls.verification is Verification.NONE and not first.tls.fallback_scsv
    assert isinstance(first.history, bytes) and first.history_error is None
    assert first.explanation == contract()["explanations"]["strongest-tier"]

    second = engine.decide(policy, ctx, first.history,
                           AttemptReport(Tier.MODERN_TLS, Outcome.tls_alert(TlsAlert.PROTOCOL_VERSION)), NOW)
    assert second.action is ActionKind.ATTEMPT and second.tier is Tier.LEGACY_TLS
    assert second.reason is Reason.STEPPED_DOWN_AFTER_ALERT and second.delay_secs == 1
    assert second.tls.min_version is TlsVersion.TLS1_0 and second.tls.security_level == 0

    third = engine.decide(policy, ctx, second.history,
                          AttemptReport(Tier.LEGACY_TLS, Outcome.success(TlsVersion.TLS1_0)), NOW + 1)
    assert third.action is ActionKind.DONE and third.reason is Reason.DELIVERED

    # The next delivery starts at the remembered tier.
    fourth = engine.decide(policy, ctx, third.history, None, NOW + 60)
    assert fourth.tier is Tier.LEGACY_TLS and fourth.reason is Reason.REMEMBERED_TIER


def test_typed_matches_json(engine):
    d = engine.decide(Policy(), DeliveryContext(dane="usable"), None,
                      AttemptReport("authenticated-tls", Outcome.certificate_error("dane-mismatch")), NOW)
    j = engine.decide_json({"peer": "p", "now": NOW, "history": None, "context": {"dane": "usable"},
                            "last": {"tier": "authenticated-tls", "outcome": "certificate-error",
                                     "error": "dane-mismatch"}})
    assert d.to_wire("p") == j
    assert all(isinstance(r, TlsRptResult) for r in d.report)


def test_bounce_status_and_history_error(engine):
    d = engine.decide(Policy(), DeliveryContext(requiretls=True), b"", None, NOW)
    assert d.history_error is not None and d.history_error.kind is HistoryErrorKind.EMPTY
    assert d.history_error.message == contract()["history_errors"]["empty"]
    assert d.reason is Reason.HISTORY_UNREADABLE
    long = engine.decide(Policy(), DeliveryContext(), bytes(65), None, NOW)
    assert long.history_error.kind is HistoryErrorKind.TOO_LONG and long.history_error.value == 65
    assert "65" in long.history_error.message
    bounce = next(v for v in VECTOR_LIST if v["response"]["action"] == "bounce")
    req = bounce["request"]
    last = AttemptReport.from_wire(req["last"]) if req["last"] else None
    hist = base64.b64decode(req["history"]) if req["history"] is not None else None
    b = engine.decide(Policy.from_wire(req["policy"]), DeliveryContext.from_wire(req["context"]),
                      hist, last, req["now"])
    assert b.action is ActionKind.BOUNCE and str(b.status) == bounce["response"]["status"]


def test_deciders_cached_per_policy():
    e = Engine()
    for _ in range(3):
        e.decide(Policy(), DeliveryContext(), None, None, NOW)
        e.decide(Policy(profile="mandatory"), DeliveryContext(), None, None, NOW)
    assert len(e._deciders) == 2
    e.close()
    assert len(e._deciders) == 0
    assert e.decide(Policy(), DeliveryContext(), None, None, NOW).action is ActionKind.ATTEMPT


def test_enums_are_wire_names():
    assert Tier.LEGACY_TLS == "legacy-tls" and str(Tier.LEGACY_TLS) == "legacy-tls"
    assert TlsVersion("TLSv1.3").wit == "tls13" and TlsVersion.from_wit("tls10") is TlsVersion.TLS1_0
    assert [r.value for r in TlsRptResult][0] == "starttls-not-supported"
    assert set(contract()["explanations"]) == {r.value for r in Reason}
    assert set(contract()["history_errors"]) == {k.value for k in HistoryErrorKind}


# ------------------------------------------------------------------------------------------------
# Bad input: clear exceptions naming the field, never a silent default


@pytest.mark.parametrize("make, exc, field", [
    (lambda: Policy(profile="paranoid"), ValueError, "policy.profile"),
    (lambda: Policy(allow_cleartext=1), TypeError, "policy.allow_cleartext"),
    (lambda: Policy(step_down_delay_secs=-1), ValueError, "policy.step_down_delay_secs"),
    (lambda: Policy(retry_after_secs=1 << 32), ValueError, "policy.retry_after_secs"),
    (lambda: Policy(transient_failure_threshold=256), ValueError, "policy.transient_failure_threshold"),
    (lambda: Policy(pin_duration_secs=True), TypeError, "policy.pin_duration_secs"),
    (lambda: Policy(pin_duration_secs=1.5), TypeError, "policy.pin_duration_secs"),
    (lambda: DeliveryContext(dane="maybe"), ValueError, "context.dane"),
    (lambda: DeliveryContext(mta_sts=3), TypeError, "context.mta_sts"),
    (lambda: DeliveryContext(sasl="yes"), TypeError, "context.sasl"),
    (lambda: Outcome.tls_alert("bad-alert"), ValueError, "outcome.alert"),
    (lambda: Outcome(OutcomeKind.TLS_ALERT), ValueError, "outcome.alert"),
    (lambda: Outcome.starttls_rejected(70000), ValueError, "outcome.code"),
    (lambda: Outcome(OutcomeKind.CONNECT_FAILED, alert=TlsAlert.OTHER), ValueError, "outcome.alert"),
    (lambda: Outcome(OutcomeKind.SUCCESS, code=250), ValueError, "outcome.code"),
    (lambda: AttemptReport("quantum-tls", Outcome.connect_failed()), ValueError, "last.tier"),
    (lambda: AttemptReport(Tier.CLEARTEXT, "success"), TypeError, "last.outcome"),
])
def test_bad_typed_input(make, exc, field):
    with pytest.raises(exc, match=field.replace(".", r"\.")):
        make()


def good_request():
    return {"peer": "mx.example.net", "now": NOW, "history": None, "last": None,
            "context": {}, "policy": {}}


@pytest.mark.parametrize("change, exc, field", [
    (lambda r: r.update(color="blue"), ValueError, "color"),
    (lambda r: r.pop("now"), ValueError, "now"),
    (lambda r: r.pop("peer"), ValueError, "peer"),
    (lambda r: r.update(peer=7), TypeError, "peer"),
    (lambda r: r.update(now=-1), ValueError, "now"),
    (lambda r: r.update(now="1767225600"), TypeError, "now"),
    (lambda r: r.update(now=1 << 64), ValueError, "now"),
    (lambda r: r.update(history="not base64!"), ValueError, "history"),
    (lambda r: r.update(history=[1, 2]), TypeError, "history"),
    (lambda r: r.update(context={"dane": "usable", "daen": "none"}), ValueError, "daen"),
    (lambda r: r.update(context={"requiretls": "true"}), TypeError, "context.requiretls"),
    (lambda r: r.update(context=[]), TypeError, "context"),
    (lambda r: r.update(policy={"profile": "nope"}), ValueError, "policy.profile"),
    (lambda r: r.update(policy={"pin_duration": 1}), ValueError, "pin_duration"),
    (lambda r: r.update(last={"tier": "modern-tls"}), ValueError, "outcome"),
    (lambda r: r.update(last={"tier": "modern-tls", "outcome": "exploded"}), ValueError, "last.outcome"),
    (lambda r: r.update(last={"tier": "modern-tls", "outcome": "tls-alert"}), ValueError, "last.alert"),
    (lambda r: r.update(last={"tier": "modern-tls", "outcome": "starttls-rejected"}), ValueError, "last.code"),
    (lambda r: r.update(last={"tier": "modern-tls", "outcome": "connect-failed", "alert": "other"}),
     ValueError, "last.alert"),
    (lambda r: r.update(last={"tier": "modern-tls", "outcome": "connect-failed", "cipher": "X"}),
     ValueError, "last.cipher"),
    (lambda r: r.update(last={"tier": "modern-tls", "outcome": "success", "version": "SSLv3"}),
     ValueError, "last.version"),
    (lambda r: r.update(last={"tier": "modern-tls", "outcome": "success", "extra": 1}), ValueError, "extra"),
    (lambda r: r.update(last="success"), TypeError, "last"),
])
def test_bad_json_request(engine, change, exc, field):
    request = good_request()
    change(request)
    with pytest.raises(exc, match=field.replace(".", r"\.")):
        engine.decide_json(request)


def test_missing_optional_keys_mean_null(engine):
    full = engine.decide_json(good_request())
    assert engine.decide_json({"peer": "mx.example.net", "now": NOW}) == full


def test_empty_history_is_not_null(engine):
    r = good_request()
    r["history"] = ""
    out = engine.decide_json(r)
    assert out["reason"] == "history-unreadable" and out["history_error"] == contract()["history_errors"]["empty"]
    assert "history_error" not in engine.decide_json(good_request())


def test_bad_decide_arguments(engine):
    with pytest.raises(TypeError, match="policy"):
        engine.decide({"profile": "mandatory"}, DeliveryContext(), None, None, NOW)
    with pytest.raises(TypeError, match="context"):
        engine.decide(Policy(), None, None, None, NOW)
    with pytest.raises(TypeError, match="history"):
        engine.decide(Policy(), DeliveryContext(), "AQID", None, NOW)
    with pytest.raises(TypeError, match="last"):
        engine.decide(Policy(), DeliveryContext(), None, {"tier": "modern-tls"}, NOW)
    with pytest.raises(TypeError, match="now"):
        engine.decide(Policy(), DeliveryContext(), None, None, float(NOW))


def test_missing_component_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="component"):
        Engine(tmp_path / "nope.wasm")
    bogus = tmp_path / "bogus.wasm"
    bogus.write_bytes(b"\0asm\x01\0\0\0")  # a core module, not a component
    with pytest.raises(EngineError):
        Engine(bogus)


@pytest.mark.parametrize("fast", [True, False])
def test_trap_replaces_the_instance(fast):
    e = Engine(fast=fast)
    e.decide(Policy(), DeliveryContext(), None, None, NOW)
    created = e.instances_created

    class Boom:
        def __call__(self, *args):
            raise wasmtime.WasmtimeError("wasm trap: unreachable")

        def close(self):
            pass

    if fast:
        e._fast = Boom()
    else:
        e._decide = Boom()
    with pytest.raises(EngineTrap, match="decider.decide"):
        e.decide(Policy(), DeliveryContext(), None, None, NOW)
    assert e.instances_created == created + 1 and not isinstance(e._fast, Boom)
    assert not isinstance(e._decide, Boom) and len(e._deciders) == 0
    assert e.decide(Policy(), DeliveryContext(), None, None, NOW).action is ActionKind.ATTEMPT


def test_real_trap_from_a_dropped_decider():
    # A decider handle dropped behind the engine's back: wasmtime refuses the call; the engine
    # reports it as EngineTrap and works again with a fresh instance.
    e = Engine()
    e.decide(Policy(), DeliveryContext(), None, None, NOW)
    e._deciders[Policy()].drop(e._store)
    with pytest.raises(EngineTrap):
        e.decide(Policy(), DeliveryContext(), None, None, NOW)
    assert e.decide(Policy(), DeliveryContext(), None, None, NOW).reason is Reason.STRONGEST_TIER


def test_fast_path_is_used_and_agrees_with_generic_path():
    fast, generic = Engine(), Engine(fast=False)
    assert fast._fast is not None and fast.fast_path_error is None
    assert generic._fast is None
    mismatches = [v["name"] for v in VECTOR_LIST
                  if fast.decide_json(v["request"]) != generic.decide_json(v["request"])]
    assert mismatches == []


def test_many_policies_evict_deciders():
    e = Engine()
    e.MAX_DECIDERS = 4
    for delay in range(10):
        e.decide(Policy(step_down_delay_secs=delay), DeliveryContext(), None, None, NOW)
    assert len(e._deciders) == 4 and len(e._fast._deciders.vals) == 4
    d = e.decide(Policy(step_down_delay_secs=0), DeliveryContext(), None, None, NOW)
    assert d.action is ActionKind.ATTEMPT


def test_the_kit_enums_are_the_wit_cases_of_contract_json():
    from tlsfallback import check_names_against_contract
    check_names_against_contract()
    assert tlsfallback.INTERFACE == contract()["interface"]
