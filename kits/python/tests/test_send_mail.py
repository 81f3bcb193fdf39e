"""examples/send_mail.py against local SMTP peers on 127.0.0.1 (real sockets, real handshakes)."""

import importlib.util
import socket
import sys
from pathlib import Path

import pytest

from tlsfallback import (
    ActionKind, DeliveryContext, OutcomeKind, Policy, Profile, Reason, Tier, TlsAlert, TlsVersion,
)

from smtp_peer import SmtpPeer, legacy_server_context, modern_server_context, self_signed_certificate

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "send_mail.py"
MESSAGE = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nhello over the dance\r\n"


def load_example():
    spec = importlib.util.spec_from_file_location("send_mail", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["send_mail"] = module
    spec.loader.exec_module(module)
    return module


send_mail = load_example()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return self_signed_certificate(tmp_path_factory.mktemp("cert"))


def deliver(engine, peer, history, sleeps, **kw):
    return send_mail.send_message(engine, "127.0.0.1", peer.port, "a@example.org",
                                  ["b@example.net"], MESSAGE, history=history,
                                  sleep=sleeps.append, timeout=10, **kw)


def test_tls10_only_peer_gets_the_message_after_the_step_down(engine, certificate):
    history, sleeps = {}, []
    with SmtpPeer(legacy_server_context(*certificate)) as peer:
        delivery = deliver(engine, peer, history, sleeps)
        assert delivery.delivered, delivery
        assert [a.tier for a in delivery.attempts] == [Tier.MODERN_TLS, Tier.LEGACY_TLS]
        first = delivery.attempts[0].outcome
        assert first.kind is OutcomeKind.TLS_ALERT and first.alert is TlsAlert.PROTOCOL_VERSION
        assert delivery.decisions[1].reason is Reason.STEPPED_DOWN_AFTER_ALERT
        assert sleeps == [Policy().step_down_delay_secs]
        assert delivery.attempts[1].outcome.version is TlsVersion.TLS1_0
        assert [m.tls_version for m in peer.messages] == ["TLSv1"]
        assert b"hello over the dance" in peer.messages[0].data

        # The next delivery starts at the remembered tier: no modern probe, no delay.
        again = deliver(engine, peer, history, sleeps)
        assert again.delivered and [a.tier for a in again.attempts] == [Tier.LEGACY_TLS]
        assert again.decisions[0].reason is Reason.REMEMBERED_TIER
        assert len(peer.messages) == 2


def test_modern_peer_gets_the_message_over_tls13(engine, certificate):
    history, sleeps = {}, []
    with SmtpPeer(modern_server_context(*certificate)) as peer:
        delivery = deliver(engine, peer, history, sleeps)
        assert delivery.delivered
        assert [a.tier for a in delivery.attempts] == [Tier.MODERN_TLS]
        assert delivery.attempts[0].outcome.version is TlsVersion.TLS1_3
        assert [m.tls_version for m in peer.messages] == ["TLSv1.3"]
        assert sleeps == []


def test_peer_without_starttls_gets_cleartext(engine):
    history, sleeps = {}, []
    with SmtpPeer(None) as peer:
        delivery = deliver(engine, peer, history, sleeps)
        assert delivery.delivered
        assert [a.outcome.kind for a in delivery.attempts] == [OutcomeKind.STARTTLS_NOT_OFFERED,
                                                               OutcomeKind.SUCCESS]
        assert delivery.attempts[-1].tier is Tier.CLEARTEXT
        assert [m.tls_version for m in peer.messages] == [None]


def test_mandatory_profile_never_sends_in_cleartext(engine):
    with SmtpPeer(None) as peer:
        delivery = deliver(engine, peer, {}, [], policy=Policy(profile=Profile.MANDATORY))
        assert delivery.decision.action in (ActionKind.DEFER, ActionKind.BOUNCE)
        assert peer.messages == []


def test_connection_refused_defers(engine):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    delivery = send_mail.send_message(engine, "127.0.0.1", port, "a@example.org", ["b@example.net"],
                                      MESSAGE, history={}, sleep=lambda s: None, timeout=5)
    assert [a.outcome.kind for a in delivery.attempts] == [OutcomeKind.CONNECT_FAILED]
    assert delivery.decision.action is ActionKind.DEFER
    assert delivery.decision.reason is Reason.CONNECT_FAILED


def test_webpki_verification_failure_is_a_certificate_error(engine, certificate):
    # MTA-STS enforce asks for authenticated TLS; the self-signed certificate is not trusted.
    with SmtpPeer(modern_server_context(*certificate)) as peer:
        delivery = deliver(engine, peer, {}, [], context=DeliveryContext(mta_sts="enforce"))
        assert delivery.attempts[0].tier is Tier.AUTHENTICATED_TLS
        assert delivery.attempts[0].outcome.kind is OutcomeKind.CERTIFICATE_ERROR
        assert not delivery.delivered and peer.messages == []
        # Trusting it (cafile) delivers, verified.
        ok = deliver(engine, peer, {}, [], context=DeliveryContext(mta_sts="enforce"),
                     cafile=str(certificate[0]))
        assert ok.delivered and peer.messages[-1].tls_version == "TLSv1.3"


def test_json_history_file(tmp_path):
    h = send_mail.JsonHistory(tmp_path / "h.json")
    h["mx"] = b"\x01\x02"
    assert dict(send_mail.JsonHistory(tmp_path / "h.json")) == {"mx": b"\x01\x02"}


def test_example_command_line(certificate, tmp_path):
    import subprocess
    with SmtpPeer(legacy_server_context(*certificate)) as peer:
        run = subprocess.run(
            [sys.executable, str(EXAMPLE), "--host", "127.0.0.1", "--port", str(peer.port),
             "--from", "a@example.org", "--to", "b@example.net", "--history", str(tmp_path / "h.json"),
             "--step-down-delay-secs", "0"],
            input=MESSAGE, capture_output=True, timeout=60)
        assert run.returncode == 0, run.stderr.decode()
        out = run.stdout.decode()
        assert "stepped-down-after-alert" in out and "TLSv1" in out
        assert [m.tls_version for m in peer.messages] == ["TLSv1"]
        assert "127.0.0.1:%d" % peer.port in (tmp_path / "h.json").read_text()
