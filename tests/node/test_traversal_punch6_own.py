"""A whole Node refuses a PUNCH6_FWD naming its own IPv6 /64 (R1, session 10, finding 5: the
check was in Traversal, but Node did not give it the node's own addresses)."""
from tests.node.test_traversal_punch6_call import node

OWN = ("2001:db8:1:2::1", 5004, 0, 0)


def test_a_node_gives_traversal_its_own_addresses():
    n = node("carol")
    n.set_nat("none", OWN, own=[OWN])
    traversal = n._upper.traversal
    assert traversal.own is not None
    assert OWN in tuple(traversal.own())
