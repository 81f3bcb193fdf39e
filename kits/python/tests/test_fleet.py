"""tlsfallback.fleet against a real redis-server: the component's merge reproduces the native
engine's (kits/vectors/merge.jsonl), and two nodes share what each learned."""

import base64
import json
import os
import signal
import subprocess

import pytest
import redis

from tlsfallback import ActionKind, Engine, HistoryUnreadable, OutcomeKind, Reason, Tier, contract
from tlsfallback.fleet import Fleet, FleetHistory, key_of

from redis_server import RedisServer
from smtp_peer import SmtpPeer, legacy_server_context, modern_server_context, self_signed_certificate
from test_send_mail import MESSAGE, send_mail

MERGE_VECTORS = __import__("conftest").KIT.parent / "vectors" / "merge.jsonl"
PEER = "mx.example.net"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return self_signed_certificate(tmp_path_factory.mktemp("cert"))


@pytest.fixture()
def server(tmp_path):
    with RedisServer(tmp_path) as running:
        yield running


def node(engine, server, **kw):
    """One node: its own local histories, its own fleet connection and cache."""
    return FleetHistory(Fleet.from_url(engine, server.url, **kw))


def deliver(engine, smtp_peer, history):
    return send_mail.send_message(engine, "127.0.0.1", smtp_peer.port, "a@example.org",
                                  ["b@example.net"], MESSAGE, history=history, peer=PEER,
                                  sleep=lambda s: None, timeout=10)


def _answer(call):
    try:
        return {"history": base64.b64encode(call()).decode()}
    except HistoryUnreadable as e:
        return {"error": str(e.error)}


def test_the_component_merges_as_the_native_engine_does(engine):
    lines = [json.loads(line) for line in MERGE_VECTORS.read_text().splitlines()]
    assert len(lines) == 144
    blob = lambda text: None if text is None else base64.b64decode(text)  # noqa: E731
    mismatches = []
    for v in lines:
        local, shared = blob(v["local"]), blob(v["shared"])
        got = {}
        if shared is not None:
            got["adopt"] = _answer(lambda: engine.adopt_shared(local, shared))
        if local is not None:
            got["share"] = _answer(lambda: engine.blob_to_share(local, shared))
        want = {k: v[k] for k in ("adopt", "share") if k in v}
        if got != want:
            mismatches.append(f"{v['name']}: got {got}, want {want}")
    assert not mismatches, "\n".join(mismatches[:10])


def test_a_legacy_only_peer_learned_on_one_node_starts_at_legacy_on_another(server, certificate):
    node_a, node_b = node(Engine(), server), node(Engine(), server)
    with SmtpPeer(legacy_server_context(*certificate)) as peer:
        first = deliver(node_a.fleet.engine, peer, node_a)
        assert first.delivered
        assert [a.tier for a in first.attempts] == [Tier.MODERN_TLS, Tier.LEGACY_TLS]
        assert node_a.fleet.counters["writes"] >= 1

        on_b = deliver(node_b.fleet.engine, peer, node_b)
        assert on_b.delivered
        assert [a.tier for a in on_b.attempts] == [Tier.LEGACY_TLS], "node B paid no failed handshake"
        assert on_b.decisions[0].reason is Reason.REMEMBERED_TIER
        assert PEER not in node_b.local or node_b.local[PEER] == on_b.decision.history


def test_a_pin_learned_on_one_node_stops_a_stripping_attacker_on_another(server, certificate):
    engine = Engine()
    node_a, node_b = node(engine, server), node(engine, server)
    with SmtpPeer(modern_server_context(*certificate)) as peer:
        assert deliver(engine, peer, node_a).delivered
    with SmtpPeer(None) as stripper:  # the same MX, its STARTTLS stripped on the path
        lone = deliver(engine, stripper, {})
        assert lone.delivered and [m.tls_version for m in stripper.messages] == [None], \
            "the control: a node that knows nothing hands the message over in cleartext"

        refused = deliver(engine, stripper, node_b)
        assert not refused.delivered
        assert refused.decision.action is ActionKind.DEFER
        assert refused.decision.reason in (Reason.STARTTLS_MISSING_AFTER_TLS,
                                           Reason.DOWNGRADE_REFUSED_PINNED)
        assert [a.tier for a in refused.attempts] == [Tier.MODERN_TLS]
        assert len(stripper.messages) == 1, "nothing more reached the attacker"


def test_a_stopped_redis_leaves_decisions_to_the_local_history_and_misses_nothing(server, certificate):
    engine = Engine()
    now = [0.0]  # the breaker's clock, a field the test moves
    node_a = node(engine, server, budget=0.05, cooldown=2.0, failures_to_open=2,
                  clock=lambda: now[0])
    with SmtpPeer(legacy_server_context(*certificate)) as peer:
        server.signal(signal.SIGSTOP)
        try:
            first = deliver(engine, peer, node_a)
        finally:
            server.signal(signal.SIGCONT)
        assert first.delivered, "decisions kept coming from the local history"
        assert node_a.unpublished == {PEER}
        assert node_a.warnings and node_a.fleet.counters["errors"] >= 1
        assert redis.Redis.from_url(server.url).exists(key_of(PEER)) == 0

        assert node_a.fleet.circuit_open
        assert node_a.merge_up() == 1, "the open circuit lets no call through"
        # Past the cooldown, Redis answering again: what it missed is merged up.
        now[0] += 2.0
        assert node_a.merge_up() == 0
        assert not node_a.fleet.circuit_open
        node_b = node(engine, server)
        on_b = deliver(engine, peer, node_b)
        assert [a.tier for a in on_b.attempts] == [Tier.LEGACY_TLS]


def test_a_forged_shared_copy_is_replaced_not_trusted(server, certificate):
    engine = Engine()
    client = redis.Redis.from_url(server.url)
    fields = contract()["fleet"]
    client.hset(key_of(PEER), mapping={fields["version_field"]: b"7",
                                       fields["blob_field"]: b"\x01\xff\xff\xff"})
    history = node(engine, server)
    with SmtpPeer(modern_server_context(*certificate)) as peer:
        delivery = deliver(engine, peer, history)
    assert delivery.delivered
    assert delivery.decisions[0].reason is Reason.STRONGEST_TIER
    assert any("unreadable" in w for w in history.warnings)
    stored = client.hget(key_of(PEER), fields["blob_field"])
    assert engine.blob_to_share(history.local[PEER], stored) == stored, \
        "the forged copy was replaced by the node's memory"


def test_a_plugin_without_the_fleet_interface_is_refused_with_a_clear_error(engine, tmp_path):
    with pytest.raises(ValueError, match="cannot merge histories"):
        Fleet(_WithoutFleet(engine), redis.Redis(port=1))
    with pytest.raises(HistoryUnreadable, match="empty"):
        engine.blob_to_share(b"", None)
    with pytest.raises(TypeError, match="local: expected bytes"):
        engine.adopt_shared("text", b"\x01")


class _WithoutFleet:
    def __init__(self, engine):
        self.component_path = engine.component_path

    shares_histories = False


@pytest.mark.skipif(not os.environ.get("TLSFALLBACK_BIN"),
                    reason="TLSFALLBACK_BIN (the tlsfallback binary) is not set; scripts/test sets it")
def test_a_python_node_and_a_tlsfallback_node_share_one_fleet(server, certificate, tmp_path):
    """One protocol: what a Python node learned, `tlsfallback deliver --fleet` acts on."""
    engine = Engine()
    python_node = node(engine, server)
    policy = tmp_path / "policy.toml"
    policy.write_text("[policy]\nstep_down_delay_secs = 0\n")
    with SmtpPeer(legacy_server_context(*certificate)) as peer:
        learned = send_mail.send_message(engine, "127.0.0.1", peer.port, "a@example.org",
                                         ["b@example.net"], MESSAGE, history=python_node,
                                         sleep=lambda s: None, timeout=10)
        assert [a.tier for a in learned.attempts] == [Tier.MODERN_TLS, Tier.LEGACY_TLS]
        mx = f"127.0.0.1:{peer.port}"
        rust_node = subprocess.run(
            [os.environ["TLSFALLBACK_BIN"], "deliver", "--from", "a@example.org", "--to",
             "b@example.net", "--mx", mx, "--policy", str(policy), "--db",
             str(tmp_path / "rust-node.sqlite3"), "--fleet", server.url],
            input=MESSAGE, capture_output=True, timeout=60)
        log = rust_node.stderr.decode()
        assert rust_node.returncode == 0, log
        assert "tier=legacy-tls outcome=success" in log, log
        assert "tier=modern-tls" not in log, f"the tlsfallback node paid no failed handshake: {log}"
        assert len(peer.messages) == 2
