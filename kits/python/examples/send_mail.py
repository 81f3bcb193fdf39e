#!/usr/bin/env python3
"""Send one message with smtplib + ssl, following the tlsfallback engine's tiers.

The engine decides, this host acts: it connects, does (or skips) STARTTLS with the TLS settings
of the decision, reports what happened as an :class:`~tlsfallback.Outcome`, and asks again, until
the engine says ``done``, ``defer`` or ``bounce``. Each peer's history blob is kept in a mapping
(a dict, or :class:`JsonHistory`, a JSON file), so the next delivery starts where the last one
ended (a TLS-1.0-only peer is not probed at modern TLS again until the re-probe interval passes).
With ``--fleet redis://…`` the mapping is a :class:`~tlsfallback.fleet.FleetHistory`: what any
node of the fleet learned about the peer is merged in.

    python examples/send_mail.py --host 127.0.0.1 --port 2525 --from a@example.org \
        --to b@example.net --history peers.json < message.eml

Tiers: ``modern-tls`` and ``authenticated-tls``: TLS 1.2–1.3, strong suites; ``legacy-tls``:
TLS 1.0–1.2, ``DEFAULT:@SECLEVEL=0``; ``cleartext``: no STARTTLS. Verification ``webpki`` uses the
system roots (or ``--cafile``) and the host name; ``dane`` needs a TLSA verifier (``dane_verify``),
which this example does not provide (it resolves no DNS).

Known limit: Python's ssl module cannot send ``TLS_FALLBACK_SCSV`` (RFC 7507), so
``tls.fallback_scsv`` is not honoured here.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import smtplib
import socket
import ssl
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, List, MutableMapping, Optional, Tuple

from tlsfallback import (
    ActionKind, AttemptReport, CertificateError, CipherPolicy, Decision, DeliveryContext, Engine,
    Outcome, Policy, Tier, TlsAlert, TlsParameters, TlsVersion, Verification,
)

_SSL_VERSIONS = {
    TlsVersion.TLS1_0: ssl.TLSVersion.TLSv1,
    TlsVersion.TLS1_1: ssl.TLSVersion.TLSv1_1,
    TlsVersion.TLS1_2: ssl.TLSVersion.TLSv1_2,
    TlsVersion.TLS1_3: ssl.TLSVersion.TLSv1_3,
}

# OpenSSL reason codes (ssl.SSLError.reason) → the alert the engine understands.
_ALERTS = {
    "UNSUPPORTED_PROTOCOL": TlsAlert.PROTOCOL_VERSION,
    "TLSV1_ALERT_PROTOCOL_VERSION": TlsAlert.PROTOCOL_VERSION,
    "WRONG_SSL_VERSION": TlsAlert.PROTOCOL_VERSION,
    "NO_PROTOCOLS_AVAILABLE": TlsAlert.PROTOCOL_VERSION,
    "VERSION_TOO_LOW": TlsAlert.PROTOCOL_VERSION,
    "VERSION_TOO_HIGH": TlsAlert.PROTOCOL_VERSION,
    "SSLV3_ALERT_HANDSHAKE_FAILURE": TlsAlert.HANDSHAKE_FAILURE,
    "NO_SHARED_CIPHER": TlsAlert.HANDSHAKE_FAILURE,
    "NO_CIPHERS_AVAILABLE": TlsAlert.HANDSHAKE_FAILURE,
    "NO_SUITABLE_SIGNATURE_ALGORITHM": TlsAlert.HANDSHAKE_FAILURE,
    "TLSV1_ALERT_INSUFFICIENT_SECURITY": TlsAlert.INSUFFICIENT_SECURITY,
    "INSUFFICIENT_SECURITY": TlsAlert.INSUFFICIENT_SECURITY,
    "TLSV1_ALERT_INAPPROPRIATE_FALLBACK": TlsAlert.INAPPROPRIATE_FALLBACK,
    "INAPPROPRIATE_FALLBACK": TlsAlert.INAPPROPRIATE_FALLBACK,
}

# X509_V_ERR_* codes (ssl.SSLCertVerificationError.verify_code) → certificate errors.
_CERT_ERRORS = {
    10: CertificateError.EXPIRED,        # X509_V_ERR_CERT_HAS_EXPIRED
    62: CertificateError.NAME_MISMATCH,  # X509_V_ERR_HOSTNAME_MISMATCH
}

STRONG_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM"


def tls_context(tls: TlsParameters, *, cafile: Optional[str] = None) -> ssl.SSLContext:
    """An ssl client context applying the decision's TLS parameters."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated: the legacy tier is deliberate
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = _SSL_VERSIONS[tls.min_version]
        ctx.maximum_version = _SSL_VERSIONS[tls.max_version]
    if tls.ciphers is CipherPolicy.STRONG:
        ctx.set_ciphers(f"{STRONG_CIPHERS}:@SECLEVEL={tls.security_level}")
    else:
        ctx.set_ciphers(f"DEFAULT:@SECLEVEL={tls.security_level}")
    if tls.verification is Verification.WEBPKI:
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        if cafile:
            ctx.load_verify_locations(cafile)
        else:
            ctx.load_default_certs()
    else:  # none, or dane (checked against TLSA records after the handshake)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def classify_tls_error(error: BaseException) -> Outcome:
    """The outcome for an exception raised by the STARTTLS handshake."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return Outcome.certificate_error(_CERT_ERRORS.get(error.verify_code, CertificateError.UNTRUSTED))
    if isinstance(error, (socket.timeout, TimeoutError)):
        return Outcome.handshake_timeout()
    if isinstance(error, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError,
                          smtplib.SMTPServerDisconnected)):
        return Outcome.connection_reset()
    if isinstance(error, ssl.SSLError):
        return Outcome.tls_alert(_ALERTS.get(error.reason or "", TlsAlert.OTHER))
    if isinstance(error, OSError):
        return Outcome.connection_reset()
    raise error


@dataclass
class Attempt:
    """One attempt's record (for logs and tests)."""

    tier: Tier
    outcome: Outcome
    tls_version: Optional[str] = None
    cipher: Optional[str] = None


@dataclass
class Delivery:
    """The final decision and the attempts that led to it."""

    decision: Decision
    attempts: List[Attempt] = field(default_factory=list)
    decisions: List[Decision] = field(default_factory=list)

    @property
    def delivered(self) -> bool:
        return self.decision.action is ActionKind.DONE


def attempt(host: str, port: int, tier: Tier, tls: Optional[TlsParameters], sender: str,
            recipients: Iterable[str], message: bytes, *, timeout: float = 30.0,
            cafile: Optional[str] = None, helo: Optional[str] = None,
            dane_verify: Optional[Callable[[bytes], bool]] = None) -> Attempt:
    """Make one attempt at ``tier``. SMTP rejections of the message itself (5xx to MAIL, RCPT or
    DATA) are not transport outcomes: they are raised as smtplib exceptions."""
    try:
        smtp = smtplib.SMTP(host, port, local_hostname=helo, timeout=timeout)
    except (OSError, smtplib.SMTPException):
        return Attempt(tier, Outcome.connect_failed())
    with smtp:
        try:
            smtp.ehlo()
        except (OSError, smtplib.SMTPException):
            return Attempt(tier, Outcome.connection_reset())
        if tier is Tier.CLEARTEXT:
            try:
                smtp.sendmail(sender, list(recipients), message)
            except (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused):
                raise
            except (OSError, smtplib.SMTPException):
                return Attempt(tier, Outcome.connection_reset())
            return Attempt(tier, Outcome.success(None))

        assert tls is not None, "a TLS tier comes with TLS parameters"
        if not smtp.has_extn("starttls"):
            return Attempt(tier, Outcome.starttls_not_offered())
        try:
            code, _ = smtp.docmd("STARTTLS")
        except (OSError, smtplib.SMTPException):
            return Attempt(tier, Outcome.connection_reset())
        if code != 220:
            return Attempt(tier, Outcome.starttls_rejected(code))
        try:
            # What smtplib.SMTP.starttls does after its 220, with our context.
            smtp.sock = tls_context(tls, cafile=cafile).wrap_socket(smtp.sock, server_hostname=host)
            smtp.file = None
            smtp.helo_resp = smtp.ehlo_resp = None
            smtp.esmtp_features = {}
            smtp.does_esmtp = False
        except Exception as e:  # noqa: BLE001 - classified or re-raised
            return Attempt(tier, classify_tls_error(e))
        version, cipher = smtp.sock.version(), smtp.sock.cipher()[0]
        if tls.verification is Verification.DANE:
            if dane_verify is None:
                raise RuntimeError("the decision asks for DANE verification: pass dane_verify")
            if not dane_verify(smtp.sock.getpeercert(binary_form=True)):
                return Attempt(tier, Outcome.certificate_error(CertificateError.DANE_MISMATCH))
        try:
            smtp.ehlo()
            smtp.sendmail(sender, list(recipients), message)
        except (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused):
            raise
        except (OSError, smtplib.SMTPException):
            return Attempt(tier, Outcome.post_handshake_failure(), version, cipher)
        return Attempt(tier, Outcome.success(TlsVersion(version)), version, cipher)


def send_message(engine: Engine, host: str, port: int, sender: str, recipients: Iterable[str],
                 message: bytes, *, history: MutableMapping[str, bytes],
                 policy: Policy = None, context: DeliveryContext = None,  # type: ignore[assignment]
                 peer: Optional[str] = None, now: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, max_attempts: int = 10,
                 **attempt_options) -> Delivery:
    """Deliver ``message`` to one MX with the fallback dance. ``history`` maps the peer (default
    ``host:port``) to its blob and is updated after every decision."""
    policy = policy if policy is not None else Policy()
    context = context if context is not None else DeliveryContext()
    peer = peer or f"{host}:{port}"
    recipients = list(recipients)
    delivery: Optional[Delivery] = None
    last: Optional[AttemptReport] = None
    for _ in range(max_attempts + 1):
        decision = engine.decide(policy, context, history.get(peer), last, int(now()))
        history[peer] = decision.history
        if delivery is None:
            delivery = Delivery(decision)
        delivery.decision = decision
        delivery.decisions.append(decision)
        if decision.action is not ActionKind.ATTEMPT:
            return delivery
        if decision.delay_secs:
            sleep(decision.delay_secs)
        result = attempt(host, port, decision.tier, decision.tls, sender, recipients, message,
                         **attempt_options)
        delivery.attempts.append(result)
        last = AttemptReport(decision.tier, result.outcome)
    raise RuntimeError(f"{peer}: more than {max_attempts} attempts without a final decision")


class JsonHistory(MutableMapping[str, bytes]):
    """Peer histories in a JSON file (``{peer: base64}``), written on every change."""

    def __init__(self, path: os.PathLike | str) -> None:
        self.path = Path(path)
        self._data = {}
        if self.path.exists():
            self._data = {k: base64.b64decode(v) for k, v in json.loads(self.path.read_text()).items()}

    def _save(self) -> None:
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps({k: base64.b64encode(v).decode() for k, v in self._data.items()},
                                  indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def __getitem__(self, key: str) -> bytes:
        return self._data[key]

    def __setitem__(self, key: str, value: bytes) -> None:
        self._data[key] = bytes(value)
        self._save()

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self._save()

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=25)
    parser.add_argument("--from", dest="sender", required=True)
    parser.add_argument("--to", dest="recipients", action="append", required=True)
    parser.add_argument("--history", default="tlsfallback-history.json", help="JSON file of peer histories")
    parser.add_argument("--cafile", help="trust anchors for webpki verification (default: system)")
    parser.add_argument("--profile", default=None, help="policy profile (default: contract.json's)")
    parser.add_argument("--step-down-delay-secs", type=int, default=None,
                        help="policy step_down_delay_secs (default: contract.json's)")
    parser.add_argument("--requiretls", action="store_true")
    parser.add_argument("--fleet", metavar="URL",
                        help="share peer histories with other nodes through this Redis "
                             "(redis://[user:password@]host:port[/db], rediss:// for TLS)")
    parser.add_argument("--fleet-ca-file", help="CA file a rediss:// fleet server is checked against")
    parser.add_argument("--wasm", help="the component file (default: $TLSFALLBACK_WASM or packaged)")
    args = parser.parse_args(argv)
    engine = Engine(args.wasm)
    overrides = {}
    if args.profile is not None:
        overrides["profile"] = args.profile
    if args.step_down_delay_secs is not None:
        overrides["step_down_delay_secs"] = args.step_down_delay_secs
    policy = Policy(**overrides)
    history: MutableMapping[str, bytes] = JsonHistory(args.history)
    if args.fleet:
        from tlsfallback.fleet import Fleet, FleetHistory
        history = FleetHistory(Fleet.from_url(engine, args.fleet, ca_file=args.fleet_ca_file),
                               local=history)
    delivery = send_message(engine, args.host, args.port, args.sender, args.recipients,
                            sys.stdin.buffer.read(), history=history,
                            policy=policy, context=DeliveryContext(requiretls=args.requiretls),
                            cafile=args.cafile)
    for d, a in zip(delivery.decisions, delivery.attempts + [None]):
        line = f"{d.action.value:7} {d.tier.value if d.tier else '':17} [{d.reason.value}] {d.explanation}"
        if a is not None:
            line += f"  → {a.outcome.kind.value}" + (f" {a.tls_version} {a.cipher}" if a.tls_version else "")
        print(line)
    for warning in getattr(history, "warnings", []):
        print(f"warning: fleet: {warning}", file=sys.stderr)
    final = delivery.decision
    if final.action is ActionKind.DEFER:
        print(f"deferred: retry in {final.retry_after_secs} s")
    elif final.action is ActionKind.BOUNCE:
        print(f"bounced: {final.status}")
    return 0 if delivery.delivered else 1


if __name__ == "__main__":
    sys.exit(main())
