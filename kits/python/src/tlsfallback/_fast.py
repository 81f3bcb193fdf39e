"""The fast call path for ``decider.decide``.

wasmtime-py's generic :meth:`wasmtime.component.Func.__call__` re-reads the function's type from
the C API and walks it for every value, on every call: about 0.5 ms per decision. This path does
the same C call (``wasmtime_component_func_call``) with:

- the arguments that repeat (the decider handle, the context, the last outcome) lowered once by
  wasmtime-py's own converters and then reused (the C API borrows arguments, it does not consume
  them);
- the history blob written straight into a ``list<u8>`` value;
- the decision read straight from the result value, then freed with one call.

It relies on ``wasmtime._ffi`` (the ctypes bindings of the C API that wasmtime-py itself uses),
which is why the package pins wasmtime exactly. The layouts it reads are checked against the
component's types when it is made (:class:`UnexpectedShape` otherwise, and the engine then uses
the generic path); the test suite checks both paths agree on every vector.
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from ctypes import byref, pointer, string_at
from typing import Any, Dict, Hashable, Optional

import wasmtime
from wasmtime import _ffi as ffi
from wasmtime import component as wc

from ._types import (
    ActionKind, CipherPolicy, Decision, EnhancedStatus, HistoryError, HistoryErrorKind, Reason,
    Tier, TlsParameters, TlsRptResult, TlsVersion, Verification,
)

VAL = ffi.wasmtime_component_val_t
VAL_SIZE = ctypes.sizeof(VAL)
PAYLOAD = VAL.of.offset  # where a u8's byte sits inside a value
K_U8 = ffi.WASMTIME_COMPONENT_U8.value
K_U64 = ffi.WASMTIME_COMPONENT_U64.value
K_LIST = ffi.WASMTIME_COMPONENT_LIST.value
K_OPTION = ffi.WASMTIME_COMPONENT_OPTION.value
K_RECORD = ffi.WASMTIME_COMPONENT_RECORD.value

_val_delete = ffi.wasmtime_component_val_delete
_val_new = ffi.wasmtime_component_val_new
_list_new_uninit = ffi.wasmtime_component_vallist_new_uninit
_list_new_empty = ffi.wasmtime_component_vallist_new_empty
_func_call = ffi.wasmtime_component_func_call

_DECISION_FIELDS = ["action", "reason", "report", "history", "history-error"]
_ATTEMPT_FIELDS = ["tier", "tls", "delay-secs"]
_TLS_FIELDS = ["min-version", "max-version", "ciphers", "security-level", "verification",
               "fallback-scsv"]
_STATUS_FIELDS = ["class", "subject", "detail"]
_PARAMS = ["self", "context", "history", "last", "now"]


def _names(enum: Any, wit: bool = False) -> Dict[bytes, Any]:
    return {(m.wit if wit else m.value).encode(): m for m in enum}


_ACTION = _names(ActionKind)
_TIER = _names(Tier)
_REASON = _names(Reason)
_VERSION = _names(TlsVersion, wit=True)
_CIPHERS = _names(CipherPolicy)
_VERIFICATION = _names(Verification)
_HISTORY_ERROR = _names(HistoryErrorKind)
_REPORT = {m.value.encode(): (i, m) for i, m in enumerate(TlsRptResult)}


class UnexpectedShape(Exception):
    """The component's ``decide`` does not have the layout this path reads."""


def _name(vec: Any) -> bytes:
    return string_at(vec.data, vec.size)


def _record_fields(ty: Any) -> list:
    if not isinstance(ty, wc.RecordType):
        raise UnexpectedShape(f"expected a record, got {type(ty).__name__}")
    return ty.fields


def _check_shape(fty: wc.FuncType) -> None:
    names = [name for name, _ in fty.params]
    if names != _PARAMS:
        raise UnexpectedShape(f"decide parameters {names}")
    decision = _record_fields(fty.result)
    if [n for n, _ in decision] != _DECISION_FIELDS:
        raise UnexpectedShape(f"decision fields {[n for n, _ in decision]}")
    action = dict(decision)["action"]
    cases = dict(action.cases)
    attempt = _record_fields(cases["attempt"])
    if [n for n, _ in attempt] != _ATTEMPT_FIELDS:
        raise UnexpectedShape(f"attempt fields {[n for n, _ in attempt]}")
    tls = _record_fields(dict(attempt)["tls"].payload)
    if [n for n, _ in tls] != _TLS_FIELDS:
        raise UnexpectedShape(f"tls-parameters fields {[n for n, _ in tls]}")
    status = _record_fields(cases["bounce"])
    if [n for n, _ in status] != _STATUS_FIELDS:
        raise UnexpectedShape(f"enhanced-status fields {[n for n, _ in status]}")


class _ValCache:
    """Lowered argument values by key, least recently used dropped (and freed) beyond ``size``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.vals: "OrderedDict[Hashable, VAL]" = OrderedDict()

    def get(self, key: Hashable) -> Optional[VAL]:
        return self.vals.get(key)

    def put(self, key: Hashable, val: VAL) -> None:
        self.vals[key] = val
        if len(self.vals) > self.size:
            _, old = self.vals.popitem(last=False)
            _val_delete(byref(old))

    def clear(self) -> None:
        vals, self.vals = self.vals, OrderedDict()
        for val in vals.values():
            _val_delete(byref(val))

    def __del__(self) -> None:
        try:
            self.clear()
        except Exception:  # interpreter shutdown
            pass


class FastDecide:
    """``decider.decide`` for one store and instance."""

    def __init__(self, store: wasmtime.Store, func: wc.Func) -> None:
        self._store = store
        self._func = func
        fty = func.type(store)
        _check_shape(fty)
        params = dict(fty.params)
        self._self_ty = params["self"]
        self._context_ty = params["context"]
        self._last_ty = params["last"]
        self._deciders = _ValCache(1 << 30)  # bounded by the engine's decider cache
        self._contexts = _ValCache(256)
        self._lasts = _ValCache(1024)

    def _lower(self, ty: Any, value: Any) -> VAL:
        val = VAL()
        ty.convert_to_c(self._store, value, pointer(val))
        return val

    def forget_decider(self, key: Hashable) -> None:
        val = self._deciders.vals.pop(key, None)
        if val is not None:
            _val_delete(byref(val))

    def close(self) -> None:
        self._deciders.clear()
        self._contexts.clear()
        self._lasts.clear()

    def __call__(self, decider_key: Hashable, decider: wc.ResourceAny, context_key: Hashable,
                 context: Any, history: Optional[bytes], last_key: Hashable, last: Any,
                 now: int) -> Decision:
        self_val = self._deciders.get(decider_key)
        if self_val is None:
            self_val = self._lower(self._self_ty, decider)
            self._deciders.put(decider_key, self_val)
        context_val = self._contexts.get(context_key)
        if context_val is None:
            context_val = self._lower(self._context_ty, context())
            self._contexts.put(context_key, context_val)

        args = (VAL * 5)()
        args[0] = self_val
        args[1] = context_val
        slot = args[2]
        slot.kind = K_OPTION
        if history is not None:
            inner = VAL()
            inner.kind = K_LIST
            n = len(history)
            if n:
                _list_new_uninit(byref(inner.of.list), n)
                raw = bytearray(n * VAL_SIZE)
                raw[0::VAL_SIZE] = bytes((K_U8,)) * n
                raw[PAYLOAD::VAL_SIZE] = history
                ctypes.memmove(inner.of.list.data, bytes(raw), len(raw))
            else:
                _list_new_empty(byref(inner.of.list))
            slot.of.option = _val_new(byref(inner))
        if last_key is None:
            args[3].kind = K_OPTION
        else:
            last_val = self._lasts.get(last_key)
            if last_val is None:
                last_val = self._lower(self._last_ty, last())
                self._lasts.put(last_key, last_val)
            args[3] = last_val
        args[4].kind = K_U64
        args[4].of.u64 = now

        result = VAL()
        try:
            error = _func_call(byref(self._func._func), self._store._context(), args, 5,
                               byref(result), 1)
        finally:
            _val_delete(byref(slot))
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)
        try:
            if result.kind != K_RECORD:
                raise UnexpectedShape("decide did not return a record")
            return _lift(result.of.record.data)
        finally:
            _val_delete(byref(result))


def _lift(fields: Any) -> Decision:
    action_val = fields[0].val.of.variant
    action = _ACTION[_name(action_val.discriminant)]
    extra: Dict[str, Any] = {}
    if action is ActionKind.ATTEMPT:
        attempt = action_val.val.contents.of.record.data
        extra["tier"] = _TIER[_name(attempt[0].val.of.enumeration)]
        tls_ptr = attempt[1].val.of.option
        if tls_ptr:
            t = tls_ptr.contents.of.record.data
            extra["tls"] = TlsParameters(
                min_version=_VERSION[_name(t[0].val.of.enumeration)],
                max_version=_VERSION[_name(t[1].val.of.enumeration)],
                ciphers=_CIPHERS[_name(t[2].val.of.enumeration)],
                security_level=t[3].val.of.u8,
                verification=_VERIFICATION[_name(t[4].val.of.enumeration)],
                fallback_scsv=t[5].val.of.boolean,
            )
        extra["delay_secs"] = attempt[2].val.of.u32
    elif action is ActionKind.DEFER:
        extra["retry_after_secs"] = action_val.val.contents.of.u32
    elif action is ActionKind.BOUNCE:
        s = action_val.val.contents.of.record.data
        extra["status"] = EnhancedStatus(s[0].val.of.u8, s[1].val.of.u16, s[2].val.of.u16)

    reason = _REASON[_name(fields[1].val.of.enumeration)]

    flags = fields[2].val.of.flags
    if flags.size:
        report = tuple(m for _, m in sorted(_REPORT[_name(flags.data[i])] for i in range(flags.size)))
    else:
        report = ()

    blob = fields[3].val.of.list
    history = string_at(blob.data, blob.size * VAL_SIZE)[PAYLOAD::VAL_SIZE] if blob.size else b""

    error_ptr = fields[4].val.of.option
    if error_ptr:
        variant = error_ptr.contents.of.variant
        kind = _HISTORY_ERROR[_name(variant.discriminant)]
        value = None
        if variant.val:
            payload = variant.val.contents
            value = payload.of.u8 if payload.kind == K_U8 else payload.of.u32
        extra["history_error"] = HistoryError(kind, value)
    return Decision(action=action, reason=reason, report=report, history=history, **extra)
