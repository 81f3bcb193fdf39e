"""A fleet's shared peer histories in Redis (or Valkey): what one node learns, every node knows.

Each node keeps its own history store (the source of truth for its own deliveries). Redis holds
one shared copy per peer, which every node merges into its history before deciding and merges
its changes into after; the merge is the engine's own (``Engine.adopt_shared`` and
``Engine.blob_to_share``, the component's ``fleet`` interface), so a pin or proof of a stronger
tier learned by one node survives any order of exchanges, and a forged step-down on a node that
proved less is dropped. The protocol (the key of a peer, its two fields, the compare-and-set
script) is ``contract.json``'s ``fleet`` section, the very one the Rust host uses, so Python
nodes and ``tlsfallback`` nodes share one fleet::

    import redis
    from tlsfallback import Engine
    from tlsfallback.fleet import Fleet, FleetHistory

    engine = Engine()
    fleet = Fleet.from_url(engine, "redis://tlsfb:secret@10.0.0.5:6379/0")
    history = FleetHistory(fleet, local=my_persistent_mapping)
    decision = engine.decide(policy, context, history.get(peer), last, now)
    history[peer] = decision.history

Redis is soft state. Every call runs to the client's socket timeout (``from_url``'s ``budget``,
50 ms by default); an error or a timeout leaves the decision to the local history, a circuit
breaker stops calling Redis after repeated failures and lets one trial through after a cooldown,
and a change Redis missed is merged up when it answers again (kept in memory: a node restarted
during an outage shares the peer at its next change).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, List, MutableMapping, Optional, Set, Tuple

from ._contract import contract
from ._engine import Engine, HistoryUnreadable
from ._types import Policy

__all__ = ["Fleet", "FleetHistory", "FleetUnavailable", "key_of", "key_ttl_for"]

log = logging.getLogger("tlsfallback.fleet")


def _protocol() -> dict:
    fleet = contract().get("fleet")
    if not isinstance(fleet, dict):
        raise ValueError("contract.json has no 'fleet' section: it is older than this kit")
    return fleet


def key_of(peer: str) -> str:
    """The Redis key of a peer's shared copy (a Redis Cluster hash tag around the peer)."""
    p = _protocol()
    return f"{p['key_prefix']}{peer}{p['key_suffix']}"


def key_ttl_for(policies: Iterable[Policy]) -> int:
    """Seconds a shared copy lives after its last write: twice the longest pin or re-probe
    interval of ``policies``, and at least contract.json's shortest (a day). An expired copy
    means "nothing known", which starts a peer at the top tier: the safe direction."""
    longest = max((max(p.pin_duration_secs, p.reprobe_interval_secs) for p in policies), default=0)
    return max(2 * longest, int(_protocol()["shortest_key_ttl_secs"]))


class FleetUnavailable(RuntimeError):
    """Redis gave no usable answer (an error, a timeout, the circuit open, a key too busy): the
    node decides from its local history."""


@dataclass
class _Cached:
    copy: Optional[Tuple[bytes, bytes]]
    read_at: float


class Fleet:
    """The Redis calls of one node: read a peer's shared copy (through a small cache), merge a
    change into it with compare-and-set.

    ``client``: a ``redis.Redis`` (redis-py) with ``decode_responses=False`` and a socket timeout
    as short as a decision may wait; ``from_url`` makes one. ``cache_ttl``: seconds a copy read
    is trusted (contract.json's default, 5 s). ``key_ttl``: seconds a copy lives after its last
    write (default :func:`key_ttl_for` the default policy). ``failures_to_open`` errors in a row
    open the circuit for ``cooldown`` seconds. ``clock``: a monotonic clock in seconds.
    """

    #: Peers whose shared copy is cached.
    CACHE_ENTRIES = 16_384

    def __init__(self, engine: Engine, client: Any, *, cache_ttl: Optional[float] = None,
                 key_ttl: Optional[int] = None, failures_to_open: int = 5, cooldown: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not engine.shares_histories:
            raise ValueError(f"{engine.component_path}: the component does not export "
                             f"{_protocol()['interface']}: it cannot merge histories")
        protocol = _protocol()
        self.engine = engine
        self.client = client
        self.cache_ttl = protocol["default_cache_ttl_ms"] / 1000 if cache_ttl is None else cache_ttl
        self.key_ttl = key_ttl_for([Policy()]) if key_ttl is None else key_ttl
        self.failures_to_open = max(1, failures_to_open)
        self.cooldown = cooldown
        self._clock = clock
        self._rounds = int(protocol["compare_and_set_rounds"])
        self._fields = (protocol["version_field"], protocol["blob_field"])
        self._script = client.register_script(protocol["compare_and_set"])
        self._cache: "OrderedDict[str, _Cached]" = OrderedDict()
        self._failures = 0
        self._open_until: Optional[float] = None
        #: Whether the last call succeeded after the circuit had opened (merge-ups are due).
        self.recovered = False
        #: Calls made, written copies, lost compare-and-set rounds, errors, skipped calls.
        self.counters = {"reads": 0, "writes": 0, "unchanged": 0, "conflicts": 0, "errors": 0,
                         "skipped": 0}

    @classmethod
    def from_url(cls, engine: Engine, url: str, *, budget: Optional[float] = None,
                 connect_timeout: float = 0.25, ca_file: Optional[str] = None,
                 **kw: Any) -> "Fleet":
        """A fleet on ``redis://[user:password@]host:port[/db]`` (``rediss://`` for TLS, checked
        against ``ca_file`` or the system's CAs). ``budget``: seconds one call may wait
        (contract.json's default, 50 ms); ``connect_timeout``: seconds a connection may take."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        if budget is None:
            budget = _protocol()["default_budget_ms"] / 1000
        options: dict = {}
        if ca_file is not None:
            options["ssl_ca_certs"] = ca_file
        # No retry inside the client: a retry doubles the wait, and the breaker decides when to
        # call a failing server again.
        client = redis.Redis.from_url(url, socket_timeout=budget,
                                      socket_connect_timeout=max(budget, connect_timeout),
                                      retry=Retry(NoBackoff(), 0), retry_on_timeout=False,
                                      decode_responses=False, **options)
        return cls(engine, client, **kw)

    # -- the breaker ---------------------------------------------------------------------------

    @property
    def circuit_open(self) -> bool:
        """Whether calls are being skipped (until the cooldown lets one trial through)."""
        return self._open_until is not None and self._clock() < self._open_until

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        import redis

        if self.circuit_open:
            self.counters["skipped"] += 1
            raise FleetUnavailable(f"{what}: the circuit is open after {self._failures} failures")
        try:
            answer = call()
        except (redis.RedisError, OSError) as e:
            self.counters["errors"] += 1
            self._failures += 1
            if self._failures >= self.failures_to_open:
                if self._open_until is None:
                    log.warning("fleet: Redis failed %d times in a row; deciding from local "
                                "histories for %.1f s", self._failures, self.cooldown)
                self._open_until = self._clock() + self.cooldown
            raise FleetUnavailable(f"{what}: {type(e).__name__}: {e}") from e
        if self._open_until is not None:
            log.warning("fleet: Redis answers again; merging up what it missed")
            self.recovered = True
        self._failures = 0
        self._open_until = None
        return answer

    # -- reads and writes ----------------------------------------------------------------------

    def _remember(self, peer: str, copy: Optional[Tuple[bytes, bytes]]) -> None:
        self._cache[peer] = _Cached(copy, self._clock())
        self._cache.move_to_end(peer)
        while len(self._cache) > self.CACHE_ENTRIES:
            self._cache.popitem(last=False)

    def shared(self, peer: str) -> Optional[Tuple[bytes, bytes]]:
        """The peer's shared copy as ``(version, blob)``, or None when there is none; from the
        cache while fresh. The blob is outside input: merge it only through the engine."""
        cached = self._cache.get(peer)
        if cached is not None and self._clock() - cached.read_at < self.cache_ttl:
            return cached.copy
        self.counters["reads"] += 1
        version, blob = self._call(f"reading {peer}",
                                   lambda: self.client.hmget(key_of(peer), *self._fields))
        copy = None if version is None else (bytes(version), bytes(blob or b""))
        self._remember(peer, copy)
        return copy

    def publish(self, peer: str, local: bytes) -> bool:
        """Merges ``local`` (the peer's history on this node) into the shared copy; whether it
        wrote (False: the copy already knew everything ``local`` knows). Raises
        :class:`HistoryUnreadable` when ``local`` cannot be read, :class:`FleetUnavailable`
        when Redis gives no answer or the key stays too busy."""
        current = self.shared(peer)
        for _ in range(self._rounds):
            merged = self.engine.blob_to_share(local, current[1] if current else None)
            if current is not None and current[1] == merged:
                self.counters["unchanged"] += 1
                return False
            expected = current[0] if current else b""
            applied, version, stored = self._call(
                f"writing {peer}",
                lambda: self._script(keys=[key_of(peer)],
                                     args=[expected, merged, int(self.key_ttl * 1000)]))
            copy = (bytes(version), bytes(stored)) if version else None
            self._remember(peer, copy)
            if applied == 1:
                self.counters["writes"] += 1
                return True
            self.counters["conflicts"] += 1
            current = copy
        raise FleetUnavailable(f"writing {peer}: lost {self._rounds} compare-and-set rounds")

    def forget_cached(self, peer: str) -> None:
        """Drops the cached copy of ``peer`` (the next read asks Redis)."""
        self._cache.pop(peer, None)

    def forget(self, peer: str) -> bool:
        """Deletes the peer's shared copy (the operator forgetting it fleet-wide); whether there
        was one. Other nodes keep their own histories and share them again at their next
        change for the peer, unless they forget it too."""
        self.forget_cached(peer)
        return bool(self._call(f"forgetting {peer}", lambda: self.client.delete(key_of(peer))))


class FleetHistory(MutableMapping[str, bytes]):
    """A node's history mapping with the fleet merged in: reading a peer gives its local history
    with the fleet's shared copy merged in (the local one alone when Redis does not answer or the
    copy cannot be read); storing one stores it locally, then merges it up. A drop-in for the
    ``history`` mapping hosts pass around (``examples/send_mail.py``'s ``send_message``).

    ``local``: the node's own mapping of peer to blob (persist it: it is the source of truth).
    ``warnings``: what went wrong with the fleet, newest last (also logged).
    """

    def __init__(self, fleet: Fleet, local: Optional[MutableMapping[str, bytes]] = None) -> None:
        self.fleet = fleet
        self.local: MutableMapping[str, bytes] = {} if local is None else local
        self.warnings: List[str] = []
        #: Peers whose local change Redis has not taken yet.
        self.unpublished: Set[str] = set()

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        del self.warnings[:-100]
        log.warning("fleet: %s", message)

    def __getitem__(self, peer: str) -> bytes:
        local = self.local.get(peer)
        try:
            shared = self.fleet.shared(peer)
        except FleetUnavailable as e:
            self._warn(f"{e}; deciding from the local history")
            shared = None
        if shared is None:
            if local is None:
                raise KeyError(peer)
            return local
        try:
            return self.fleet.engine.adopt_shared(local, shared[1])
        except HistoryUnreadable as e:
            # An unreadable local blob goes to the engine as it is, which reports it.
            self._warn(f"the shared copy of {peer} or its local history is unreadable ({e}); "
                       "deciding from the local history, which replaces the copy at the next write")
            if local is None:
                raise KeyError(peer) from None
            return local

    def __setitem__(self, peer: str, blob: bytes) -> None:
        unchanged = self.local.get(peer) == blob
        self.local[peer] = blob
        if unchanged and peer not in self.unpublished:
            return
        self._publish(peer, blob)
        if self.fleet.recovered:
            self.fleet.recovered = False
            self.merge_up()

    def _publish(self, peer: str, blob: bytes) -> bool:
        try:
            self.fleet.publish(peer, blob)
        except HistoryUnreadable:
            self.unpublished.discard(peer)  # never shareable: not a blob the engine wrote
            return True
        except FleetUnavailable as e:
            self.unpublished.add(peer)
            self._warn(f"{e}; kept to merge up later")
            return False
        self.unpublished.discard(peer)
        return True

    def merge_up(self) -> int:
        """Merges up every change Redis missed; how many are still waiting."""
        for peer in sorted(self.unpublished):
            blob = self.local.get(peer)
            if blob is None:
                self.unpublished.discard(peer)
            elif not self._publish(peer, blob):
                break
        return len(self.unpublished)

    def __delitem__(self, peer: str) -> None:
        del self.local[peer]
        self.unpublished.discard(peer)
        self.fleet.forget_cached(peer)

    def __iter__(self) -> Iterator[str]:
        return iter(self.local)

    def __len__(self) -> int:
        return len(self.local)
