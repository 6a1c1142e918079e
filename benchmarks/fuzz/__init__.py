"""Fuzzing at scale: every parser that reads bytes from the network or a client, fed by hypothesis.

One target per parser, one module per target family; each target runs `--inputs` inputs
(default 100,000) drawn by hypothesis from a mix of random bytes, valid messages mutated
(truncated, extended, bits flipped, a byte set, body replaced) and well-formed messages with
random fields. An input "crashes" when the code under test raises anything but its own
documented drop exception, or breaks an invariant the target checks:

routing.py
  routing-decode  node/routing/messages.decode: MalformedMessage or a message that re-encodes
                  to the bytes it came from (padding aside);
  routing-layer   a routing-only dual-stack Node with lookups in flight (so responses meet
                  pending requests), timers fired, contacts that answer what it sends them as
                  themselves (keyed requests, the other-address query, probes, the announce
                  probe at their IPv6 address) and send it marked requests: nothing raises;
                  what it sends an address that has not answered it (the answer and the probe
                  of that address) is at most 3x the request (anti-amplification); nothing
                  goes to an IPv6 address a contact was named at in an answer that echoes no
                  keyed target of ours (a forged announce, protocol section 23);
session.py (real SessionLayers on kadtalk.transport.memory)
  session-key     KEY_REQ / KEY_RES: wire.decode_key, then a caller waiting for a KEY_RES and a
                  callee taking KEY_REQs: nothing raises; nothing rings (a ring needs an
                  authenticated RING after a verified exchange);
  session-stream  MEDIA / SIGNAL to a layer in a call: raw and mutated packets, and random
                  plaintexts sealed with the peer's real stream key (text messages too:
                  TEXT / RECEIPT, PRESENCE, CONTACT_REQ / CONTACT_REPLY whole, cut or
                  spliced): nothing raises;
  session-cookie  COOKIE (0x07): wire.decode_cookie, then a caller waiting with a cookie-less
                  KEY_REQ and a callee that demands cookies (always under load): the callee never
                  answers more than 3x a datagram with anything but a valid cookie (its KEY_RES
                  only to a retry whose cookie proves the address);
traversal.py
  traversal       NAT traversal (0x06, every op, PUNCH_COOKIE and PUNCH6_* included) through a Node whose
                  keep-alive timer runs, which punches through some senders and whose cookies a
                  sender may echo: nothing raises; a malformed datagram is one counted drop; no
                  answer to the sender is larger than its request; PUNCH_REQs go only to
                  addresses it punched through; a PUNCH_FWD only for a requester that is a
                  contact at that address or echoed a cookie sent there, naming that address; a
                  PUNCH6_FWD likewise, naming the IPv6 source, to a target held at IPv6; a
                  PUNCH only on a contact's word, never to a special address;
relay.py
  relay           relays (0x08, all sixteen ops) through a serving RelayLayer holding an
                  allocation with a permitted peer, inputs from its owner, its peer, strangers,
                  naming the live allocation, echoing valid cookies (CHALLENGE or knock) or
                  freshly signed, HOLDs and the echoes that claim them: nothing raises; a
                  malformed datagram is one counted drop; no answer to the sender is larger than
                  its request but a held DATA, once, to an echo that proved its source with the
                  HOLD's token; KNOCKED only to the owner and
                  only for a knock echoing the cookie minted for its source; anything else sent
                  to a third address is the received DATA, unchanged, between an allocation's
                  owner and its one peer, which proved its address, never to a special address;
                  allocations within the cap; the client, fed the same bytes as answers, sends
                  only to its relay;
storage.py
  storage         value storage (0x0a, all six ops) through a storer holding values under one key
                  and a client with a store, a fetch and a delete in flight; inputs from a
                  validated address, strangers, freshly signed STOREs and DELETEs, FIND_VALUEs
                  for the held key, held values with a byte changed: nothing raises; a malformed
                  datagram is one counted drop; answers go only to the source, no larger than
                  the request unless the address is validated, never over 1,400 bytes; quotas
                  and the byte count hold; every value held is signed by its author (checked
                  with identity.verify); the client sends only to the node its lookup named;
stack.py
  node-stack      the whole Node (routing, session, traversal, upkeep, calls through lookups,
                  timers when due) fed any first byte: nothing raises; a byte that LAYER_OF
                  maps to no layer is one counted drop; a 0x06 datagram reaches traversal; at
                  most 3x the request to an address that has not answered;
control.py (skipped when kadtalk.app is not installed)
  control-json    the daemon's control protocol (app/protocol.py): LineBuffer over random cuts
                  (lines around and far over MAX_LINE) splits as the rule says; parse gives
                  BadRequest or a request within the limits (integers within 2^53, finite
                  numbers, depth, no lone surrogate); every reply (app/control.py's reply and
                  error, echoing the request, or holding any value) encodes to one line of
                  strict UTF-8 JSON without NaN that reads back as sent;
  websocket       the web bridge (app/web.py): random HTTP upgrade requests through websockets'
                  parser and the bridge's checks (token, Host, Origin), then random frames on an
                  open connection: nothing raises out of the parser or the checks.

    python -m benchmarks.fuzz --help
"""

from benchmarks.fuzz.core import Target, Violation, fuzz, typed_bytes
from benchmarks.fuzz.runner import DEFAULT_INPUTS, QUICK_INPUTS, TARGETS, main

__all__ = ["DEFAULT_INPUTS", "QUICK_INPUTS", "TARGETS", "Target", "Violation", "fuzz", "main",
           "typed_bytes"]
