"""MetalLB's layer 2 election, computed by the verifier on its own (not podpath.runtime.speaker's)."""
import hashlib


def elected(nodes, address):
    """The node that should announce ADDRESS: first of NODES by sha256("node#address")."""
    return min(nodes, key=lambda n: hashlib.sha256(f"{n}#{address}".encode()).hexdigest())
