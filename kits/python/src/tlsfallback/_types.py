"""The typed view of the ``tlsfallback:policy/engine`` contract (``wit/policy.wit``).

The enum classes copy the WIT's case lists (for typing); :func:`check_names_against_contract`,
run when an :class:`Engine` loads, and ``tests/tests/names.rs`` fail when one differs.

Every enum's value is its wire name (the WIT kebab-case name, except :class:`TlsVersion`, whose
values are ``TLSv1`` … ``TLSv1.3``). Enums derive from :class:`str`, so ``Tier.LEGACY_TLS ==
"legacy-tls"``. Every dataclass is frozen and checks its fields when made: a wrong type raises
:class:`TypeError`, a wrong value :class:`ValueError`, both naming the field. Strings are accepted
wherever an enum is expected and converted (an unknown name is an error, never a default).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, Optional, Tuple, Type, TypeVar

from ._contract import contract

__all__ = [
    "Tier", "Profile", "Dane", "MtaSts", "TlsVersion", "TlsAlert", "CertificateError",
    "CipherPolicy", "Verification", "Reason", "TlsRptResult", "ActionKind", "OutcomeKind",
    "HistoryErrorKind", "Policy", "DeliveryContext", "Outcome", "AttemptReport", "TlsParameters",
    "EnhancedStatus", "HistoryError", "Decision", "check_names_against_contract",
]


class _WireEnum(str, Enum):
    """An enum whose value is its wire name."""

    def __str__(self) -> str:
        return self.value

    @property
    def wit(self) -> str:
        """The WIT case name (equal to the wire name except for :class:`TlsVersion`)."""
        return self.value


class Tier(_WireEnum):
    """A level of transport security, weakest first (``tier``)."""

    CLEARTEXT = "cleartext"
    LEGACY_TLS = "legacy-tls"
    MODERN_TLS = "modern-tls"
    AUTHENTICATED_TLS = "authenticated-tls"


class Profile(_WireEnum):
    """The operator's overall stance (``profile``)."""

    OPPORTUNISTIC = "opportunistic"
    MANDATORY = "mandatory"
    AUTHENTICATED_ONLY = "authenticated-only"
    NO_FALLBACK = "no-fallback"
    BROWSER_STYLE = "browser-style"


class Dane(_WireEnum):
    """The host's DANE TLSA lookup result for the MX host (``dane``)."""

    NONE = "none"
    USABLE = "usable"
    UNUSABLE = "unusable"
    LOOKUP_FAILED = "lookup-failed"


class MtaSts(_WireEnum):
    """The recipient domain's MTA-STS policy as it applies to this MX (``mta-sts``)."""

    NONE = "none"
    TESTING = "testing"
    ENFORCE = "enforce"
    FETCH_FAILED = "fetch-failed"


class TlsVersion(_WireEnum):
    """A TLS protocol version; the value is the wire (and OpenSSL) name."""

    TLS1_0 = "TLSv1"
    TLS1_1 = "TLSv1.1"
    TLS1_2 = "TLSv1.2"
    TLS1_3 = "TLSv1.3"

    @property
    def wit(self) -> str:
        return _TLS_VERSION_TO_WIT[self]

    @classmethod
    def from_wit(cls, name: str) -> "TlsVersion":
        """The version for a WIT case name (``tls10`` … ``tls13``)."""
        return _TLS_VERSION_FROM_WIT[name]


class _TlsVersionNames(dict):
    """WIT case name by version, read from ``contract.json``'s ``tls_version_names`` on first use."""

    def __missing__(self, version: "TlsVersion") -> str:
        if not self:
            names = contract().get("tls_version_names")
            if not isinstance(names, dict):
                raise LookupError("contract.json has no tls_version_names")
            for wit, wire in names.items():
                self[TlsVersion(wire)] = wit
            if version in self:
                return self[version]
        raise LookupError(f"contract.json has no WIT name for TLS version {version.value!r}")


_TLS_VERSION_TO_WIT = _TlsVersionNames()


class _TlsVersionsByWit(dict):
    """Version by WIT case name (the inverse of :data:`_TLS_VERSION_TO_WIT`)."""

    def __missing__(self, name: str) -> "TlsVersion":
        if not self:
            for version in TlsVersion:
                self[_TLS_VERSION_TO_WIT[version]] = version
            if name in self:
                return self[name]
        raise KeyError(name)


_TLS_VERSION_FROM_WIT = _TlsVersionsByWit()


def check_names_against_contract() -> None:
    """Raises :class:`ValueError`, naming the class and the case, when an enum of this module
    lists other cases than ``contract.json`` (generated from ``wit/policy.wit``)."""
    wit = contract().get("wit")
    if not isinstance(wit, dict):
        raise ValueError("contract.json has no wit section (regenerate kits/vectors/contract.json)")
    classes = {
        "enums": {"tier": Tier, "profile": Profile, "dane": Dane, "mta-sts": MtaSts,
                  "tls-alert": TlsAlert, "certificate-error": CertificateError,
                  "cipher-policy": CipherPolicy, "verification": Verification, "reason": Reason},
        "flags": {"tls-rpt-results": TlsRptResult},
        "variants": {"action": ActionKind, "outcome": OutcomeKind, "history-error": HistoryErrorKind},
    }
    for kind, by_name in classes.items():
        for name, cls in by_name.items():
            listed = wit.get(kind, {}).get(name)
            if listed is None:
                raise ValueError(f"contract.json: wit.{kind} has no {name}")
            cases = [c["name"] if kind == "variants" else c for c in listed]
            ours = [m.value for m in cls]
            if ours != cases:
                missing = [c for c in cases if c not in ours]
                extra = [c for c in ours if c not in cases]
                raise ValueError(
                    f"tlsfallback.{cls.__name__} differs from the WIT's {name} in contract.json: "
                    f"missing {missing}, not in the WIT {extra}")
    versions = sorted(contract().get("tls_version_names", {}).values())
    if sorted(v.value for v in TlsVersion) != versions:
        raise ValueError(f"tlsfallback.TlsVersion differs from contract.json's tls_version_names {versions}")


class TlsAlert(_WireEnum):
    """A TLS alert received or raised during the handshake (``tls-alert``)."""

    PROTOCOL_VERSION = "protocol-version"
    HANDSHAKE_FAILURE = "handshake-failure"
    INSUFFICIENT_SECURITY = "insufficient-security"
    INAPPROPRIATE_FALLBACK = "inappropriate-fallback"
    OTHER = "other"


class CertificateError(_WireEnum):
    """Why certificate verification failed (``certificate-error``)."""

    EXPIRED = "expired"
    UNTRUSTED = "untrusted"
    NAME_MISMATCH = "name-mismatch"
    DANE_MISMATCH = "dane-mismatch"


class CipherPolicy(_WireEnum):
    """Which cipher suites to offer (``cipher-policy``)."""

    STRONG = "strong"
    LEGACY_COMPATIBLE = "legacy-compatible"


class Verification(_WireEnum):
    """How to verify the peer's certificate (``verification``)."""

    NONE = "none"
    DANE = "dane"
    WEBPKI = "webpki"


class Reason(_WireEnum):
    """Why the engine decided what it did (``reason``); :attr:`explanation` is the one-liner."""

    STRONGEST_TIER = "strongest-tier"
    REMEMBERED_TIER = "remembered-tier"
    REPROBE_UPWARD = "reprobe-upward"
    HISTORY_UNREADABLE = "history-unreadable"
    STEPPED_DOWN_AFTER_ALERT = "stepped-down-after-alert"
    STEPPED_DOWN_NO_STARTTLS = "stepped-down-no-starttls"
    STEPPED_DOWN_REPEATED_FAILURES = "stepped-down-repeated-failures"
    STEPPED_UP_PEER_WANTS_STRONGER = "stepped-up-peer-wants-stronger"
    DELIVERED = "delivered"
    CONNECT_FAILED = "connect-failed"
    POLICY_LOOKUP_FAILED = "policy-lookup-failed"
    DANE_LOOKUP_FAILED = "dane-lookup-failed"
    TRANSIENT_FAILURE = "transient-failure"
    DOWNGRADE_REFUSED_PINNED = "downgrade-refused-pinned"
    STARTTLS_MISSING_AFTER_TLS = "starttls-missing-after-tls"
    TLS_REQUIRED_NOT_OFFERED = "tls-required-not-offered"
    NO_TIER_LEFT = "no-tier-left"
    AUTHENTICATION_FAILED = "authentication-failed"
    REQUIRETLS_UNSATISFIABLE = "requiretls-unsatisfiable"
    DOWNGRADE_ATTACK_SUSPECTED = "downgrade-attack-suspected"
    NO_FALLBACK_PROFILE = "no-fallback-profile"
    ATTEMPT_LIMIT = "attempt-limit"
    INCONSISTENT_OUTCOME = "inconsistent-outcome"

    @property
    def explanation(self) -> str:
        """The one-line explanation of ``contract.json``."""
        try:
            return contract()["explanations"][self.value]
        except KeyError:
            raise LookupError(f"contract.json has no explanation for reason {self.value!r}") from None


class TlsRptResult(_WireEnum):
    """An RFC 8460 (TLS-RPT) result type (``tls-rpt-results`` flags), in declaration order."""

    STARTTLS_NOT_SUPPORTED = "starttls-not-supported"
    CERTIFICATE_HOST_MISMATCH = "certificate-host-mismatch"
    CERTIFICATE_EXPIRED = "certificate-expired"
    CERTIFICATE_NOT_TRUSTED = "certificate-not-trusted"
    VALIDATION_FAILURE = "validation-failure"
    TLSA_INVALID = "tlsa-invalid"
    DNSSEC_INVALID = "dnssec-invalid"
    DANE_REQUIRED = "dane-required"
    STS_POLICY_FETCH_ERROR = "sts-policy-fetch-error"
    STS_POLICY_INVALID = "sts-policy-invalid"
    STS_WEBPKI_INVALID = "sts-webpki-invalid"


class ActionKind(_WireEnum):
    """What the host does next (the case of the ``action`` variant)."""

    ATTEMPT = "attempt"
    DEFER = "defer"
    BOUNCE = "bounce"
    DONE = "done"


class OutcomeKind(_WireEnum):
    """What happened on an attempt (the case of the ``outcome`` variant)."""

    SUCCESS = "success"
    CONNECT_FAILED = "connect-failed"
    STARTTLS_NOT_OFFERED = "starttls-not-offered"
    STARTTLS_REJECTED = "starttls-rejected"
    TLS_ALERT = "tls-alert"
    CERTIFICATE_ERROR = "certificate-error"
    HANDSHAKE_TIMEOUT = "handshake-timeout"
    CONNECTION_RESET = "connection-reset"
    POST_HANDSHAKE_FAILURE = "post-handshake-failure"
    POLICY_LOOKUP_FAILED = "policy-lookup-failed"


class HistoryErrorKind(_WireEnum):
    """Why a history blob could not be read (the case of the ``history-error`` variant)."""

    EMPTY = "empty"
    TOO_LONG = "too-long"
    UNSUPPORTED_VERSION = "unsupported-version"
    TRUNCATED = "truncated"
    MALFORMED = "malformed"
    TRAILING_BYTES = "trailing-bytes"


# ----------------------------------------------------------------------------------------------
# Field checks

E = TypeVar("E", bound=_WireEnum)


def _enum(cls: Type[E], value: Any, name: str) -> E:
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        try:
            return cls(value)
        except ValueError:
            expected = ", ".join(m.value for m in cls)
            raise ValueError(f"{name}: unknown {cls.__name__} {value!r} (expected {expected})") from None
    raise TypeError(f"{name}: expected {cls.__name__} or its name, got {type(value).__name__}")


def _uint(value: Any, name: str, bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected int, got {type(value).__name__}")
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{name}: {value} is out of range for u{bits} (0..{(1 << bits) - 1})")
    return value


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected bool, got {type(value).__name__}")
    return value


def _set(obj: Any, attr: str, value: Any) -> None:
    object.__setattr__(obj, attr, value)


def _default_policy(key: str) -> Any:
    try:
        return contract()["default_policy"][key]
    except KeyError:
        raise LookupError(f"contract.json default_policy has no {key!r}") from None


# ----------------------------------------------------------------------------------------------
# Records

_POLICY_U32 = ("step_down_delay_secs", "reprobe_interval_secs", "pin_duration_secs", "retry_after_secs")


@dataclass(frozen=True)
class Policy:
    """The operator's policy for a destination (``policy``); defaults from ``contract.json``.

    Hashable: the engine keeps one ``decider`` per distinct policy.
    """

    profile: Profile = field(default_factory=lambda: Profile(_default_policy("profile")))
    allow_legacy_tls: bool = field(default_factory=lambda: _default_policy("allow_legacy_tls"))
    allow_cleartext: bool = field(default_factory=lambda: _default_policy("allow_cleartext"))
    #: Seconds to wait before an attempt at a weaker tier within one delivery.
    step_down_delay_secs: int = field(default_factory=lambda: _default_policy("step_down_delay_secs"))
    #: Seconds after which a peer remembered below the strongest tier is probed upward again.
    reprobe_interval_secs: int = field(default_factory=lambda: _default_policy("reprobe_interval_secs"))
    #: Seconds a peer that did modern TLS is pinned; 0 disables pinning.
    pin_duration_secs: int = field(default_factory=lambda: _default_policy("pin_duration_secs"))
    #: Resets/timeouts in a row before an unpinned peer is stepped down (u8).
    transient_failure_threshold: int = field(
        default_factory=lambda: _default_policy("transient_failure_threshold"))
    #: Seconds after which a deferred delivery should be retried.
    retry_after_secs: int = field(default_factory=lambda: _default_policy("retry_after_secs"))

    def __post_init__(self) -> None:
        _set(self, "profile", _enum(Profile, self.profile, "policy.profile"))
        _bool(self.allow_legacy_tls, "policy.allow_legacy_tls")
        _bool(self.allow_cleartext, "policy.allow_cleartext")
        for name in _POLICY_U32:
            _uint(getattr(self, name), f"policy.{name}", 32)
        _uint(self.transient_failure_threshold, "policy.transient_failure_threshold", 8)

    @classmethod
    def from_wire(cls, overrides: Optional[Dict[str, Any]] = None) -> "Policy":
        """The default policy with the wire ``policy`` overrides (snake_case keys) applied.
        An unknown key raises :class:`ValueError`."""
        if overrides is None:
            return cls()
        if not isinstance(overrides, dict):
            raise TypeError(f"policy: expected an object, got {type(overrides).__name__}")
        known = set(cls.__dataclass_fields__)
        for key in overrides:
            if key not in known:
                raise ValueError(f"policy: unknown key {key!r} (expected {', '.join(sorted(known))})")
        return cls(**overrides)

    def to_wire(self) -> Dict[str, Any]:
        """The policy as a wire object (every key)."""
        return {name: (getattr(self, name).value if name == "profile" else getattr(self, name))
                for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class DeliveryContext:
    """What the host resolved for this delivery (``delivery-context``)."""

    dane: Dane = Dane.NONE
    mta_sts: MtaSts = MtaSts.NONE
    #: The message was received with REQUIRETLS (RFC 8689).
    requiretls: bool = False
    #: The message carries ``TLS-Required: No`` (RFC 8689).
    tls_required_no: bool = False
    #: SASL credentials will be sent: never cleartext.
    sasl: bool = False

    def __post_init__(self) -> None:
        _set(self, "dane", _enum(Dane, self.dane, "context.dane"))
        _set(self, "mta_sts", _enum(MtaSts, self.mta_sts, "context.mta_sts"))
        _bool(self.requiretls, "context.requiretls")
        _bool(self.tls_required_no, "context.tls_required_no")
        _bool(self.sasl, "context.sasl")

    @classmethod
    def from_wire(cls, obj: Optional[Dict[str, Any]] = None) -> "DeliveryContext":
        """The wire ``context`` object; missing fields are none/false, unknown keys an error."""
        if obj is None:
            return cls()
        if not isinstance(obj, dict):
            raise TypeError(f"context: expected an object, got {type(obj).__name__}")
        known = set(cls.__dataclass_fields__)
        for key in obj:
            if key not in known:
                raise ValueError(f"context: unknown key {key!r} (expected {', '.join(sorted(known))})")
        return cls(**obj)


# Which detail field each outcome carries (required unless noted).
_DETAIL = {
    OutcomeKind.SUCCESS: "version",  # optional: None when the message went in cleartext
    OutcomeKind.STARTTLS_REJECTED: "code",
    OutcomeKind.TLS_ALERT: "alert",
    OutcomeKind.CERTIFICATE_ERROR: "error",
}


@dataclass(frozen=True)
class Outcome:
    """What happened on an attempt (``outcome``). Make one with the class methods, e.g.
    ``Outcome.tls_alert(TlsAlert.PROTOCOL_VERSION)`` or ``Outcome.success(TlsVersion.TLS1_3)``.

    Only the detail belonging to ``kind`` may be set: ``version`` (success, optional), ``code``
    (starttls-rejected), ``alert`` (tls-alert), ``error`` (certificate-error).
    """

    kind: OutcomeKind
    version: Optional[TlsVersion] = None
    alert: Optional[TlsAlert] = None
    error: Optional[CertificateError] = None
    code: Optional[int] = None

    def __post_init__(self) -> None:
        kind = _enum(OutcomeKind, self.kind, "outcome.kind")
        _set(self, "kind", kind)
        detail = _DETAIL.get(kind)
        for name, cls in (("version", TlsVersion), ("alert", TlsAlert), ("error", CertificateError)):
            value = getattr(self, name)
            if value is not None:
                if name != detail:
                    raise ValueError(f"outcome.{name} applies only to outcome {_owner(name)}, not {kind.value}")
                _set(self, name, _enum(cls, value, f"outcome.{name}"))
        if self.code is not None:
            if detail != "code":
                raise ValueError(f"outcome.code applies only to outcome starttls-rejected, not {kind.value}")
            _uint(self.code, "outcome.code", 16)
        if detail in ("code", "alert", "error") and getattr(self, detail) is None:
            raise ValueError(f"outcome {kind.value} needs outcome.{detail}")

    @classmethod
    def success(cls, version: Optional[TlsVersion | str] = None) -> "Outcome":
        """The peer accepted the message; ``version`` negotiated, None in cleartext."""
        return cls(OutcomeKind.SUCCESS, version=version)  # type: ignore[arg-type]

    @classmethod
    def connect_failed(cls) -> "Outcome":
        return cls(OutcomeKind.CONNECT_FAILED)

    @classmethod
    def starttls_not_offered(cls) -> "Outcome":
        return cls(OutcomeKind.STARTTLS_NOT_OFFERED)

    @classmethod
    def starttls_rejected(cls, code: int) -> "Outcome":
        """STARTTLS answered with this non-220 reply code."""
        return cls(OutcomeKind.STARTTLS_REJECTED, code=code)

    @classmethod
    def tls_alert(cls, alert: TlsAlert | str) -> "Outcome":
        return cls(OutcomeKind.TLS_ALERT, alert=alert)  # type: ignore[arg-type]

    @classmethod
    def certificate_error(cls, error: CertificateError | str) -> "Outcome":
        return cls(OutcomeKind.CERTIFICATE_ERROR, error=error)  # type: ignore[arg-type]

    @classmethod
    def handshake_timeout(cls) -> "Outcome":
        return cls(OutcomeKind.HANDSHAKE_TIMEOUT)

    @classmethod
    def connection_reset(cls) -> "Outcome":
        return cls(OutcomeKind.CONNECTION_RESET)

    @classmethod
    def post_handshake_failure(cls) -> "Outcome":
        return cls(OutcomeKind.POST_HANDSHAKE_FAILURE)

    @classmethod
    def policy_lookup_failed(cls) -> "Outcome":
        return cls(OutcomeKind.POLICY_LOOKUP_FAILED)


def _owner(detail: str) -> str:
    return next(k.value for k, v in _DETAIL.items() if v == detail)


@dataclass(frozen=True)
class AttemptReport:
    """The host's report of the attempt the engine last asked for (``attempt-report``)."""

    tier: Tier
    outcome: Outcome

    def __post_init__(self) -> None:
        _set(self, "tier", _enum(Tier, self.tier, "last.tier"))
        if not isinstance(self.outcome, Outcome):
            raise TypeError(f"last.outcome: expected Outcome, got {type(self.outcome).__name__}")

    @classmethod
    def from_wire(cls, obj: Dict[str, Any]) -> "AttemptReport":
        """The wire ``last`` object: ``tier``, ``outcome`` and the details that apply
        (``alert``, ``error``, ``code``, ``version``; ``cipher`` is informational and ignored)."""
        if not isinstance(obj, dict):
            raise TypeError(f"last: expected an object or null, got {type(obj).__name__}")
        allowed = {"tier", "outcome", "alert", "error", "code", "version", "cipher"}
        for key in obj:
            if key not in allowed:
                raise ValueError(f"last: unknown key {key!r} (expected {', '.join(sorted(allowed))})")
        for key in ("tier", "outcome"):
            if key not in obj:
                raise ValueError(f"last: missing key {key!r}")
        kind = _enum(OutcomeKind, obj["outcome"], "last.outcome")
        cipher = obj.get("cipher")
        if cipher is not None:
            if not isinstance(cipher, str):
                raise TypeError(f"last.cipher: expected a string, got {type(cipher).__name__}")
            if kind is not OutcomeKind.SUCCESS:
                raise ValueError(f"last.cipher applies only to outcome success, not {kind.value}")
        try:
            outcome = Outcome(kind, version=obj.get("version"), alert=obj.get("alert"),
                              error=obj.get("error"), code=obj.get("code"))
        except (TypeError, ValueError) as e:
            raise type(e)(str(e).replace("outcome.", "last.")) from None
        return cls(obj["tier"], outcome)


@dataclass(frozen=True)
class TlsParameters:
    """TLS settings the host must apply (``tls-parameters``)."""

    min_version: TlsVersion
    max_version: TlsVersion
    ciphers: CipherPolicy
    #: OpenSSL security level (0 to 5).
    security_level: int
    verification: Verification
    #: Send ``TLS_FALLBACK_SCSV`` (RFC 7507).
    fallback_scsv: bool

    def to_wire(self) -> Dict[str, Any]:
        return {
            "min_version": self.min_version.value,
            "max_version": self.max_version.value,
            "ciphers": self.ciphers.value,
            "security_level": self.security_level,
            "verification": self.verification.value,
            "fallback_scsv": self.fallback_scsv,
        }


@dataclass(frozen=True)
class EnhancedStatus:
    """An RFC 3463 enhanced status code; ``str()`` gives ``class.subject.detail``."""

    class_: int
    subject: int
    detail: int

    def __str__(self) -> str:
        return f"{self.class_}.{self.subject}.{self.detail}"


@dataclass(frozen=True)
class HistoryError:
    """Why the history blob passed in could not be read (``history-error``)."""

    kind: HistoryErrorKind
    #: The number payload (byte count or version) for too-long, unsupported-version and
    #: trailing-bytes; None otherwise.
    value: Optional[int] = None

    @property
    def message(self) -> str:
        """The message of ``contract.json`` (what ``tlsfallback decide`` prints)."""
        try:
            template = contract()["history_errors"][self.kind.value]
        except KeyError:
            raise LookupError(f"contract.json has no message for history error {self.kind.value!r}") from None
        return template.replace("{0}", str(self.value)) if self.value is not None else template

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Decision:
    """The answer to one ``decide`` call.

    ``tier`` and ``delay_secs`` are set for attempt, ``tls`` for an attempt at a TLS tier,
    ``retry_after_secs`` for defer, ``status`` for bounce. ``history`` is the peer's new blob:
    store it in place of the old one.
    """

    action: ActionKind
    reason: Reason
    report: Tuple[TlsRptResult, ...]
    history: bytes
    tier: Optional[Tier] = None
    tls: Optional[TlsParameters] = None
    delay_secs: Optional[int] = None
    retry_after_secs: Optional[int] = None
    status: Optional[EnhancedStatus] = None
    history_error: Optional[HistoryError] = None

    @property
    def explanation(self) -> str:
        """One line for a human (``contract.json``)."""
        return self.reason.explanation

    def to_wire(self, peer: str) -> Dict[str, Any]:
        """The response object of ``tlsfallback decide`` for ``peer``."""
        out: Dict[str, Any] = {"peer": peer, "action": self.action.value}
        if self.tier is not None:
            out["tier"] = self.tier.value
        if self.tls is not None:
            out["tls"] = self.tls.to_wire()
        if self.delay_secs is not None:
            out["delay_secs"] = self.delay_secs
        if self.retry_after_secs is not None:
            out["retry_after_secs"] = self.retry_after_secs
        if self.status is not None:
            out["status"] = str(self.status)
        out["history"] = base64.b64encode(self.history).decode("ascii")
        out["reason"] = self.reason.value
        out["explanation"] = self.explanation
        out["report"] = [r.value for r in self.report]
        if self.history_error is not None:
            out["history_error"] = self.history_error.message
        return out
