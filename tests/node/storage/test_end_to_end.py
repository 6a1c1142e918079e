"""An offline message through a 20-node swarm (the same Node code as the daemon and the
simulator, on the in-memory network): the recipient publishes a prekey and leaves; the sender
finds the prekey, seals a message, stores it and leaves too; the recipient comes back, fetches
its mailbox, opens the message, acknowledges it, and every copy is deleted."""

from __future__ import annotations

from kadtalk.node.storage import (MessageReceived, PrekeyFound, ValuesDeleted, ValuesFound,
                                  ValueStored)

from .conftest import swarm


def wait_for(net, addr, kind, limit=30.0, count=1):
    net.service(addr)
    net.run(until=lambda: len(net.of(addr, kind)) >= count, limit=net.now + limit)
    found = net.of(addr, kind)
    assert len(found) >= count, (kind.__name__, net.nodes[addr].drop_counts())
    return found[count - 1]


def holders(net, vid):
    return [a for a, n in net.nodes.items() if n.storage is not None
            and vid in n.storage.store.values]


def test_offline_message_is_stored_fetched_opened_and_deleted():
    net, addrs = swarm(20)
    recipient_addr, sender_addr = addrs[5], addrs[12]
    recipient, sender = net.nodes[recipient_addr], net.nodes[sender_addr]
    me = recipient.storage.identity.node_id

    recipient.storage.publish_prekey(net.now)
    recipient.pump_storage(net.now)
    assert wait_for(net, recipient_addr, ValueStored).stored >= 10
    net.detach(recipient_addr)  # the recipient goes offline

    sender.storage.fetch_prekey(me, net.now)
    sender.pump_storage(net.now)
    found = wait_for(net, sender_addr, PrekeyFound)
    assert found.prekey == recipient.storage.prekeys[0][1]
    vid = sender.storage.send_message(me, found.prekey, b"see you at eight", net.now)
    sender.pump_storage(net.now)
    stored = wait_for(net, sender_addr, ValueStored)
    assert stored.vid == vid and stored.stored >= 10
    copies = holders(net, vid)
    assert len(copies) == stored.stored
    for copy in copies:  # storers hold ciphertext: the plaintext appears nowhere
        assert b"see you at eight" not in net.nodes[copy].storage.store.values[vid].value.raw
    net.detach(sender_addr)  # the sender goes offline too

    net.run_until(net.now + 2 * 3600 + 60)  # storers republish to each other meanwhile
    assert len(holders(net, vid)) >= len(copies) - 1
    republished = sum(net.nodes[a].storage.stats["republished"] for a in holders(net, vid))
    assert republished > 0

    net.attach(recipient_addr, recipient)  # back online, with the table it had
    epochs = recipient.storage.fetch_mailbox(net.now)
    recipient.pump_storage(net.now)
    message = wait_for(net, recipient_addr, MessageReceived)
    wait_for(net, recipient_addr, ValuesFound, count=len(epochs))
    assert (message.vid, message.sender, message.plaintext) == (
        vid, sender.storage.identity.node_id, b"see you at eight")

    recipient.storage.acknowledge(message.epoch, [message.vid], net.now)
    deleted = wait_for(net, recipient_addr, ValuesDeleted)
    assert deleted.confirmed == deleted.asked > 0
    assert holders(net, vid) == []
    net.run_until(net.now + 2 * 3600)  # no republication brings it back
    assert holders(net, vid) == []

    recipient.storage.fetch_mailbox(net.now)  # a second fetch shows nothing new
    recipient.pump_storage(net.now)
    wait_for(net, recipient_addr, ValuesFound, count=2 * len(epochs))
    assert len(net.of(recipient_addr, MessageReceived)) == 1
    for addr, n in net.nodes.items():
        assert "bad_signature" not in n.drop_counts(), addr
