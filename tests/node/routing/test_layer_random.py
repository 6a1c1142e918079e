"""The routing layer against a random scripted world: answers, losses, duplicates, wrong IDs and
shared addresses in random order. Whatever happens, nothing raises and every lookup ends once."""

from random import Random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.events import Joined, LookupCompleted
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.routing.messages import RouteRequest, RouteResponse, decode, encode_response
from kadtalk.node.stack import Node

TO_WIRE = ContactRegistry.addr_to_wire
FROM_WIRE = ContactRegistry.addr_from_wire


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    peers=st.integers(1, 30),
    shared=st.integers(0, 5),
    k=st.integers(1, 6),
    alpha=st.integers(1, 4),
    lookups=st.integers(1, 6),
    p_answer=st.sampled_from([0.3, 0.7, 1.0]),
)
def test_random_world(seed, peers, shared, k, alpha, lookups, p_answer):
    rng = Random(seed)
    bits = 160
    own = rng.getrandbits(bits)
    ids = [rng.getrandbits(bits) for _ in range(peers)]
    addrs = [("10.5.%d.%d" % (i >> 8, i & 255 or 1), 5004) for i in range(peers)]
    for _ in range(shared):  # another ID claimed at an existing address
        ids.append(rng.getrandbits(bits))
        addrs.append(addrs[rng.randrange(len(addrs))])
    owner = {}  # the peer really at an address: the first one listed there
    for i, addr in enumerate(addrs):
        owner.setdefault(addr, i)
    knows = {i: rng.sample(range(len(ids)), min(len(ids), rng.randint(0, 8))) for i in range(len(ids))}

    s = RoutingSettings(k=k, alpha=alpha, request_timeout=1.0, refresh_on_join=rng.random() < 0.5,
                        refresh_interval=50.0, max_failures=rng.randint(1, 3))
    node = Node(own, ContactRegistry(), Random(seed), s, 0.0)
    now = 0.0
    started = set()
    for i in rng.sample(range(len(ids)), min(len(ids), 3)):
        node.add_contact(ids[i], addrs[i], now)
    if rng.random() < 0.5:
        started.add(("join", node.join([addrs[rng.randrange(len(addrs))]], now)))
    targets = [rng.choice(ids) if rng.random() < 0.5 else rng.getrandbits(bits) for _ in range(lookups)]
    for target in targets:
        if rng.random() < 0.5:
            started.add(("user", node.find_peer(target, now)))
        else:
            started.add(("user", node.find_closest(target, now)))

    outstanding: list[tuple[bytes, tuple]] = []
    reported: list = []

    def collect():
        outstanding.extend(node.datagrams_to_send(now))
        event = node.next_event()
        while event is not None:
            reported.append(event)
            event = node.next_event()

    def answer(data, addr):
        msg, _ = decode(data, FROM_WIRE)
        assert type(msg) is RouteRequest and msg.origin == own
        peer = owner[addr]
        responder = ids[peer] if rng.random() < 0.9 else rng.choice(ids)  # sometimes a liar
        known = sorted(knows[peer], key=lambda j: ids[j] ^ msg.target)[:20]
        if rng.random() < 0.1:
            known.append(len(ids))  # an unusable contact
        contacts = [(ids[j], addrs[j]) if j < len(ids) else (1234, ("0.0.0.0", 5004)) for j in known]
        return encode_response(RouteResponse(responder, msg.target, contacts), TO_WIRE)

    def advance(to):
        nonlocal now
        # a driver fires the timer whenever it comes due before the next delivery
        while node.get_timer() <= to:
            now = max(now, node.get_timer())
            node.handle_timer(now)
            assert node.get_timer() > now  # handle_timer did everything that was due
            collect()
        now = to

    collect()
    for _step in range(2000):
        if not outstanding and not node.routing.lookups_running:
            break
        if outstanding and rng.random() < 0.8:
            data, addr = outstanding.pop(rng.randrange(len(outstanding)))
            if rng.random() < p_answer:
                reply = answer(data, addr)
                advance(now + rng.choice([0.0, 0.01, 0.3]))
                node.receive_datagram(reply, addr, now)
                if rng.random() < 0.1:
                    node.receive_datagram(reply, addr, now)  # duplicate
        else:
            advance(node.get_timer())
        collect()
    else:
        raise AssertionError("the world never went quiet")

    # every lookup that was started ended exactly once
    user_ids = sorted(lid for kind, lid in started if kind == "user")
    done_ids = sorted(e.lookup_id for e in reported if type(e) is LookupCompleted)
    assert sorted(set(done_ids)) == done_ids
    assert set(user_ids) <= set(done_ids)
    assert sum(type(e) is Joined for e in reported) == sum(kind == "join" for kind, _ in started)
    for e in reported:
        if type(e) is LookupCompleted:
            assert e.finished >= e.started
            if e.peer is not None:
                assert e.peer[0] == e.target
            assert len(e.closest) <= k
    table = node.routing.table
    for index in range(table.bucket_count()):
        bucket = table.bucket(index)
        assert len(bucket) <= k
        assert len({table._ids[h] for h in bucket}) == len(bucket)
    assert own not in {table._ids[h] for h in table.handles()}
    counts = node.drop_counts()
    assert set(counts) <= {"unsolicited", "wrong_responder", "bad_contact", "own_id", "address_taken"}
