-- kadtalk.lua: a Wireshark dissector for the whole kadtalk wire protocol (docs/protocol.md).
--
-- One UDP datagram is one message; its first byte picks the layer (node/stack.py, LAYER_OF):
--   0x00-0x01 routing (nanotalk's ROUTE_REQ / ROUTE_RES) and 0x0b (ROUTE6_RES, IPv6 contacts),
--   0x02-0x05 and 0x07 the session (KEY_REQ, KEY_RES, MEDIA, SIGNAL, COOKIE), 0x06 NAT
--   traversal, 0x08 relays, 0x0a storage.
-- Ciphertext is never opened: MEDIA and SIGNAL show their header, sequence and length only.
--
-- Install and use: docs/wireshark.md. In short, copy this file to
-- ~/.local/lib/wireshark/plugins/ or run `tshark -X lua_script:tools/wireshark/kadtalk.lua`.
-- UDP port 5004 (the daemon's default; Edit > Preferences > Protocols > KADTALK to change it)
-- is decoded as kadtalk, other ports through "Decode As" or the heuristic, which claims a
-- datagram only when its layout checks out, and the rest of its conversation only after a
-- strong match (MEDIA, SIGNAL and relayed DATA have too little structure to be told apart
-- from noise alone; ROUTE_REQ / ROUTE_RES have no magic number).
--
-- Malformed input never raises a Lua error: every read is bounds-checked and a problem becomes
-- expert info that names the drop reason a kadtalk node would count.

local kt = Proto("kadtalk", "kadtalk (serverless voice calls over Kademlia)")

local DEFAULT_PORT = 5004
local ID_LEN = 20

-- Names -------------------------------------------------------------------------------------

local TYPE_NAMES = {
    [0x00] = "ROUTE_REQ", [0x01] = "ROUTE_RES", [0x02] = "KEY_REQ", [0x03] = "KEY_RES",
    [0x04] = "MEDIA", [0x05] = "SIGNAL", [0x06] = "TRAVERSAL", [0x07] = "COOKIE",
    [0x08] = "RELAY", [0x0a] = "STORAGE", [0x0b] = "ROUTE6_RES",
}
local LAYER_NAMES = {
    [0x00] = "routing", [0x01] = "routing", [0x02] = "session", [0x03] = "session",
    [0x04] = "session", [0x05] = "session", [0x07] = "session", [0x06] = "traversal",
    [0x08] = "relay", [0x0a] = "storage", [0x0b] = "routing",
}
local COOKIE_OPS = { [0x01] = "COOKIE_REPLY", [0x02] = "COOKIE_RETRY" }
local TRAVERSAL_OPS = {
    [0x01] = "ADDR_REQ", [0x02] = "ADDR_RES", [0x03] = "PUNCH_REQ", [0x04] = "PUNCH_FWD",
    [0x05] = "PUNCH", [0x06] = "PUNCH_COOKIE", [0x07] = "PUNCH_REQ_RELAY",
    [0x08] = "PUNCH_FWD_RELAY", [0x09] = "PROBE_REQ", [0x0a] = "PROBE_FWD", [0x0b] = "PROBE",
    [0x0c] = "PROBE_ACK", [0x0d] = "PUNCH6_REQ", [0x0e] = "PUNCH6_FWD",
}
local RELAY_OPS = {
    [0x01] = "HELLO", [0x02] = "CHALLENGE", [0x03] = "ALLOCATE", [0x04] = "ALLOCATED",
    [0x05] = "REFRESH", [0x06] = "REFRESHED", [0x07] = "PERMIT", [0x08] = "PERMITTED",
    [0x09] = "ERROR", [0x0a] = "DATA", [0x0b] = "KNOCK", [0x0c] = "KNOCKED",
    [0x0d] = "KNOCK_COOKIE", [0x0e] = "PATH_CHALLENGE", [0x0f] = "PATH_RESPONSE",
    [0x10] = "HOLD", [0x11] = "CLAIM",
}
local RELAY_ERRORS = {
    [1] = "bad_signature", [2] = "relay_full", [3] = "quota", [4] = "forbidden_peer",
    [5] = "unproven_peer",
}
local STORAGE_OPS = {
    [0x01] = "STORE", [0x02] = "STORED", [0x03] = "FIND_VALUE", [0x04] = "FOUND",
    [0x05] = "DELETE", [0x06] = "DELETED",
}
local STORED_STATUS = {
    [0] = "stored", [1] = "duplicate", [2] = "quota", [3] = "full", [4] = "deleted", [5] = "stale",
}
local RECORD_KINDS = { [1] = "PREKEY", [2] = "MAILBOX" }
-- SIGNAL plaintext sizes (kind byte and body, sections 15, 15b and 15c): what a ciphertext's
-- length allows. Fixed sizes first, then the kinds of a size range: a TEXT is 30 to 1,053 bytes
-- (message id, seq, sent, 1 to 1,024 bytes of text), a CONTACT_REQ 17 to 273 (request id, a
-- note of 0 to 256 bytes)
local SIGNAL_BY_SIZE = {
    [1] = "RING, ANSWER, BUSY or KEEPALIVE", [2] = "HANGUP or PRESENCE", [14] = "REPORT",
}
local SIGNAL_RANGES = {
    { "RECEIPT", 17, 17 }, { "TEXT", 30, 1053 }, { "CONTACT_REQ", 17, 273 },
    { "CONTACT_REPLY", 34, 34 },
}

-- Sizes (docs/protocol.md; the Python constants named in brackets) -------------------------

local ROUTE_REQ_MAX = 561          -- 41 + 20 x 26 (routing)
local CONTACT_LEN = 26             -- ID, IPv4, port
local ROUTE6_MAX = 821             -- 41 + 20 x 39 (route6.MAX_ROUTE6_SIZE)
local ROUTE6_MARKER = "IPv6"       -- a ROUTE_REQ's padding that asks for ROUTE6_RES
local FAMILIES = { [0x04] = "IPv4", [0x06] = "IPv6" }
local FAMILY_LEN = { [0x04] = 4, [0x06] = 16 }
local MAX_CONTACTS = 20
local MAX_KEY_MESSAGE = 4096       -- session.wire.MAX_KEY_MESSAGE
local MAX_SPKI = 2048              -- session.wire.MAX_SPKI
local STREAM_HEADER = 13           -- type, sequence (u32), tag (8)
local MAX_PACKET = 1500            -- session.wire.MAX_PACKET
local EPHEMERAL_PREFIX = "3059301306072a8648ce3d020106082a8648ce3d03010703420004"
local TRAVERSAL_SIZES = {
    [0x01] = 16, [0x02] = 16, [0x03] = 42, [0x04] = 28, [0x05] = 22, [0x06] = 18,
    [0x07] = 56, [0x08] = 42, [0x09] = 20, [0x0a] = 16, [0x0b] = 10, [0x0c] = 10,
    [0x0d] = 42, [0x0e] = 40,      -- IPv6 hole punching (§20)
}
local TRAVERSAL_SIZES6 = {         -- traversal.SIZES6: an IPv6 relay address (18 bytes, §20)
    [0x07] = 68, [0x08] = 54,
}
local RELAY_SIZES = {              -- relay.wire.SIZES; ALLOCATE and DATA vary
    [0x01] = 34, [0x02] = 34, [0x04] = 34, [0x05] = 12, [0x06] = 12, [0x07] = 16,
    [0x08] = 16, [0x09] = 12, [0x0b] = 16, [0x0c] = 16, [0x0d] = 16, [0x0e] = 26, [0x0f] = 26,
}
local RELAY_SIZES6 = {             -- relay.wire.SIZES6: the same carrying an IPv6 address
    [0x04] = 46, [0x07] = 28, [0x08] = 28, [0x0b] = 28, [0x0c] = 28,
}
local ALLOCATED_OTHER = 52         -- relay.wire.ALLOCATED_OTHER: with the relay's other address
local KNOCK_TOKEN, KNOCK6_TOKEN = 24, 36  -- relay.wire: a KNOCK echo with a HOLD's token
local MAX_SIGNATURE = 1024         -- relay.wire / storage.wire MAX_SIGNATURE (RSA-8192)
local MAX_ALLOCATE = 38 + MAX_SPKI + MAX_SIGNATURE
local MAX_ANSWER = 1400            -- storage.wire.MAX_ANSWER
local MAX_RECORD = 1363            -- storage.wire.MAX_RECORD
local MAX_VIDS = 32

-- Fields --------------------------------------------------------------------------------------

local f = {}
local function field(key, ctor, abbr, name, ...)
    f[key] = ctor("kadtalk." .. abbr, name, ...)
end
field("type", ProtoField.uint8, "type", "Type", base.HEX, TYPE_NAMES)
field("msg", ProtoField.string, "msg", "Message")
field("layer", ProtoField.string, "layer", "Layer")
field("cookie_op", ProtoField.uint8, "cookie.op", "Cookie operation", base.HEX, COOKIE_OPS)
field("traversal_op", ProtoField.uint8, "traversal.op", "Traversal operation", base.HEX,
      TRAVERSAL_OPS)
field("relay_op", ProtoField.uint8, "relay.op", "Relay operation", base.HEX, RELAY_OPS)
field("storage_op", ProtoField.uint8, "storage.op", "Storage operation", base.HEX, STORAGE_OPS)
-- node IDs (20 bytes, hex)
field("origin", ProtoField.bytes, "origin", "Origin ID")
field("target", ProtoField.bytes, "target", "Target ID")
field("responder", ProtoField.bytes, "responder", "Responder ID")
field("requester", ProtoField.bytes, "requester", "Requester ID")
field("sender", ProtoField.bytes, "sender", "Sender ID")
field("contact_count", ProtoField.uint8, "contacts", "Contacts")
field("contact", ProtoField.bytes, "contact", "Contact")
field("contact_id", ProtoField.bytes, "contact.id", "Contact ID")
field("contact_ip", ProtoField.ipv4, "contact.ip", "Contact IPv4")
field("contact_port", ProtoField.uint16, "contact.port", "Contact port")
field("contact_family", ProtoField.uint8, "contact.family", "Contact address family", base.HEX,
      FAMILIES)
field("contact_ipv6", ProtoField.ipv6, "contact.ipv6", "Contact IPv6")
field("asks_route6", ProtoField.string, "asks_route6", "Asks for")
field("announce", ProtoField.bytes, "announce", "Announces the responder's IPv6 address")
field("announce_ipv6", ProtoField.ipv6, "announce.ipv6", "Announced IPv6")
field("announce_port", ProtoField.uint16, "announce.port", "Announced port")
field("padding", ProtoField.bytes, "padding", "Padding")
field("trailing", ProtoField.bytes, "trailing", "Trailing bytes")
-- addresses
field("observed_ip", ProtoField.ipv4, "observed.ip", "Observed IPv4")
field("observed_port", ProtoField.uint16, "observed.port", "Observed port")
field("relay_ip", ProtoField.ipv4, "relay_addr.ip", "Relay IPv4")
field("relay_port", ProtoField.uint16, "relay_addr.port", "Relay port")
field("relay_ipv6", ProtoField.ipv6, "relay_addr.ipv6", "Relay IPv6")
field("hello_flags", ProtoField.uint8, "hello.flags", "Flags", base.HEX,
      { [0] = "none", [1] = "WANT_OTHER (the relay's address in the other family)" })
field("peer_ip", ProtoField.ipv4, "peer.ip", "Peer IPv4")
field("observed_ipv6", ProtoField.ipv6, "observed.ipv6", "Observed IPv6")
field("peer_ipv6", ProtoField.ipv6, "peer.ipv6", "Peer IPv6")
field("peer_port", ProtoField.uint16, "peer.port", "Peer port")
-- identity keys and signatures (KEY_REQ / KEY_RES, ALLOCATE, storage records, DELETE)
field("ephemeral", ProtoField.bytes, "ephemeral", "Ephemeral key (SPKI)")
field("ephemeral_x", ProtoField.bytes, "ephemeral.x", "X")
field("ephemeral_y", ProtoField.bytes, "ephemeral.y", "Y")
field("identity", ProtoField.bytes, "identity", "Identity key (SPKI)")
field("identity_type", ProtoField.string, "identity.type", "Key type")
field("identity_id", ProtoField.bytes, "identity.id", "Node ID (SHA-1 of the SPKI)")
field("spki_len", ProtoField.uint16, "spki_len", "SPKI length")
field("timestamp", ProtoField.uint64, "timestamp", "Timestamp (ms since 1970)")
field("signature", ProtoField.bytes, "signature", "Signature")
-- encrypted stream
field("seq", ProtoField.uint32, "seq", "Sequence")
field("tag", ProtoField.bytes, "tag", "GCM tag (8)")
field("ciphertext", ProtoField.bytes, "ciphertext", "Ciphertext")
field("ciphertext_len", ProtoField.uint16, "ciphertext_len", "Ciphertext length")
field("signal_kinds", ProtoField.string, "signal.kinds", "SIGNAL kinds this length fits")
-- cookies, nonces, allocations
field("request_tag", ProtoField.bytes, "request_tag", "Request tag (SHA-256(KEY_REQ)[0:16])")
field("cookie", ProtoField.bytes, "cookie", "Cookie")
field("nonce", ProtoField.bytes, "nonce", "Nonce")
field("allocation", ProtoField.bytes, "allocation", "Allocation")
field("lifetime", ProtoField.uint16, "lifetime", "Lifetime (s)")
field("error_op", ProtoField.uint8, "relay.error_op", "Request operation", base.HEX, RELAY_OPS)
field("error_code", ProtoField.uint8, "relay.error", "Error", base.DEC, RELAY_ERRORS)
field("reference", ProtoField.bytes, "relay.reference", "Reference")
field("knock_cookie", ProtoField.bytes, "relay.knock_cookie", "Knock cookie (6)")
field("hold_token", ProtoField.bytes, "relay.token", "Hold token (8)")
field("path_tag", ProtoField.bytes, "relay.path_tag", "Path check tag (16)")
field("payload", ProtoField.bytes, "payload", "Payload")
field("payload_len", ProtoField.uint16, "payload_len", "Payload length")
-- storage
field("key", ProtoField.bytes, "storage.key", "Key")
field("value_id", ProtoField.bytes, "storage.value_id", "Value ID")
field("status", ProtoField.uint8, "storage.status", "Status", base.DEC, STORED_STATUS)
field("cursor", ProtoField.uint16, "storage.cursor", "Cursor")
field("total", ProtoField.uint16, "storage.total", "Total values")
field("next", ProtoField.uint16, "storage.next", "Next cursor", base.DEC, { [0xffff] = "none" })
field("count", ProtoField.uint8, "storage.count", "Count")
field("record", ProtoField.bytes, "storage.record", "Record")
field("record_len", ProtoField.uint16, "storage.record_len", "Record length")
field("kind", ProtoField.uint8, "storage.kind", "Kind", base.DEC, RECORD_KINDS)
field("expiry", ProtoField.uint32, "storage.expiry", "Expiry (Unix s)")
field("sequence", ProtoField.uint32, "storage.sequence", "Sequence")
field("body_len", ProtoField.uint16, "storage.body_len", "Body length")
field("body", ProtoField.bytes, "storage.body", "Body")
field("epoch", ProtoField.uint32, "storage.epoch", "Epoch (days since 1970)")
field("removed", ProtoField.uint8, "storage.removed", "Removed")

local fields = {}
for _, v in pairs(f) do fields[#fields + 1] = v end
kt.fields = fields

local function expert_field(abbr, text, group, severity)
    return ProtoExpert.new("kadtalk." .. abbr, text, group, severity)
end
local e = {
    truncated = expert_field("truncated", "Truncated", expert.group.MALFORMED,
                             expert.severity.ERROR),
    bad_length = expert_field("bad_length", "Wrong length", expert.group.MALFORMED,
                              expert.severity.ERROR),
    oversized = expert_field("oversized", "Oversized", expert.group.MALFORMED,
                             expert.severity.ERROR),
    unknown = expert_field("unknown", "Unknown type, operation or value",
                           expert.group.MALFORMED, expert.severity.ERROR),
    bad_der = expert_field("bad_der", "Bad DER", expert.group.MALFORMED, expert.severity.ERROR),
    nonzero = expert_field("nonzero", "Zero field not zero", expert.group.PROTOCOL,
                           expert.severity.WARN),
    unusable = expert_field("unusable_address", "Unusable address", expert.group.PROTOCOL,
                            expert.severity.WARN),
    not_canonical = expert_field("not_canonical", "Ephemeral key not canonical",
                                 expert.group.PROTOCOL, expert.severity.WARN),
    internal = expert_field("internal", "Dissector error (please report)",
                            expert.group.UNDECODED, expert.severity.ERROR),
    snapped = expert_field("snapped", "Capture cut by the snapshot length",
                           expert.group.UNDECODED, expert.severity.NOTE),
}
kt.experts = { e.truncated, e.bad_length, e.oversized, e.unknown, e.bad_der, e.nonzero,
               e.unusable, e.not_canonical, e.internal, e.snapped }

kt.prefs.port = Pref.uint("UDP port", DEFAULT_PORT,
                          "UDP port decoded as kadtalk (the daemon's default is 5004)")

-- Helpers -------------------------------------------------------------------------------------

-- 32-bit operations: Lua 5.2's bit32 (Wireshark up to 4.2), else 5.3+'s operators (4.4 and later,
-- Lua 5.4), compiled at run time so that this file still parses under 5.2.
local bits = bit32 or load([[
    local M = 0xffffffff
    return {
        band = function(a, b, c) return a & b & (c or M) end,
        bor = function(a, b, c) return a | b | (c or 0) end,
        bxor = function(a, b, c, d) return a ~ b ~ (c or 0) ~ (d or 0) end,
        bnot = function(a) return ~a & M end,
        lrotate = function(a, n) return ((a << n) | (a >> (32 - n))) & M end,
    }]])()
local band, bor, bxor, bnot, lrot = bits.band, bits.bor, bits.bxor, bits.bnot, bits.lrotate

local function be32(n)
    return string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
                       math.floor(n / 256) % 256, n % 256)
end

-- SHA-1 (FIPS 180-4) of a Lua string, as 40 hex digits: a node ID is SHA-1 of its SPKI.
local function sha1(msg)
    local len = #msg
    local bits = len * 8
    msg = msg .. "\128" .. string.rep("\0", (55 - len) % 64)
          .. be32(math.floor(bits / 4294967296)) .. be32(bits % 4294967296)
    local h0, h1, h2, h3, h4 = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0
    local w = {}
    for chunk = 1, #msg, 64 do
        for i = 0, 15 do
            local a, b, c, d = msg:byte(chunk + i * 4, chunk + i * 4 + 3)
            w[i] = ((a * 256 + b) * 256 + c) * 256 + d
        end
        for i = 16, 79 do
            w[i] = lrot(bxor(w[i - 3], w[i - 8], w[i - 14], w[i - 16]), 1)
        end
        local a, b, c, d, x = h0, h1, h2, h3, h4
        for i = 0, 79 do
            local fn, k
            if i < 20 then
                fn, k = bor(band(b, c), band(bnot(b), d)), 0x5A827999
            elseif i < 40 then
                fn, k = bxor(b, c, d), 0x6ED9EBA1
            elseif i < 60 then
                fn, k = bor(band(b, c), band(b, d), band(c, d)), 0x8F1BBCDC
            else
                fn, k = bxor(b, c, d), 0xCA62C1D6
            end
            local temp = (lrot(a, 5) + fn + x + k + w[i]) % 4294967296
            x, d, c, b, a = d, c, lrot(b, 30), a, temp
        end
        h0, h1 = (h0 + a) % 4294967296, (h1 + b) % 4294967296
        h2, h3 = (h2 + c) % 4294967296, (h3 + d) % 4294967296
        h4 = (h4 + x) % 4294967296
    end
    return string.format("%08x%08x%08x%08x%08x", h0, h1, h2, h3, h4)
end

local function hex(range) return range:bytes():tohex(true) end
local function short(hexstr) return hexstr:sub(1, 8) .. "\226\128\166" end -- "ab12cd34…"

local function all_zero(tvb, offset, length)
    for i = offset, offset + length - 1 do
        if tvb(i, 1):uint() ~= 0 then return false end
    end
    return true
end

local function utc(seconds)
    local ok, text = pcall(os.date, "!%Y-%m-%d %H:%M:%S UTC", seconds)
    return ok and text or "out of range"
end

-- Why an IPv4 contact address is unusable (docs/protocol.md §3 "Limits"), or nil.
local function unusable(ip_first, ip_all_zero, ip_all_ones, port)
    if ip_all_zero then return "address 0.0.0.0" end
    if port == 0 then return "port 0" end
    if ip_all_ones then return "broadcast 255.255.255.255" end
    if ip_first >= 224 and ip_first <= 239 then return "multicast" end
    return nil
end

-- Key type of a DER SubjectPublicKeyInfo, from the algorithm and curve OIDs it holds.
local function key_type(spki_hex)
    local head = spki_hex:sub(1, 80)
    if head:find("2a8648ce3d0201", 1, true) then
        if head:find("2a8648ce3d030107", 1, true) then return "ECDSA P-256" end
        if head:find("2b81040022", 1, true) then return "ECDSA P-384" end
        if head:find("2b81040023", 1, true) then return "ECDSA P-521" end
        if head:find("2b81040021", 1, true) then return "ECDSA P-224" end
        return "ECDSA"
    end
    if head:find("06032b6570", 1, true) then return "Ed25519" end
    if head:find("06032b6571", 1, true) then return "Ed448" end
    if head:find("2a864886f70d010101", 1, true) then return "RSA" end
    if head:find("2a864886f70d01010a", 1, true) then return "RSA-PSS" end
    if head:find("2a8648ce380401", 1, true) then return "DSA" end
    return "unknown"
end

-- A reader over one message: bounds-checked reads that add fields, and expert info -----------

local Reader = {}
Reader.__index = Reader

local function reader(tvb, tree, name)
    return setmetatable({ tvb = tvb, tree = tree, pos = 0, len = tvb:len(), name = name,
                          ok = true }, Reader)
end

function Reader:left() return self.len - self.pos end

function Reader:expert(ef, text) self.tree:add_proto_expert_info(ef, text) end

-- Mark the message cut short at the current position (once).
function Reader:cut(what, need)
    if self.ok then
        self.ok = false
        self:expert(e.truncated, string.format(
            "%s cut short: %s needs %d bytes at offset %d, %d left (a node drops it)",
            self.name, what, need, self.pos, self:left()))
    end
end

-- The next n bytes as a range, or nil (and expert info) when fewer are left.
function Reader:take(n, what)
    if not self.ok then return nil end
    if n <= 0 then return nil end
    if self:left() < n then
        self:cut(what, n)
        return nil
    end
    local r = self.tvb(self.pos, n)
    self.pos = self.pos + n
    return r
end

function Reader:add(fld, n, what, tree)
    local r = self:take(n, what)
    if r then (tree or self.tree):add(fld, r) end
    return r
end

function Reader:uint(fld, n, what, tree)
    local r = self:add(fld, n, what, tree)
    return r and r:uint() or nil
end

-- A 20-byte node ID: its hex, or nil.
function Reader:id(fld, what, tree)
    local r = self:add(fld, ID_LEN, what, tree)
    return r and hex(r) or nil
end

-- IPv4 and port (6 bytes, as in ROUTE_RES): "a.b.c.d:port", or nil; warns when unusable.
function Reader:addr(fip, fport, what, tree, check)
    if self:left() < 6 then self:cut(what, 6) end
    local ip = self:add(fip, 4, what, tree)
    local port = ip and self:uint(fport, 2, what, tree)
    if not port then return nil end
    local text = tostring(ip:ipv4()) .. ":" .. port
    if check ~= false then
        local why = unusable(ip(0, 1):uint(), ip:uint() == 0, ip:uint() == 0xffffffff, port)
        if why then
            self:expert(e.unusable, string.format("%s %s: %s (no peer can be reached there)",
                                                  what, text, why))
        end
    end
    return text
end

-- IPv6 and port (18 bytes, relays' IPv6 sizes): "[ip]:port", or nil.
function Reader:addr6(fip, fport, what, tree)
    if self:left() < 18 then self:cut(what, 18) end
    local ip = self:add(fip, 16, what, tree)
    local port = ip and self:uint(fport, 2, what, tree)
    if not port then return nil end
    return "[" .. tostring(ip:ipv6()) .. "]:" .. port
end

-- n bytes that must be zero (padding): a warning when not.
function Reader:zero(n, what)
    local r = self:add(f.padding, n, what)
    if r and not all_zero(self.tvb, r:offset(), n) then
        self:expert(e.nonzero, what .. " is not all zero")
    end
    return r
end

-- Whatever is left, shown as trailing bytes with an error.
function Reader:trailing(rule)
    if self.ok and self:left() > 0 then
        self.tree:add(f.trailing, self.tvb(self.pos, self:left()))
        if not self.flagged then
            self:expert(e.bad_length, string.format("%s: %d byte(s) too many (%s)", self.name,
                                                    self:left(), rule))
        end
        self.pos = self.len
    end
end

-- The datagram's length against an exact size (a node drops any other: malformed).
function Reader:exact(size)
    if self.len ~= size then
        self.flagged = true
        self:expert(self.len < size and e.truncated or e.bad_length, string.format(
            "%s must be %d bytes, this one is %d (a node drops it: malformed)",
            self.name, size, self.len))
    end
end

-- A DER SEQUENCE (an SPKI) with minimal length octets, as session.wire._der_sequence reads it.
-- Returns its total length, or nil with expert info.
function Reader:der_length(what)
    local tvb, at = self.tvb, self.pos
    if self:left() < 2 then
        self:cut(what, 2)
        return nil
    end
    if tvb(at, 1):uint() ~= 0x30 then
        self:expert(e.bad_der, what .. ": not a DER SEQUENCE (a node drops it: bad_der)")
        self.ok = false
        return nil
    end
    local first, length, header = tvb(at + 1, 1):uint(), nil, nil
    if first < 0x80 then
        length, header = first, 2
    elseif first == 0x81 and self:left() >= 3 and tvb(at + 2, 1):uint() >= 0x80 then
        length, header = tvb(at + 2, 1):uint(), 3
    elseif first == 0x82 and self:left() >= 4 and tvb(at + 2, 2):uint() >= 0x100 then
        length, header = tvb(at + 2, 2):uint(), 4
    else
        self:expert(e.bad_der, what .. ": length octets not minimal DER, or cut short"
                    .. " (a node drops it: bad_der)")
        self.ok = false
        return nil
    end
    if header + length > MAX_SPKI then
        self:expert(e.oversized, string.format("%s: %d bytes, at most %d (a node drops it: "
                                               .. "oversized)", what, header + length, MAX_SPKI))
    end
    return header + length
end

-- An identity SPKI of `n` bytes: its key type and node ID (SHA-1), both shown; the ID's hex.
function Reader:identity(n, what)
    local r = self:take(n, what)
    if not r then return nil end
    local item = self.tree:add(f.identity, r)
    local key_hex = hex(r)
    local kind = key_type(key_hex)
    item:append_text(" (" .. kind .. ")")
    item:add(f.identity_type, r, kind):set_generated()
    local id = sha1(self.tvb:raw(r:offset(), n))
    local computed = ByteArray.new(id):tvb("Node ID (SHA-1 of the identity key)")
    item:add(f.identity_id, computed()):set_generated()
    return id
end

-- Dissection by layer ------------------------------------------------------------------------

local dissect_message -- (tvb, pinfo, tree, depth) -> info text

-- Why an IPv6 contact address is unusable (docs/protocol.md §23 "Receiving"), or nil.
local function unusable6(ip, port)
    local tvb, at = ip:tvb(), 0
    local b0, b1 = ip(0, 1):uint(), ip(1, 1):uint()
    if all_zero(tvb, at, 16) then return "address ::" end
    if port == 0 then return "port 0" end
    if b0 == 0xff then return "multicast" end
    if b0 == 0xfe and b1 >= 0x80 and b1 < 0xc0 then return "link-local" end
    if all_zero(tvb, at, 10) and ip(10, 2):uint() == 0xffff then
        return "IPv4-mapped (IPv4 travels as family 0x04)"
    end
    return nil
end

local function route_req(r)
    local origin = r:id(f.origin, "origin ID")
    local target = r:id(f.target, "target ID")
    local asks = false
    if r.ok and r:left() > 0 then
        local pad = r.tvb(r.pos, r:left())
        asks = r:left() >= #ROUTE6_MARKER and pad(0, #ROUTE6_MARKER):string() == ROUTE6_MARKER
        if asks then
            r.tree:add(f.asks_route6, pad(0, #ROUTE6_MARKER), "ROUTE6_RES (IPv6 contacts, §23)")
        end
        -- whatever follows the marker is padding (session 11's announce there is ignored since
        -- session 12: a responder announces itself in its ROUTE6_RES, §23 "The other address")
        r.tree:add(f.padding, pad):append_text(asks and " (begins \"IPv6\": ROUTE6_RES wanted)"
                                               or " (ignored by the receiver)")
        r.pos = r.len
    end
    if r.len > ROUTE_REQ_MAX then
        r:expert(e.oversized, string.format("ROUTE_REQ of %d bytes: at most %d (a node drops "
                                            .. "it: oversized)", r.len, ROUTE_REQ_MAX))
    end
    if not target then return "ROUTE_REQ" end
    return "ROUTE_REQ target=" .. short(target) .. " origin=" .. short(origin)
        .. (asks and " asks=ROUTE6_RES" or "")
end

-- A ROUTE6_RES entry: ID, family (0x04 / 0x06), address, port; its ID, or nil, and the
-- responder's announce ("[ip]:port") when the entry is the responder itself at a usable IPv6
-- address (§23 "The other address": it names itself, last, over IPv4).
local function contact6(r, i, responder)
    if r:left() < ID_LEN + 1 then
        r:cut("contact " .. i, ID_LEN + 1)
        return nil
    end
    local family = r.tvb(r.pos + ID_LEN, 1):uint()
    local size = FAMILY_LEN[family]
    if not size then
        local c = r.tree:add(f.contact, r.tvb(r.pos, ID_LEN + 1))
        r:id(f.contact_id, "contact ID", c)
        r:add(f.contact_family, 1, "family", c)
        r:expert(e.unknown, string.format("contact %d: family 0x%02x is neither 0x04 nor 0x06 "
                                          .. "(a node drops it: bad_family)", i, family))
        r.ok = false
        return nil
    end
    local entry = ID_LEN + 1 + size + 2
    if r:left() < entry then
        r:cut("contact " .. i, entry)
        return nil
    end
    local c = r.tree:add(f.contact, r.tvb(r.pos, entry))
    local id = r:id(f.contact_id, "contact ID", c)
    r:add(f.contact_family, 1, "family", c)
    local at, announce
    if family == 0x04 then
        at = r:addr(f.contact_ip, f.contact_port, "contact " .. i, c)
    else
        local ip = r:add(f.contact_ipv6, 16, "contact " .. i, c)
        local port = r:uint(f.contact_port, 2, "contact " .. i, c)
        at = "[" .. tostring(ip:ipv6()) .. "]:" .. port
        local why = unusable6(ip, port)
        if why then
            r:expert(e.unusable, string.format("contact %d %s: %s (no peer can be reached "
                                               .. "there)", i, at, why))
        elseif id == responder then
            announce = at
            local t = c:add(f.announce, r.tvb(r.pos - 19, 19))
            t:set_text("Announces the responder's IPv6 address: " .. at)
            t:add(f.announce_ipv6, ip)
            t:add(f.announce_port, r.tvb(r.pos - 2, 2))
        end
    end
    c:set_text(string.format("Contact %d: %s at %s%s", i, id, at,
                             announce and " (the responder itself: its announce)" or ""))
    return id, announce
end

local function route6_res(r)
    local responder = r:id(f.responder, "responder ID")
    local target = r:id(f.target, "target ID")
    if not target then return "ROUTE6_RES" end
    if r.len > ROUTE6_MAX then
        r:expert(e.oversized, string.format("ROUTE6_RES of %d bytes: at most %d (a node drops "
                                            .. "it: oversized)", r.len, ROUTE6_MAX))
    end
    local n, announce = 0, nil
    while r.ok and r:left() > 0 do
        if n == MAX_CONTACTS then
            r:expert(e.oversized, string.format("ROUTE6_RES with more than %d contacts (a node "
                                                .. "drops it: oversized)", MAX_CONTACTS))
            r.tree:add(f.trailing, r.tvb(r.pos, r:left()))
            r.pos = r.len
            break
        end
        local id, at = contact6(r, n, responder)
        if id then n = n + 1 end
        announce = announce or at
    end
    r.tree:add(f.contact_count, n):set_generated()
    return string.format("ROUTE6_RES target=%s responder=%s contacts=%d", short(target),
                         short(responder), n) .. (announce and (" announces=" .. announce) or "")
end

local function contact(r, tree, i)
    if r:left() < CONTACT_LEN then
        r:cut("contact " .. i, CONTACT_LEN)
        return nil
    end
    local c = tree:add(f.contact, r.tvb(r.pos, CONTACT_LEN))
    local id = r:id(f.contact_id, "contact ID", c)
    local at = r:addr(f.contact_ip, f.contact_port, "contact " .. i, c)
    c:set_text(string.format("Contact %d: %s at %s", i, id, at))
    return id
end

local function route_res(r)
    local responder = r:id(f.responder, "responder ID")
    local target = r:id(f.target, "target ID")
    if not target then return "ROUTE_RES" end
    local n = math.floor(r:left() / CONTACT_LEN)
    r.tree:add(f.contact_count, n):set_generated()
    if r:left() % CONTACT_LEN ~= 0 then
        r:expert(e.bad_length, string.format("ROUTE_RES: length - 41 = %d is not a multiple "
                                             .. "of 26 (a node drops it: bad_length)", r:left()))
    end
    if n > MAX_CONTACTS then
        r:expert(e.oversized, string.format("ROUTE_RES with %d contacts: at most %d (a node "
                                            .. "drops it: oversized)", n, MAX_CONTACTS))
    end
    for i = 0, n - 1 do contact(r, r.tree, i) end
    r:trailing("not a whole contact")
    return string.format("ROUTE_RES target=%s responder=%s contacts=%d", short(target),
                         short(responder), n)
end

local function key_message(r, kind)
    if r.len > MAX_KEY_MESSAGE then
        r:expert(e.oversized, string.format("%s of %d bytes: at most %d (a node drops it: "
                                            .. "oversized)", kind, r.len, MAX_KEY_MESSAGE))
    end
    local eph_len = r:der_length("ephemeral key")
    if not eph_len then return kind end
    local eph = r:take(eph_len, "ephemeral key")
    if not eph then return kind end
    local eitem = r.tree:add(f.ephemeral, eph)
    if eph_len == 91 and hex(eph(0, 27)) == EPHEMERAL_PREFIX then
        eitem:append_text(" (secp256r1, uncompressed)")
        eitem:add(f.ephemeral_x, eph(27, 32))
        eitem:add(f.ephemeral_y, eph(59, 32))
    else
        r:expert(e.not_canonical, "ephemeral key is not the 91-byte uncompressed secp256r1 SPKI"
                 .. " (a node drops it: ephemeral_not_canonical)")
    end
    local id_len = r:der_length("identity key")
    if not id_len then return kind end
    local id = r:identity(id_len, "identity key")
    local ts = r:take(8, "timestamp")
    if not ts then return kind end
    local ms = ts:uint64():tonumber()
    r.tree:add(f.timestamp, ts):append_text(" (" .. utc(math.floor(ms / 1000)) .. ")")
    local sig = r:take(r:left(), "signature")
    if sig then
        r.tree:add(f.signature, sig):append_text(string.format(" (%d bytes)", sig:len()))
    else
        r:cut("signature", 1)
    end
    local who = kind == "KEY_REQ" and "caller" or "callee"
    return string.format("%s %s=%s ts=%s", kind, who, id and short(id) or "?",
                         utc(math.floor(ms / 1000)))
end

local function stream(r, kind)
    local seq = r:uint(f.seq, 4, "sequence")
    local tag = seq and r:add(f.tag, 8, "tag")
    if not tag then return kind end
    local n = r:left()
    r.tree:add(f.ciphertext_len, n):set_generated()
    if n > 0 then
        r.tree:add(f.ciphertext, r.tvb(r.pos, n)):append_text(" (AES-256-GCM, not decrypted)")
        r.pos = r.len
    end
    if r.len > MAX_PACKET then
        r:expert(e.oversized, string.format("%s of %d bytes: at most %d (a node drops it: "
                                            .. "oversized)", kind, r.len, MAX_PACKET))
    end
    if kind == "SIGNAL" then
        local fits = {}
        if SIGNAL_BY_SIZE[n] then fits[#fits + 1] = SIGNAL_BY_SIZE[n] end
        for _, range in ipairs(SIGNAL_RANGES) do
            if n >= range[2] and n <= range[3] then fits[#fits + 1] = range[1] end
        end
        local kinds = #fits > 0 and table.concat(fits, " or ")
                      or "none (no SIGNAL kind has this length)"
        r.tree:add(f.signal_kinds, kinds):set_generated()
    end
    return string.format("%s seq=%d len=%d", kind, seq, n)
end

local function cookie(r, pinfo, depth)
    local op = r:uint(f.cookie_op, 1, "operation")
    local name = COOKIE_OPS[op]
    if not name then
        if op then
            r:expert(e.unknown, string.format("COOKIE operation 0x%02x (a node drops it: "
                                              .. "unknown_cookie_op)", op))
        end
        return "COOKIE"
    end
    r.name = name
    if op == 0x01 then
        r:exact(34)
        local tag = r:add(f.request_tag, 16, "request tag")
        r:add(f.cookie, 16, "cookie")
        r:trailing("a COOKIE_REPLY is 34 bytes")
        return tag and ("COOKIE_REPLY tag=" .. short(hex(tag))) or name
    end
    local value = r:add(f.cookie, 16, "cookie")
    local inner = r:take(r:left(), "KEY_REQ")
    if not inner then
        if value then r:cut("KEY_REQ", 1) end
        return name
    end
    if inner(0, 1):uint() ~= 0x02 then
        r.tree:add(f.payload, inner)
        r:expert(e.unknown, "a COOKIE_RETRY carries a KEY_REQ only (a node drops it: "
                 .. "bad_cookie_retry)")
        return name
    end
    local info = dissect_message(inner:tvb(), pinfo, r.tree, depth + 1)
    return "COOKIE_RETRY cookie=" .. short(hex(value)) .. " | " .. info
end

local function traversal(r)
    local op = r:uint(f.traversal_op, 1, "operation")
    local name = TRAVERSAL_OPS[op]
    if not name then
        if op then
            r:expert(e.unknown, string.format("traversal operation 0x%02x (a node drops it: "
                                              .. "malformed)", op))
        end
        return "TRAVERSAL"
    end
    r.name = name
    local size = TRAVERSAL_SIZES[op]
    -- an IPv6 relay address (18 bytes, not 6) makes the relay variants 12 bytes longer
    local v6 = TRAVERSAL_SIZES6[op] ~= nil and (r.len == TRAVERSAL_SIZES6[op]
                                                or (op == 0x07 and r.len == 84))
    if v6 then size = TRAVERSAL_SIZES6[op] end
    if (op == 0x03 or op == 0x07 or op == 0x0d) and r.len == size + 16 then
        size = size + 16 -- cookie
    end
    r:exact(size)
    local function relay_addr()
        if v6 then return r:addr6(f.relay_ipv6, f.relay_port, "relay address") end
        return r:addr(f.relay_ip, f.relay_port, "relay address")
    end
    local info = name
    if op == 0x01 then
        local nonce = r:add(f.nonce, 8, "nonce")
        r:zero(6, "padding")
        info = nonce and (name .. " nonce=" .. hex(nonce)) or name
    elseif op == 0x02 then
        local nonce = r:add(f.nonce, 8, "nonce")
        local at = r:addr(f.observed_ip, f.observed_port, "observed address", nil, false)
        info = at and string.format("%s nonce=%s observed=%s", name, hex(nonce), at) or name
    elseif op == 0x03 or op == 0x07 or op == 0x0d then
        local req = r:id(f.requester, "requester ID")
        local target = r:id(f.target, "target ID")
        info = target and string.format("%s target=%s requester=%s", name, short(target),
                                        short(req)) or name
        if op == 0x07 then
            local relay = relay_addr()
            local alloc = r:add(f.allocation, 8, "allocation")
            if alloc then
                info = info .. string.format(" relay=%s alloc=%s", relay, hex(alloc))
            end
        end
        if r.ok and r:left() == 16 then
            r:add(f.cookie, 16, "cookie")
            info = info .. " +cookie"
        end
    elseif op == 0x04 or op == 0x08 then
        local req = r:id(f.requester, "requester ID")
        local at
        if op == 0x08 and r:left() >= 6 and all_zero(r.tvb, r.pos, 6) then
            -- an IPv6 requester (§20): no address, the target knocks and sends no PUNCH
            r:add(f.padding, 6, "requester's address: none (an IPv6 caller)")
            at = "none"
        else
            at = r:addr(f.observed_ip, f.observed_port, "requester's address")
        end
        info = at and string.format("%s requester=%s at=%s", name, short(req), at) or name
        if op == 0x08 then
            local relay = relay_addr()
            local alloc = r:add(f.allocation, 8, "allocation")
            if alloc then
                info = info .. string.format(" relay=%s alloc=%s", relay, hex(alloc))
            end
        end
    elseif op == 0x05 then
        local sender = r:id(f.sender, "sender ID")
        info = sender and (name .. " sender=" .. short(sender)) or name
    elseif op == 0x06 then
        local c = r:add(f.cookie, 16, "cookie")
        info = c and (name .. " cookie=" .. short(hex(c))) or name
    elseif op == 0x09 then -- PROBE_REQ: no address in it, the PROBE goes to its source
        local nonce = r:add(f.nonce, 8, "nonce")
        r:zero(10, "padding")
        info = nonce and (name .. " nonce=" .. hex(nonce)) or name
    elseif op == 0x0a then
        local at = r:addr(f.observed_ip, f.observed_port, "requester's address")
        local nonce = r:add(f.nonce, 8, "nonce")
        info = nonce and string.format("%s at=%s nonce=%s", name, at, hex(nonce)) or name
    elseif op == 0x0b or op == 0x0c then
        local nonce = r:add(f.nonce, 8, "nonce")
        info = nonce and (name .. " nonce=" .. hex(nonce)) or name
    elseif op == 0x0e then -- PUNCH6_FWD: the requester's IPv6 source as the rendezvous saw it
        local req = r:id(f.requester, "requester ID")
        local at = r:addr6(f.observed_ipv6, f.observed_port, "requester's IPv6 address")
        info = at and string.format("%s requester=%s at=%s", name, short(req), at) or name
    end
    r:trailing("wrong length for " .. name)
    return info
end

local function relay(r, pinfo, depth)
    local op = r:uint(f.relay_op, 1, "operation")
    local name = RELAY_OPS[op]
    if not name then
        if op then
            r:expert(e.unknown, string.format("relay operation 0x%02x (a node drops it: "
                                              .. "malformed)", op))
        end
        return "RELAY"
    end
    r.name = name
    -- an IPv6 address (18 bytes instead of 6) makes the message 12 bytes longer (section 21)
    local v6 = RELAY_SIZES6[op] ~= nil and r.len == RELAY_SIZES6[op]
    -- a KNOCK echo claiming the owner's held DATA carries an 8-byte token (24 / 36 bytes)
    local token = op == 0x0b and (r.len == KNOCK_TOKEN or r.len == KNOCK6_TOKEN)
    if token then v6 = r.len == KNOCK6_TOKEN end
    -- ALLOCATED with the relay's address in the other family (52 bytes, §21): the reflexive
    -- address is in the family the datagram travelled, the other one in the other
    local other = op == 0x04 and r.len == ALLOCATED_OTHER
    if other then v6 = tostring(pinfo.net_src):find(":") ~= nil end
    if RELAY_SIZES[op] and not v6 and not other and not token then r:exact(RELAY_SIZES[op]) end
    local info = name
    if op == 0x01 or op == 0x02 then
        local nonce = r:add(f.nonce, 16, "nonce")
        local flags
        if op == 0x01 then
            flags = r:uint(f.hello_flags, 1, "flags")
            r:zero(15, "zero")
        else
            r:add(f.cookie, 16, "cookie")
        end
        info = nonce and (name .. " nonce=" .. short(hex(nonce))
                          .. (flags == 1 and " WANT_OTHER" or "")) or name
    elseif op == 0x03 then
        if r.len > MAX_ALLOCATE then
            r:expert(e.oversized, string.format("ALLOCATE of %d bytes: at most %d (a node "
                                                .. "drops it: malformed)", r.len, MAX_ALLOCATE))
        end
        r:add(f.nonce, 16, "nonce")
        r:add(f.cookie, 16, "cookie")
        local lifetime = r:uint(f.lifetime, 2, "lifetime")
        local spki_len = r:uint(f.spki_len, 2, "SPKI length")
        if spki_len and (spki_len == 0 or spki_len > MAX_SPKI) then
            r:expert(e.bad_length, string.format("SPKI length %d: 1 to %d (a node drops it: "
                                                 .. "malformed)", spki_len, MAX_SPKI))
        end
        local owner = spki_len and spki_len > 0 and r:identity(spki_len, "identity SPKI")
        if owner then
            local n = r:left()
            if n == 0 or n > MAX_SIGNATURE then
                r:expert(e.bad_length, string.format("signature of %d bytes: 1 to %d (a node "
                                                     .. "drops it: malformed)", n, MAX_SIGNATURE))
            end
            if n > 0 then r:add(f.signature, n, "signature") end
            info = string.format("%s owner=%s lifetime=%d", name, short(owner), lifetime)
        end
    elseif op == 0x04 then
        r:add(f.nonce, 16, "nonce")
        local alloc = r:add(f.allocation, 8, "allocation")
        local lifetime = r:uint(f.lifetime, 2, "lifetime")
        local at = v6 and r:addr6(f.observed_ipv6, f.observed_port, "reflexive address")
            or not v6 and r:addr(f.observed_ip, f.observed_port, "reflexive address", nil, false)
        info = at and string.format("%s alloc=%s lifetime=%d reflexive=%s", name, hex(alloc),
                                    lifetime, at) or name
        if other and at then
            local there = v6 and r:addr(f.relay_ip, f.relay_port, "the relay's IPv4 address")
                or not v6 and r:addr6(f.relay_ipv6, f.relay_port, "the relay's IPv6 address")
            info = info .. " other=" .. tostring(there)
        end
    elseif op == 0x05 or op == 0x06 then
        local alloc = r:add(f.allocation, 8, "allocation")
        local lifetime = r:uint(f.lifetime, 2, "lifetime")
        info = lifetime and string.format("%s alloc=%s lifetime=%d%s", name, hex(alloc),
                                          lifetime, lifetime == 0 and " (release)" or "") or name
    elseif op == 0x07 or op == 0x08 or op == 0x0c then
        local alloc = r:add(f.allocation, 8, "allocation")
        local at = v6 and r:addr6(f.peer_ipv6, f.peer_port, "peer address")
            or not v6 and r:addr(f.peer_ip, f.peer_port, "peer address", nil, false)
        info = at and string.format("%s alloc=%s peer=%s", name, hex(alloc), at) or name
    elseif op == 0x09 then
        local req = r:uint(f.error_op, 1, "request operation")
        local code = r:uint(f.error_code, 1, "error code")
        r:add(f.reference, 8, "reference")
        if code and not RELAY_ERRORS[code] then
            r:expert(e.unknown, string.format("relay ERROR code %d is not in the table", code))
        end
        info = code and string.format("%s %s %s", name, RELAY_OPS[req] or req,
                                      RELAY_ERRORS[code] or tostring(code)) or name
    elseif op == 0x0a or op == 0x10 then
        local alloc = r:add(f.allocation, 8, "allocation")
        if not alloc then return name end
        local held = op == 0x10 and r:add(f.hold_token, 8, "token (the CLAIM that takes it)")
        if held == nil then return name end  -- a HOLD cut short in its token
        local n = r:left()
        r.tree:add(f.payload_len, n):set_generated()
        if n > MAX_PACKET then
            r:expert(e.oversized, string.format("DATA payload of %d bytes: at most %d (a node "
                                                .. "drops it: malformed)", n, MAX_PACKET))
        end
        info = string.format("%s alloc=%s len=%d", name, hex(alloc), n)
        if held then info = info .. " token=" .. hex(held) end
        if n > 0 then
            local payload = r:take(n, "payload")
            local kind = payload(0, 1):uint()
            if LAYER_NAMES[kind] == "session" and depth == 0 then
                local sub = r.tree:add(f.payload, payload)
                sub:append_text(" (a session datagram, end to end)")
                info = info .. " | " .. dissect_message(payload:tvb(), pinfo, sub, depth + 1)
            else
                r.tree:add(f.payload, payload):append_text(" (opaque)")
            end
        end
    elseif op == 0x0b or op == 0x0d then
        local alloc = r:add(f.allocation, 8, "allocation")
        local c = r:take(6, "knock cookie")
        if c then
            local item = r.tree:add(f.knock_cookie, c)
            if op == 0x0b and all_zero(r.tvb, c:offset(), 6) then
                item:append_text(" (none: asking the relay for one)")
                info = name .. " alloc=" .. hex(alloc) .. " cookie=none"
            else
                info = name .. " alloc=" .. hex(alloc) .. " cookie=" .. hex(c)
            end
            local held = token and r:add(f.hold_token, 8, "token (claims the owner's held DATA)")
            if held then info = info .. " token=" .. hex(held) end
            if v6 then r:zero(12, "padding (a knock at an IPv6 relay)") end
        end
    elseif op == 0x11 then
        -- CLAIM (relay.wire): the held DATA for this token, at most 3x this datagram's size
        local alloc = r:add(f.allocation, 8, "allocation")
        local held = alloc and r:add(f.hold_token, 8, "token (claims the owner's held DATA)")
        if held then
            local n = r:left()
            if r.len > 18 + MAX_PACKET then
                r:expert(e.oversized, string.format("CLAIM of %d bytes: at most %d (a node "
                    .. "drops it: malformed)", r.len, 18 + MAX_PACKET))
            end
            if n > 0 then r:zero(n, "padding (the CLAIM's size bounds the DATA it draws)") end
            info = string.format("%s alloc=%s token=%s len=%d", name, hex(alloc), hex(held), r.len)
        end
    elseif op == 0x0e or op == 0x0f then
        -- a call's path validation, end to end (never to a relay): HMAC under a session key
        local nonce = r:add(f.nonce, 8, "nonce")
        r:add(f.path_tag, 16, "tag")
        info = nonce and string.format("%s nonce=%s", name, hex(nonce)) or name
    end
    r:trailing("wrong length for " .. name)
    return info
end

-- A storage record (STORE, FOUND): its own subtree; the author's node ID's hex, or nil.
local function record(r, n, label)
    if r:left() < n then
        r:cut(label, n)
        return nil
    end
    local item = r.tree:add(f.record, r.tvb(r.pos, n))
    local sub = reader(r.tvb(r.pos, n):tvb(), item, label)
    r.pos = r.pos + n
    if n > MAX_RECORD then
        sub:expert(e.oversized, string.format("%s of %d bytes: at most %d (a node drops it: "
                                              .. "malformed)", label, n, MAX_RECORD))
    end
    local kind = sub:uint(f.kind, 1, "kind")
    if kind and not RECORD_KINDS[kind] then
        sub:expert(e.unknown, string.format("record kind %d (a storer drops it: bad_kind)", kind))
    end
    local expiry = sub:take(4, "expiry")
    if expiry then
        sub.tree:add(f.expiry, expiry):append_text(" (" .. utc(expiry:uint()) .. ")")
        expiry = expiry:uint()
    end
    local seq = sub:uint(f.sequence, 4, "sequence")
    local spki_len = sub:uint(f.spki_len, 2, "SPKI length")
    if spki_len and (spki_len == 0 or spki_len > MAX_SPKI) then
        sub:expert(e.bad_length, string.format("SPKI length %d: 1 to %d (a node drops it: "
                                               .. "malformed)", spki_len, MAX_SPKI))
    end
    local author = spki_len and spki_len > 0 and sub:identity(spki_len, "author SPKI")
    local body_len = author and sub:uint(f.body_len, 2, "body length")
    if body_len and body_len > 0 then sub:add(f.body, body_len, "body") end
    if body_len and sub.ok then
        local s = sub:left()
        if s == 0 or s > MAX_SIGNATURE then
            sub:expert(e.bad_length, string.format("signature of %d bytes: 1 to %d (a node "
                                                   .. "drops it: malformed)", s, MAX_SIGNATURE))
        end
        if s > 0 then sub:add(f.signature, s, "signature") end
    end
    item:set_text(string.format("%s: %s, author %s, expires %s, %d bytes", label,
                                RECORD_KINDS[kind] or tostring(kind), author or "?",
                                expiry and utc(expiry) or "?", n))
    if not sub.ok then r.ok = false end
    return author, RECORD_KINDS[kind] or tostring(kind)
end

local function storage(r)
    local op = r:uint(f.storage_op, 1, "operation")
    local name = STORAGE_OPS[op]
    if not name then
        if op then
            r:expert(e.unknown, string.format("storage operation 0x%02x (a node drops it: "
                                              .. "malformed)", op))
        end
        return "STORAGE"
    end
    r.name = name
    local key = r:add(f.key, ID_LEN, "key")
    if not key then return name end
    local info = name .. " key=" .. short(hex(key))
    if op == 0x01 then
        local author, kind = record(r, r:left(), "Record")
        if author then info = string.format("%s %s author=%s", info, kind, short(author)) end
    elseif op == 0x02 then
        r:exact(39)
        local vid = r:add(f.value_id, 16, "value ID")
        local status = r:uint(f.status, 1, "status")
        if status and not STORED_STATUS[status] then
            r:expert(e.unknown, string.format("STORED status %d is not in the table (a node "
                                              .. "drops it: malformed)", status))
        end
        if status then
            info = string.format("%s status=%s", info, STORED_STATUS[status] or tostring(status))
        end
    elseif op == 0x03 then
        if r.len < 35 or r.len > MAX_ANSWER then
            r:expert(r.len < 35 and e.truncated or e.oversized, string.format(
                "FIND_VALUE of %d bytes: 35 to %d (a node drops it: malformed)", r.len,
                MAX_ANSWER))
        end
        r:add(f.nonce, 8, "nonce")
        local cursor = r:uint(f.cursor, 2, "cursor")
        if r.ok and r:left() > 0 then r:zero(r:left(), "padding") end
        if cursor then info = string.format("%s cursor=%d size=%d", info, cursor, r.len) end
    elseif op == 0x04 then
        if r.len > MAX_ANSWER then
            r:expert(e.oversized, string.format("FOUND of %d bytes: at most %d (a node drops "
                                                .. "it: malformed)", r.len, MAX_ANSWER))
        end
        r:add(f.nonce, 8, "nonce")
        local total = r:uint(f.total, 2, "total")
        local nxt = r:uint(f.next, 2, "next")
        local count = r:uint(f.count, 1, "count")
        if not count then return info end
        for i = 0, count - 1 do
            local size = r:uint(f.record_len, 2, "record " .. i .. " length")
            if not size then break end
            record(r, size, "Record " .. i)
            if not r.ok then break end
        end
        local contacts = 0
        if r.ok then
            contacts = math.floor(r:left() / CONTACT_LEN)
            for i = 0, contacts - 1 do contact(r, r.tree, i) end
            r:trailing("not a whole contact")
        end
        info = string.format("%s total=%d records=%d next=%s%s", info, total, count,
                             nxt == 0xffff and "none" or tostring(nxt),
                             contacts > 0 and (" contacts=" .. contacts) or "")
    elseif op == 0x05 then
        local epoch = r:take(4, "epoch")
        if epoch then
            r.tree:add(f.epoch, epoch):append_text(" (from " .. utc(epoch:uint() * 86400) .. ")")
            epoch = epoch:uint()
        end
        local count = r:uint(f.count, 1, "count")
        if count and (count == 0 or count > MAX_VIDS) then
            r:expert(e.bad_length, string.format("DELETE of %d value IDs: 1 to %d (a node "
                                                 .. "drops it: malformed)", count, MAX_VIDS))
        end
        for _ = 1, count or 0 do
            if not r:add(f.value_id, 16, "value ID") then break end
        end
        local spki_len = r:uint(f.spki_len, 2, "SPKI length")
        if spki_len and (spki_len == 0 or spki_len > MAX_SPKI) then
            r:expert(e.bad_length, string.format("SPKI length %d: 1 to %d (a node drops it: "
                                                 .. "malformed)", spki_len, MAX_SPKI))
        end
        local who = spki_len and spki_len > 0 and r:identity(spki_len, "recipient SPKI")
        if who then
            local s = r:left()
            if s == 0 or s > MAX_SIGNATURE then
                r:expert(e.bad_length, string.format("signature of %d bytes: 1 to %d (a node "
                                                     .. "drops it: malformed)", s, MAX_SIGNATURE))
            end
            if s > 0 then r:add(f.signature, s, "signature") end
            info = string.format("%s epoch=%d ids=%d recipient=%s", info, epoch, count,
                                 short(who))
        end
    elseif op == 0x06 then
        r:exact(23)
        local removed = r:uint(f.removed, 1, "removed")
        if removed then info = string.format("%s removed=%d", info, removed) end
    end
    r:trailing("wrong length for " .. name)
    return info
end

-- One message (a datagram, or a datagram carried in another): its subtree; the Info text.
local OPS_OF = { [0x06] = TRAVERSAL_OPS, [0x07] = COOKIE_OPS, [0x08] = RELAY_OPS,
                 [0x0a] = STORAGE_OPS }

dissect_message = function(tvb, pinfo, tree, depth)
    local len = tvb:len()
    if len == 0 then
        local item = tree:add(kt, tvb(), "kadtalk: empty datagram")
        item:add_proto_expert_info(e.truncated, "empty datagram (a node drops it: empty)")
        return "empty"
    end
    local kind = tvb(0, 1):uint()
    local type_name = TYPE_NAMES[kind]
    local item = tree:add(kt, tvb())
    item:add(f.type, tvb(0, 1))
    if not type_name then
        item:add_proto_expert_info(e.unknown, string.format(
            "type 0x%02x: no layer takes it (a node drops it: unknown_type)", kind))
        item:set_text(string.format("kadtalk: unknown type 0x%02x, %d bytes", kind, len))
        return string.format("unknown type 0x%02x", kind)
    end
    -- the message's name first, so that a message carried inside this one comes after it
    local ops, name = OPS_OF[kind], type_name
    if ops and len >= 2 then name = ops[tvb(1, 1):uint()] or type_name end
    item:add(f.msg, tvb(0, math.min(len, 2)), name):set_generated()
    item:add(f.layer, tvb(0, 1), LAYER_NAMES[kind]):set_generated()
    item:set_text(string.format("kadtalk %s (%s), %d bytes", name, LAYER_NAMES[kind], len))
    local r = reader(tvb, item, name)
    r.pos = 1
    if (kind <= 0x01 or kind == 0x0b) and len < 41 then
        r:expert(e.truncated, string.format("%s of %d bytes: at least 41 (a node drops it: "
                                            .. "truncated)", type_name, len))
        r.ok = false
    end
    if kind == 0x00 then
        return route_req(r)
    elseif kind == 0x01 then
        return route_res(r)
    elseif kind == 0x0b then
        return route6_res(r)
    elseif kind == 0x02 or kind == 0x03 then
        return key_message(r, type_name)
    elseif kind == 0x04 or kind == 0x05 then
        return stream(r, type_name)
    elseif kind == 0x07 then
        return cookie(r, pinfo, depth)
    elseif kind == 0x06 then
        return traversal(r)
    elseif kind == 0x08 then
        return relay(r, pinfo, depth)
    end
    return storage(r)
end

-- Heuristic: does this datagram's layout check out? ------------------------------------------

local function der_end(tvb, at)
    local len = tvb:len()
    if at + 2 > len or tvb(at, 1):uint() ~= 0x30 then return nil end
    local first = tvb(at + 1, 1):uint()
    local length, header
    if first < 0x80 then
        length, header = first, 2
    elseif first == 0x81 and at + 3 <= len and tvb(at + 2, 1):uint() >= 0x80 then
        length, header = tvb(at + 2, 1):uint(), 3
    elseif first == 0x82 and at + 4 <= len and tvb(at + 2, 2):uint() >= 0x100 then
        length, header = tvb(at + 2, 2):uint(), 4
    else
        return nil
    end
    if header + length > MAX_SPKI or at + header + length > len then return nil end
    return at + header + length
end

-- An identity SPKI of n bytes at `at`: one DER SEQUENCE of exactly n bytes whose algorithm is
-- a key type the protocol allows (section 8), so that its SHA-1 is a node ID.
local function spki_ok(tvb, at, n)
    if n <= 0 or n > MAX_SPKI or der_end(tvb, at) ~= at + n then return false end
    return key_type(hex(tvb(at, math.min(n, 40)))) ~= "unknown"
end

-- KEY_REQ / KEY_RES: the 27 fixed bytes of the secp256r1 ephemeral key, an identity SPKI of an
-- allowed type, a timestamp and a signature of 1 to 1,024 bytes.
local function key_ok(tvb)
    local len = tvb:len()
    if len < 92 or len > MAX_KEY_MESSAGE or hex(tvb(1, 27)) ~= EPHEMERAL_PREFIX then
        return false
    end
    local id_end = der_end(tvb, 92)
    if id_end == nil or not spki_ok(tvb, 92, id_end - 92) then return false end
    local sig = len - (id_end + 8)
    return sig > 0 and sig <= MAX_SIGNATURE
end

local function nonzero_id(tvb, at) return not all_zero(tvb, at, ID_LEN) end

-- IPv4 and port at `at` usable as a peer's address (docs/protocol.md §3 "Limits").
local function addr_ok(tvb, at)
    local ip = tvb(at, 4):uint()
    return unusable(tvb(at, 1):uint(), ip == 0, ip == 0xffffffff, tvb(at + 4, 2):uint()) == nil
end

-- Whether the contact ID at `a` is no farther from the target (bytes 21-40) than that at `b`.
local function not_farther(tvb, a, b)
    for j = 0, ID_LEN - 1 do
        local t = tvb(21 + j, 1):uint()
        local da, db = bxor(tvb(a + j, 1):uint(), t), bxor(tvb(b + j, 1):uint(), t)
        if da ~= db then return da < db end
    end
    return true
end

-- ROUTE_RES contacts as nodes send them (§3): at least one, each at a usable address, the
-- closest to the target first. An answer without contacts has nothing to check beyond its
-- length (a 41-byte uTP ST_DATA packet is one too): left to the port and Decode As.
local function contacts_ok(tvb, n)
    if n < 1 or n > MAX_CONTACTS then return false end
    for i = 0, n - 1 do
        local at = 41 + i * CONTACT_LEN
        if not addr_ok(tvb, at + ID_LEN) then return false end
        if i > 0 and not not_farther(tvb, at - CONTACT_LEN, at) then return false end
    end
    return true
end

-- NAT traversal (§20): the exact size, non-zero node IDs, usable addresses, zeros where zero.
local function traversal_ok(tvb, op)
    local len, size = tvb:len(), TRAVERSAL_SIZES[op]
    if not size then return false end
    local v6 = TRAVERSAL_SIZES6[op] ~= nil and (len == TRAVERSAL_SIZES6[op]
                                                or (op == 0x07 and len == 84))
    if v6 then size = TRAVERSAL_SIZES6[op] end
    if not (len == size or ((op == 0x03 or op == 0x07 or op == 0x0d) and len == size + 16)) then
        return false
    end
    if op == 0x01 then return all_zero(tvb, 10, 6) end
    if op == 0x02 then return addr_ok(tvb, 10) end
    if op == 0x06 then return true end -- PUNCH_COOKIE: a cookie, nothing to check
    if op == 0x09 then return all_zero(tvb, 10, 10) end
    if op == 0x0a then return addr_ok(tvb, 2) end
    if op == 0x0b or op == 0x0c then return true end -- PROBE, PROBE_ACK: a nonce
    if not nonzero_id(tvb, 2) then return false end
    if op == 0x03 or op == 0x07 or op == 0x0d then
        return nonzero_id(tvb, 22) and (op ~= 0x07 or v6 or addr_ok(tvb, 42))
    end
    if op == 0x0e then -- PUNCH6_FWD: an IPv6 address, not unspecified, a port
        return not all_zero(tvb, 22, 16) and tvb(38, 2):uint() ~= 0
    end
    if op == 0x04 or op == 0x08 then
        -- PUNCH_FWD_RELAY for an IPv6 requester names no requester address (six zero bytes)
        return (addr_ok(tvb, 22) or (op == 0x08 and all_zero(tvb, 22, 6)))
            and (op == 0x04 or v6 or addr_ok(tvb, 28))
    end
    return true -- PUNCH: its sender's ID
end

local function strong(yes) return yes, yes end

-- variable-length signed parts: u16 SPKI length at `at`, SPKI, signature (1 to 1,024 bytes)
local function spki_and_signature_ok(tvb, at)
    local len = tvb:len()
    if at + 2 > len then return false end
    local spki_len = tvb(at, 2):uint()
    local sig = len - (at + 2 + spki_len)
    return spki_ok(tvb, at + 2, spki_len) and sig > 0 and sig <= MAX_SIGNATURE
end

local function record_ok(tvb, at, n)
    if n <= 13 or n > MAX_RECORD or at + n > tvb:len() then return false end
    local spki_len = tvb(at + 9, 2):uint()
    local body_at = at + 11 + spki_len + 2
    if body_at > at + n or not spki_ok(tvb, at + 11, spki_len) then return false end
    local sig = at + n - (body_at + tvb(body_at - 2, 2):uint())
    return RECORD_KINDS[tvb(at, 1):uint()] ~= nil and sig > 0 and sig <= MAX_SIGNATURE
end

local function found_ok(tvb)
    local len = tvb:len()
    if len < 35 or len > MAX_ANSWER then return false end
    local at = 35
    for _ = 1, tvb(34, 1):uint() do
        if at + 2 > len then return false end
        local n = tvb(at, 2):uint()
        if at + 2 + n > len then return false end
        at = at + 2 + n
    end
    return (len - at) % CONTACT_LEN == 0
end

-- Whether `tvb` is a kadtalk datagram by its layout alone; a second true when the match is
-- strong enough to take the rest of its conversation as kadtalk too: a KEY message or
-- COOKIE_RETRY (27 fixed bytes, a DER identity key), a signed ALLOCATE, STORE or DELETE, a
-- traversal message but PUNCH_COOKIE, PROBE and PROBE_ACK. Others are claimed alone: ROUTE_REQ and ROUTE_RES have
-- no magic (nanotalk's format), the rest two bytes and a size. MEDIA, SIGNAL and a relay DATA
-- carrying no KEY message or COOKIE (opaque bytes) are claimed only in a conversation so marked.
local function looks_like_kadtalk(tvb)
    local len = tvb:len()
    if len < 2 then return false end
    local kind, op = tvb(0, 1):uint(), tvb(1, 1):uint()
    if kind == 0x00 then
        return len >= 41 and len <= ROUTE_REQ_MAX and nonzero_id(tvb, 1)
            and nonzero_id(tvb, 21) and (len == 41 or all_zero(tvb, 41, len - 41)
                or (len >= 45 and tvb(41, 4):string() == ROUTE6_MARKER
                    and (all_zero(tvb, 45, len - 45)
                         or (len >= 64 and tvb(45, 1):uint() == 0x06  -- announcing (§23)
                             and all_zero(tvb, 64, len - 64)))))
    elseif kind == 0x01 then
        return len > 41 and (len - 41) % CONTACT_LEN == 0 and nonzero_id(tvb, 1)
            and contacts_ok(tvb, (len - 41) / CONTACT_LEN)
    elseif kind == 0x0b then
        if len < 41 or len > ROUTE6_MAX or not nonzero_id(tvb, 1) then return false end
        local at, n = 41, 0
        while at < len do
            if n == MAX_CONTACTS or at + ID_LEN + 1 > len then return false end
            local size = FAMILY_LEN[tvb(at + ID_LEN, 1):uint()]
            if not size then return false end
            at, n = at + ID_LEN + 1 + size + 2, n + 1
        end
        return at == len
    elseif kind == 0x02 or kind == 0x03 then
        return strong(key_ok(tvb))
    elseif kind == 0x06 then
        local yes = traversal_ok(tvb, op)
        return yes, yes and op ~= 0x06 and op ~= 0x0b and op ~= 0x0c
    elseif kind == 0x07 then
        if op == 0x01 then return len == 34 end
        return strong(op == 0x02 and len > 18 and tvb(18, 1):uint() == 0x02
                      and key_ok(tvb(18):tvb()))
    elseif kind == 0x08 then
        if op == 0x03 then
            return strong(len >= 38 and len <= MAX_ALLOCATE and spki_and_signature_ok(tvb, 36))
        end
        if op == 0x0a then -- DATA: only when it carries a KEY message or COOKIE that checks out
            if len < 11 or len > 10 + MAX_PACKET then return false end
            local inner = tvb(10):tvb()
            local k = inner(0, 1):uint()
            if k == 0x02 or k == 0x03 or k == 0x07 then return looks_like_kadtalk(inner) end
            return false
        end
        if op == 0x10 or op == 0x11 then  -- HOLD, CLAIM: their layout
            return len >= 18 and len <= 18 + MAX_PACKET
        end
        if RELAY_SIZES[op] ~= len and RELAY_SIZES6[op] ~= len
            and not (op == 0x04 and len == ALLOCATED_OTHER)
            and not (op == 0x0b and (len == KNOCK_TOKEN or len == KNOCK6_TOKEN)) then
            return false
        end
        if op == 0x01 then -- HELLO: flags 0 or WANT_OTHER (1), then zeros
            return tvb(18, 1):uint() <= 1 and all_zero(tvb, 19, 15)
        end
        if op == 0x09 then return RELAY_ERRORS[tvb(3, 1):uint()] ~= nil end
        return true
    elseif kind == 0x0a then
        if op == 0x01 then return strong(len > 22 and record_ok(tvb, 22, len - 22)) end
        if op == 0x02 then return len == 39 and STORED_STATUS[tvb(38, 1):uint()] ~= nil end
        if op == 0x03 then
            return len >= 35 and len <= MAX_ANSWER and all_zero(tvb, 32, len - 32)
        end
        if op == 0x04 then return found_ok(tvb) end
        if op == 0x05 then
            if len < 29 then return false end
            local count = tvb(26, 1):uint()
            return strong(count > 0 and count <= MAX_VIDS
                          and spki_and_signature_ok(tvb, 27 + 16 * count))
        end
        return op == 0x06 and len == 23
    end
    return false
end

-- Entry points --------------------------------------------------------------------------------

function kt.dissector(tvb, pinfo, tree)
    pinfo.cols.protocol = "kadtalk"
    local ok, info = pcall(dissect_message, tvb, pinfo, tree, 0)
    if tvb:reported_len() > tvb:len() then -- what is missing was not captured, not sent short
        tree:add_proto_expert_info(e.snapped, string.format(
            "the capture holds %d of this datagram's %d bytes (snapshot length): "
            .. "what looks cut short here may not be", tvb:len(), tvb:reported_len()))
    end
    if not ok then -- a bug here must not hide the packet: say so, keep going
        local item = tree:add(kt, tvb())
        item:add_proto_expert_info(e.internal, "kadtalk.lua: " .. tostring(info))
        info = "dissector error"
    end
    pinfo.cols.info = info
    return tvb:len()
end

local function heuristic(tvb, pinfo, tree)
    local ok, yes, sure = pcall(looks_like_kadtalk, tvb)
    if not (ok and yes) then return false end
    if sure then -- the rest of this address pair is kadtalk too (MEDIA, SIGNAL, relay DATA)
        pinfo.conversation = kt
    end
    kt.dissector(tvb, pinfo, tree)
    return true
end

local udp_port = DissectorTable.get("udp.port")
local current_port = DEFAULT_PORT
udp_port:add(current_port, kt)
kt:register_heuristic("udp", heuristic)

function kt.prefs_changed()
    if kt.prefs.port ~= current_port then
        if current_port ~= 0 then udp_port:remove(current_port, kt) end
        current_port = kt.prefs.port
        if current_port ~= 0 then udp_port:add(current_port, kt) end
    end
end
