"""The calling service: a daemon that holds the node, its UDP socket and the audio devices; its
control protocol over a Unix socket (docs/control.md); the command-line client; the web GUI.

A user of the node, not part of the protocol: `daemon` (Daemon, run_daemon), `config` (XDG
paths, config.toml, contacts, saved peers), `audio` (devices and the per-call media pipeline),
`protocol` (line framing), `client` (ControlClient), `web` (page + websocket bridge), `cli`.
"""
