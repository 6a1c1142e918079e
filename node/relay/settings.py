"""Every number of the relay, server and client roles (`[relay]` settings a user can change)."""

from __future__ import annotations

from dataclasses import dataclass

SERVE = ("auto", "always", "never")


@dataclass(frozen=True, slots=True)
class RelaySettings:
    enabled: bool = True  # off switch: the node speaks no RELAY at all (0x08 is an unknown type)
    serve: str = "auto"  # auto: relay for others once the node knows it is public (`set_public`)
    forward_private: bool = False  # permit peers in RFC 1918 / 100.64/10 (LAN relays, tests)
    # server caps
    max_allocations: int = 64  # in all: bounds the relay's memory
    max_per_identity: int = 2  # per owner node ID (a call needs one)
    max_per_host: int = 4  # per owner IP
    default_lifetime: int = 600  # s, when ALLOCATE asks 0 (TURN's default)
    max_lifetime: int = 3600  # s; longer requests are cut to this
    min_lifetime: int = 30  # s; shorter (non-zero) requests are raised to this
    allocation_rate: float = 40_000.0  # bytes/s forwarded per allocation, both ways (320 kbit/s)
    allocation_burst: float = 20_000.0
    total_rate: float = 1_000_000.0  # bytes/s forwarded in all
    total_burst: float = 200_000.0
    cookie_rotation: float = 120.0  # s; cookies are good for one to two of these
    verify_rate: float = 20.0  # CHALLENGEs and signature checks a second, in all
    verify_burst: float = 40.0
    source_rate: float = 2.0  # ... and per source host
    source_burst: float = 5.0
    max_sources: int = 1024  # source hosts metered at once
    knock_rate: float = 200.0  # KNOCK_COOKIEs a second, in all: a bucket of their own (an HMAC
    knock_burst: float = 400.0  # and a 16-byte answer to a 16-byte KNOCK: no amplification)
    echo_rate: float = 1.0  # knock cookie echoes (right or wrong) a second per allocation and
    echo_burst: float = 4.0  # source address (an honest knocker echoes twice per knock round)
    echo_cap_rate: float = 50.0  # ... and per allocation from all sources (bounds the HMACs)
    echo_cap_burst: float = 50.0
    echo_sources: int = 256  # sources metered per allocation at once; a new one is refused when
    #   full (a full bucket is forgotten, so echo_cap_burst + echo_cap_rate * echo_burst /
    #   echo_rate = 250 suffice: spoofed sources never fill it)
    consent: float = 30.0  # s: no DATA to a peer nothing came from for this long (RFC 7675)
    proof_lifetime: float = 300.0  # s an echoed knock cookie lets the owner PERMIT its address
    # client
    lifetime: int = 600  # s asked for; refreshed at half of what was granted, or ...
    keepalive: float = 20.0  # ... every this many s: a NAT forgets an idle mapping after 30 s
    request_timeout: float = 0.5  # s before the first retransmission, doubling
    request_tries: int = 5  # 0.5 + 1 + 2 + 4 + 8 s: 15.5 s before giving up
    max_client_allocations: int = 8  # relays we hold allocations with at once
    max_paths: int = 32  # other owners' allocations we talk to as their permitted peer
    call_relays: int = 2  # allocations a NATed node holds for its calls (0: none; 2: a spare)

    def __post_init__(self) -> None:
        if self.serve not in SERVE:
            raise ValueError(f"relay serve must be one of {', '.join(SERVE)}")
        if min(self.max_allocations, self.max_per_identity, self.max_per_host, self.max_sources,
               self.request_tries, self.max_client_allocations, self.max_paths,
               self.echo_sources) < 1 \
                or not 0 <= self.call_relays <= self.max_client_allocations:
            raise ValueError("relay counts must be at least 1")
        if not 0 < self.min_lifetime <= self.default_lifetime <= self.max_lifetime <= 0xFFFF:
            raise ValueError("relay lifetimes must satisfy 0 < min <= default <= max <= 65535")
        if not 0 < self.lifetime <= 0xFFFF or self.request_timeout <= 0 or self.keepalive <= 0 \
                or self.cookie_rotation <= 0 or self.consent <= 0 or self.proof_lifetime <= 0:
            raise ValueError("relay lifetime and timeouts must be positive")
        if min(self.allocation_rate, self.total_rate, self.verify_rate, self.source_rate,
               self.knock_rate, self.echo_rate, self.echo_cap_rate) <= 0 \
                or min(self.allocation_burst, self.total_burst, self.verify_burst,
                       self.source_burst, self.knock_burst, self.echo_burst,
                       self.echo_cap_burst) < 1:
            raise ValueError("relay rates must be positive and bursts at least 1")


DEFAULT_SETTINGS = RelaySettings()
