"""Symmetric NATs in the simulator: traversal requests come from flow addresses, and only the
flow's own peer gets through a flow's port (sim/nat.py, sim/registry.py, transport/sim.py)."""

from random import Random

from kadtalk.experiments.harness.world import simulated_network
from kadtalk.node.traversal import ADDR_REQ, PUNCH, TRAVERSAL
from kadtalk.sim.latency import ConstantLatency
from kadtalk.sim.nat import OPEN, SYMMETRIC, NatTable
from kadtalk.sim.registry import MAX_NODES, flow_address, split_flow


class Recorder:
    """A node that records what it receives and sends what it is told to."""

    def __init__(self):
        self.got, self.outbox = [], []

    def receive_datagram(self, data, addr, now):
        self.got.append((data, addr))

    def datagrams_to_send(self, now):
        out, self.outbox = self.outbox, []
        return out

    def next_event(self):
        return None

    def get_timer(self):
        return None


def world(*kinds):
    nat = NatTable()
    nat.kinds.extend(kinds)
    latency = ConstantLatency(0.01)
    env, network, driver = simulated_network(latency, Random(1), None, "bytes", nat=nat,
                                             traversal=True)
    nodes = [Recorder() for _ in kinds]
    for node in nodes:
        driver.add(node)
    return env, driver, nodes, nat


def send(env, driver, nodes, src, dst, data):
    nodes[src].outbox.append((data, dst))
    driver.service(src)
    env.run(until=env.now + 0.1)


def test_a_symmetric_node_is_seen_at_another_port_by_each_peer_and_answers_get_back():
    env, driver, nodes, nat = world(SYMMETRIC, OPEN, OPEN)
    probe = bytes((TRAVERSAL, ADDR_REQ)) + bytes(14)
    send(env, driver, nodes, 0, 1, probe)
    send(env, driver, nodes, 0, 2, probe)
    (_, seen_by_1), (_, seen_by_2) = nodes[1].got[-1], nodes[2].got[-1]
    assert seen_by_1 >= MAX_NODES and split_flow(seen_by_1)[0] == 0
    assert seen_by_1 != seen_by_2  # endpoint-dependent mapping
    send(env, driver, nodes, 1, seen_by_1, bytes((TRAVERSAL, 0x02)) + bytes(14))  # the answer
    assert nodes[0].got and nodes[0].got[-1][1] == 1  # from the address node 0 asked
    # node 2 uses the port node 1 saw (as a PUNCH after a rendezvous): node 0's NAT drops it
    send(env, driver, nodes, 2, seen_by_1, bytes((TRAVERSAL, PUNCH)) + bytes(20))
    assert len(nodes[0].got) == 1 and driver.misaddressed == 1


def test_open_nodes_keep_one_address_and_a_made_up_port_is_dropped():
    env, driver, nodes, _ = world(OPEN, OPEN)
    send(env, driver, nodes, 0, 1, bytes((TRAVERSAL, ADDR_REQ)) + bytes(14))
    assert nodes[1].got[-1][1] == 0
    send(env, driver, nodes, 1, flow_address(0, 45_000), bytes((TRAVERSAL, PUNCH)) + bytes(20))
    assert not nodes[0].got and driver.misaddressed == 1
