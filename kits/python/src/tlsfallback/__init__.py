"""tlsfallback: the TLS fallback policy engine for mail transfer agents, embedded in Python.

The engine is the ``tlsfallback:policy`` WebAssembly component (the version is ``INTERFACE``'s) (zero imports), run by
wasmtime. It only decides; the host (your MTA) resolves DNS, connects, does TLS, keeps each peer's
history blob and reads the clock::

    from tlsfallback import Engine, Policy, DeliveryContext, AttemptReport, Outcome, Tier, TlsAlert

    engine = Engine()                      # $TLSFALLBACK_WASM or the packaged policy_engine.wasm
    d = engine.decide(Policy(), DeliveryContext(), None, None, now)
    # ... attempt d.tier with d.tls; on failure report it:
    d = engine.decide(Policy(), DeliveryContext(), d.history,
                      AttemptReport(Tier.MODERN_TLS, Outcome.tls_alert(TlsAlert.PROTOCOL_VERSION)), now)

``engine.decide_json(request)`` speaks the JSON objects of ``tlsfallback decide``.
:mod:`tlsfallback.fleet` shares histories across nodes through Redis.
"""

from ._contract import contract, contract_path, component_path
from ._engine import Engine, EngineError, EngineTrap, HistoryUnreadable
from ._types import (
    ActionKind, AttemptReport, CertificateError, CipherPolicy, Dane, Decision, DeliveryContext,
    EnhancedStatus, HistoryError, HistoryErrorKind, MtaSts, Outcome, OutcomeKind, Policy, Profile,
    Reason, Tier, TlsAlert, TlsParameters, TlsRptResult, TlsVersion, Verification,
    check_names_against_contract,
)

__version__ = "0.2.0"


def __getattr__(name: str):
    # INTERFACE is contract.json's (generated from wit/policy.wit), read on first use.
    if name == "INTERFACE":
        return contract()["interface"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "Engine", "EngineError", "EngineTrap", "HistoryUnreadable", "INTERFACE",
    "ActionKind", "AttemptReport", "CertificateError", "CipherPolicy", "Dane", "Decision",
    "DeliveryContext", "EnhancedStatus", "HistoryError", "HistoryErrorKind", "MtaSts", "Outcome",
    "OutcomeKind", "Policy", "Profile", "Reason", "Tier", "TlsAlert", "TlsParameters",
    "TlsRptResult", "TlsVersion", "Verification",
    "contract", "contract_path", "component_path", "check_names_against_contract",
]
