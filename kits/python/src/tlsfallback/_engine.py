"""The engine: the ``tlsfallback:policy`` component run by wasmtime's component model."""

from __future__ import annotations

import base64
import binascii
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Optional

import wasmtime
from wasmtime import component as wc

from ._contract import component_path as _component_path
from ._contract import contract
from ._fast import FastDecide, UnexpectedShape
from ._types import (
    ActionKind, AttemptReport, CipherPolicy, Decision, DeliveryContext,
    EnhancedStatus, HistoryError, HistoryErrorKind, OutcomeKind, Policy, Reason, Tier,
    TlsParameters, TlsRptResult, TlsVersion, Verification, _uint, check_names_against_contract,
)

__all__ = ["Engine", "EngineError", "EngineTrap", "HistoryUnreadable", "INTERFACE"]


def __getattr__(name: str) -> Any:
    # INTERFACE, the exported interface the component must provide, is contract.json's (the WIT's).
    if name == "INTERFACE":
        return contract()["interface"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

_REQUEST_KEYS = ("peer", "now", "history", "last", "context", "policy")
_REPORT_ORDER = {r.value: i for i, r in enumerate(TlsRptResult)}


class EngineError(RuntimeError):
    """The component could not be loaded or does not match the contract."""


class EngineTrap(EngineError):
    """The component trapped (or otherwise failed) during a call. The instance has been
    replaced by a fresh one (with no deciders), so the engine can be used again."""


class HistoryUnreadable(ValueError):
    """A history blob given to the fleet merge cannot be read; ``error`` says why."""

    def __init__(self, error: HistoryError) -> None:
        super().__init__(str(error))
        self.error = error


def _blob(value: Any, name: str) -> bytes:
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if not isinstance(value, bytes):
        raise TypeError(f"{name}: expected bytes, got {type(value).__name__}")
    return value


def _record(**fields: Any) -> wc.Record:
    """A component record; Python names map to WIT kebab-case field names."""
    rec = wc.Record()
    for name, value in fields.items():
        setattr(rec, name.replace("_", "-"), value)
    return rec


def _lower_policy(policy: Policy) -> wc.Record:
    return _record(
        profile=policy.profile.value,
        allow_legacy_tls=policy.allow_legacy_tls,
        allow_cleartext=policy.allow_cleartext,
        step_down_delay_secs=policy.step_down_delay_secs,
        reprobe_interval_secs=policy.reprobe_interval_secs,
        pin_duration_secs=policy.pin_duration_secs,
        transient_failure_threshold=policy.transient_failure_threshold,
        retry_after_secs=policy.retry_after_secs,
    )


def _lower_context(context: DeliveryContext) -> wc.Record:
    return _record(
        dane=context.dane.value,
        mta_sts=context.mta_sts.value,
        requiretls=context.requiretls,
        tls_required_no=context.tls_required_no,
        sasl=context.sasl,
    )


def _lower_last(last: AttemptReport) -> wc.Record:
    o = last.outcome
    if o.kind is OutcomeKind.SUCCESS:
        payload: Any = o.version.wit if o.version is not None else None
    elif o.kind is OutcomeKind.STARTTLS_REJECTED:
        payload = o.code
    elif o.kind is OutcomeKind.TLS_ALERT:
        payload = o.alert.value  # type: ignore[union-attr]
    elif o.kind is OutcomeKind.CERTIFICATE_ERROR:
        payload = o.error.value  # type: ignore[union-attr]
    else:
        payload = None
    return _record(tier=last.tier.value, outcome=wc.Variant(o.kind.value, payload))


def _lift_decision(raw: Any) -> Decision:
    action = raw.action
    kind = ActionKind(action.tag)
    extra: Dict[str, Any] = {}
    if kind is ActionKind.ATTEMPT:
        attempt = action.payload
        extra["tier"] = Tier(attempt.tier)
        extra["delay_secs"] = getattr(attempt, "delay-secs")
        tls = attempt.tls
        if tls is not None:
            extra["tls"] = TlsParameters(
                min_version=TlsVersion.from_wit(getattr(tls, "min-version")),
                max_version=TlsVersion.from_wit(getattr(tls, "max-version")),
                ciphers=CipherPolicy(tls.ciphers),
                security_level=getattr(tls, "security-level"),
                verification=Verification(tls.verification),
                fallback_scsv=getattr(tls, "fallback-scsv"),
            )
    elif kind is ActionKind.DEFER:
        extra["retry_after_secs"] = action.payload
    elif kind is ActionKind.BOUNCE:
        s = action.payload
        extra["status"] = EnhancedStatus(getattr(s, "class"), s.subject, s.detail)
    herr = getattr(raw, "history-error")
    if herr is not None:
        extra["history_error"] = HistoryError(HistoryErrorKind(herr.tag), herr.payload)
    report = tuple(TlsRptResult(name) for name in sorted(raw.report, key=_REPORT_ORDER.__getitem__))
    return Decision(action=kind, reason=Reason(raw.reason), report=report,
                    history=bytes(raw.history), **extra)


class Engine:
    """The policy engine: one component, one :class:`wasmtime.Store`, one warm instance and one
    ``decider`` per distinct :class:`Policy` (made on first use, then reused).

    ``component_path``: the component file; default ``$TLSFALLBACK_WASM``, else the package's
    ``policy_engine.wasm``. The component must import nothing and export
    ``tlsfallback:policy/engine@0.2.0``, else :class:`EngineError`.

    ``fast`` (default True): call ``decide`` through the fast path of :mod:`tlsfallback._fast`
    (the same C call, about 20× cheaper than wasmtime-py's generic conversion); False uses
    wasmtime-py's public ``Func.__call__`` only. Both give the same decisions.

    Not thread-safe: use one engine per thread.
    """

    #: How many deciders are kept; the least recently used is dropped beyond this.
    MAX_DECIDERS = 256

    def __init__(self, component_path: Optional[os.PathLike | str] = None, *,
                 fast: bool = True) -> None:
        self.component_path: Path = _component_path(component_path)
        self._want_fast = fast
        self._fast: Optional[FastDecide] = None
        self._wasm_engine = wasmtime.Engine()
        try:
            self._component = wc.Component.from_file(self._wasm_engine, str(self.component_path))
        except wasmtime.WasmtimeError as e:
            raise EngineError(f"{self.component_path}: not a valid component: {e}") from e
        ctype = self._component.type
        imports = list(ctype.imports(self._wasm_engine))
        if imports:
            raise EngineError(f"{self.component_path}: the component imports {', '.join(imports)}; "
                              "the policy engine must import nothing")
        check_names_against_contract()
        interface = contract()["interface"]
        if interface not in ctype.exports(self._wasm_engine):
            raise EngineError(f"{self.component_path}: the component does not export {interface}")
        self._linker = wc.Linker(self._wasm_engine)  # empty: nothing can be imported
        self._instantiate()

    # -- lifecycle --------------------------------------------------------------------------

    def _instantiate(self) -> None:
        if self._fast is not None:
            self._fast.close()
            self._fast = None
        self._deciders: "OrderedDict[Policy, wc.ResourceAny]" = OrderedDict()
        self._store = wasmtime.Store(self._wasm_engine)
        instance = self._linker.instantiate(self._store, self._component)
        interface = contract()["interface"]
        iface = instance.get_export_index(self._store, interface)

        def func(name: str) -> wc.Func:
            index = instance.get_export_index(self._store, name, iface)
            f = instance.get_func(self._store, index) if index is not None else None
            if f is None:
                raise EngineError(f"{self.component_path}: {interface} has no function {name}")
            return f

        self._new_decider = func("[constructor]decider")
        self._decide = func("[method]decider.decide")
        # The fleet's merge: the built-in engine exports it, a plugin component need not.
        fleet_interface = contract()["fleet"]["interface"]
        fleet = instance.get_export_index(self._store, fleet_interface)
        self._fleet: Dict[str, wc.Func] = {}
        if fleet is not None:
            for name in ("adopt-shared", "blob-to-share"):
                index = instance.get_export_index(self._store, name, fleet)
                f = instance.get_func(self._store, index) if index is not None else None
                if f is None:
                    raise EngineError(f"{self.component_path}: {fleet_interface} has no function {name}")
                self._fleet[name] = f
        self.fast_path_error: Optional[str] = None
        if self._want_fast:
            try:
                self._fast = FastDecide(self._store, self._decide)
            except UnexpectedShape as e:  # a different component layout: the generic path works
                self.fast_path_error = str(e)
        self.instances_created = getattr(self, "instances_created", 0) + 1

    def _trapped(self, what: str, error: BaseException) -> EngineTrap:
        try:
            self._instantiate()
        except Exception as e:  # pragma: no cover - a component that instantiated once does again
            return EngineTrap(f"the component failed in {what} ({error}); re-instantiating "
                              f"failed too: {e}")
        return EngineTrap(f"the component failed in {what}: {error} (the instance was replaced)")

    def close(self) -> None:
        """Drops every decider. The engine stays usable (deciders are made again on use)."""
        deciders, self._deciders = self._deciders, OrderedDict()
        if self._fast is not None:
            for policy in deciders:
                self._fast.forget_decider(policy)
        for decider in deciders.values():
            try:
                decider.drop(self._store)
            except (wasmtime.WasmtimeError, wasmtime.Trap):
                pass

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- decisions --------------------------------------------------------------------------

    def _decider(self, policy: Policy) -> wc.ResourceAny:
        deciders = self._deciders
        decider = deciders.get(policy)
        if decider is not None:
            if len(deciders) > 1:
                deciders.move_to_end(policy)
            return decider
        try:
            decider = self._new_decider(self._store, _lower_policy(policy))
        except (wasmtime.WasmtimeError, wasmtime.Trap) as e:
            raise self._trapped("decider(policy)", e) from e
        deciders[policy] = decider
        if len(deciders) > self.MAX_DECIDERS:
            evicted, old = deciders.popitem(last=False)
            if self._fast is not None:
                self._fast.forget_decider(evicted)
            old.drop(self._store)
        return decider

    def decide(self, policy: Policy, context: DeliveryContext, history: Optional[bytes],
               last: Optional[AttemptReport], now: int) -> Decision:
        """What the host does next for one peer.

        ``history``: the blob the previous decision for this peer returned (None for a peer never
        seen; ``b""`` is an empty blob, which the engine reports as unreadable). ``last``: the
        outcome of the attempt the previous decision asked for (None when a delivery starts).
        ``now``: seconds since the Unix epoch.
        """
        if not isinstance(policy, Policy):
            raise TypeError(f"policy: expected Policy, got {type(policy).__name__}")
        if not isinstance(context, DeliveryContext):
            raise TypeError(f"context: expected DeliveryContext, got {type(context).__name__}")
        if history is not None:
            if isinstance(history, (bytearray, memoryview)):
                history = bytes(history)
            elif not isinstance(history, bytes):
                raise TypeError(f"history: expected bytes or None, got {type(history).__name__}")
        if last is not None and not isinstance(last, AttemptReport):
            raise TypeError(f"last: expected AttemptReport or None, got {type(last).__name__}")
        _uint(now, "now", 64)
        decider = self._decider(policy)
        fast = self._fast
        try:
            if fast is not None:
                return fast(policy, decider, context, lambda: _lower_context(context), history,
                            last, lambda: _lower_last(last), now)
            raw = self._decide(self._store, decider, _lower_context(context), history,
                               _lower_last(last) if last is not None else None, now)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as e:
            raise self._trapped("decider.decide", e) from e
        return _lift_decision(raw)

    # -- the fleet's merge --------------------------------------------------------------------

    @property
    def shares_histories(self) -> bool:
        """Whether the component exports the fleet's history merge (the built-in engine does)."""
        return bool(self._fleet)

    def _merge_call(self, name: str, *args: Any) -> bytes:
        f = self._fleet.get(name)
        if f is None:
            raise EngineError(f"{self.component_path}: the component does not export "
                              f"{contract()['fleet']['interface']}: it cannot merge histories")
        try:
            raw = f(self._store, *args)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as e:
            raise self._trapped(f"fleet.{name}", e) from e
        if isinstance(raw, bytes):
            return raw
        raise HistoryUnreadable(HistoryError(HistoryErrorKind(raw.tag), raw.payload))

    def adopt_shared(self, local: Optional[bytes], shared: bytes) -> bytes:
        """The history to decide with: ``local`` (None for a peer this node never met) with the
        fleet's ``shared`` copy merged in, and ``local``'s own dance. Raises
        :class:`HistoryUnreadable` for the first blob that cannot be read (``local`` first):
        decide with ``local`` as it is then."""
        local = _blob(local, "local") if local is not None else None
        return self._merge_call("adopt-shared", local, _blob(shared, "shared"))

    def blob_to_share(self, local: bytes, shared: Optional[bytes]) -> bytes:
        """The shared copy to write after ``local`` changed, over the copy ``shared`` last read
        (None: there is none): both memories merged, no dance; an unreadable ``shared`` is
        replaced by the local memory. Equal to ``shared``: nothing to write. Raises
        :class:`HistoryUnreadable` when ``local`` cannot be read."""
        shared = _blob(shared, "shared") if shared is not None else None
        return self._merge_call("blob-to-share", _blob(local, "local"), shared)

    def decide_json(self, request: Dict[str, Any]) -> Dict[str, Any]:
        """One ``tlsfallback decide`` request object in, its response object out (same keys and
        values as the CLI). Raises :class:`ValueError`/:class:`TypeError` naming the key on a
        bad request (unknown key, wrong type, unknown name, bad base64)."""
        if not isinstance(request, dict):
            raise TypeError(f"request: expected an object, got {type(request).__name__}")
        for key in request:
            if key not in _REQUEST_KEYS:
                raise ValueError(f"request: unknown key {key!r} (expected {', '.join(_REQUEST_KEYS)})")
        for key in ("peer", "now"):
            if key not in request:
                raise ValueError(f"request: missing key {key!r}")
        peer = request["peer"]
        if not isinstance(peer, str):
            raise TypeError(f"peer: expected a string, got {type(peer).__name__}")
        history = request.get("history")
        if history is not None:
            if not isinstance(history, str):
                raise TypeError(f"history: expected base64 text or null, got {type(history).__name__}")
            try:
                history = base64.b64decode(history, validate=True)
            except (binascii.Error, ValueError) as e:
                raise ValueError(f"history: not valid base64: {e}") from None
        last = request.get("last")
        decision = self.decide(
            Policy.from_wire(request.get("policy")),
            DeliveryContext.from_wire(request.get("context")),
            history,
            AttemptReport.from_wire(last) if last is not None else None,
            request["now"],
        )
        return decision.to_wire(peer)


