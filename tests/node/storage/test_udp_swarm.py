"""An offline message through a 20-node swarm on real UDP sockets (issue 14 item 7), after the
sender has gone offline too: the recipient publishes its prekey at its join and stops; the
sender mails it (sealed to that prekey, stored at the nodes closest to the recipient's mailbox
key) and stops; the recipient starts again on another port with its kept prekey, fetches its
mailbox at the join, opens the box, and its acknowledgement deletes every copy."""

from __future__ import annotations

import asyncio

from kadtalk.node.identity import Identity
from kadtalk.node.storage import (MailStored, MessageReceived, PrekeyMade, ValuesDeleted,
                                  ValueStored, prekey_key)
from kadtalk.transport.udp import start_node, start_swarm

from ...transport.test_udp import free_port_range

SWARM = 20


class Peer:
    """A node of ours beside the swarm, its events kept."""

    def __init__(self):
        self.events: list = []
        self.driver = None

    async def start(self, identity, bootstrap, kept=()):
        self.driver = await start_node(identity, host="127.0.0.1", on_event=self.events.append)
        node, now = self.driver.node, self.driver.loop.time()
        node.storage.keep_mailbox(list(kept), now)
        node.keep_joined([bootstrap], now)
        self.driver.service()

    def of(self, kind, where=lambda e: True):
        return [e for e in self.events if type(e) is kind and where(e)]

    async def wait(self, kind, where=lambda e: True, timeout=30.0):
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not self.of(kind, where):
            assert loop.time() < end, f"no {kind.__name__}"
            await asyncio.sleep(0.02)
        return self.of(kind, where)[0]


def holding(swarm, vid) -> int:
    return sum(vid in d.node.storage.store.values for d in swarm)


def test_a_message_stored_in_a_udp_swarm_reaches_its_recipient_after_both_were_offline():
    async def scenario():
        swarm = await start_swarm(SWARM, free_port_range(SWARM))
        me, them = Identity.generate(), Identity.generate()
        recipient, sender = Peer(), Peer()
        try:
            bootstrap = swarm[0].address
            await recipient.start(me, bootstrap)
            made = await recipient.wait(PrekeyMade)
            await recipient.wait(ValueStored, lambda e: e.key == prekey_key(me.node_id))
            recipient.driver.close()  # offline

            await sender.start(them, swarm[5].address)
            await sender.wait(ValueStored, lambda e: e.key == prekey_key(them.node_id))
            text = b"kadtalk swarm: while you were out"
            now = sender.driver.loop.time()
            sender.driver.node.storage.mail(me.node_id, text, now, tag="m1")
            sender.driver.node.pump_storage(now)
            sender.driver.service()
            stored = await sender.wait(MailStored)
            assert stored.tag == "m1" and stored.stored >= 10
            assert holding(swarm, stored.vid) == stored.stored
            sender.driver.close()  # offline too

            again = Peer()
            await again.start(me, swarm[11].address, [(made.private, made.made)])
            got = await again.wait(MessageReceived)
            assert (got.vid, got.sender, got.plaintext) == (stored.vid, them.node_id, text)
            assert not again.of(PrekeyMade)  # the kept prekey, published again
            now = again.driver.loop.time()
            again.driver.node.storage.acknowledge(got.epoch, [got.vid], now)
            again.driver.node.pump_storage(now)
            again.driver.service()
            deleted = await again.wait(ValuesDeleted)
            assert deleted.confirmed >= 10
            assert holding(swarm, stored.vid) == 0
            for d in swarm:  # no storer saw a forged or malformed datagram
                drops = d.node.storage.drop_counts()
                assert not drops["bad_signature"] and not drops["malformed"], drops
            again.driver.close()
        finally:
            for d in swarm:
                d.close()
            for p in (recipient, sender):
                if p.driver is not None:
                    p.driver.close()

    asyncio.run(asyncio.wait_for(scenario(), 120))
