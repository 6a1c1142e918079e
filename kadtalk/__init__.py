"""kadtalk: serverless encrypted voice calls over Kademlia, and a simulator for studying it."""

__version__ = "0.1.0"
