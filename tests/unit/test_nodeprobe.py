"""The netns lab's probe (podpath/evidence/nodeprobe.py): its request on the command line and
the ICMP echo request it sends, without a lab."""
import struct

from podpath.evidence import nodeprobe


def test_a_request_comes_back_as_it_was_sent():
    request = {"op": "node", "lab": "stu01", "node": "cp1", "topology": {"nodes": [{"name": "cp1"}] * 50},
               "ping": True, "forget": None}
    text = nodeprobe.encode(request)
    assert text.isascii() and " " not in text and "'" not in text  # one shell word, no quoting needed
    assert nodeprobe.decode(text) == request


def test_the_echo_request_is_an_icmp_echo_whose_checksum_verifies():
    packet = nodeprobe._echo(0x1234, 2)
    kind, code, _checksum, ident, seq = struct.unpack_from("!BBHHH", packet)
    assert (kind, code, ident, seq) == (8, 0, 0x1234, 2)
    assert nodeprobe._checksum(packet) == 0  # the sum over a packet with its checksum in place
    assert nodeprobe._checksum(packet[:-1] + bytes([packet[-1] ^ 1])) != 0


def test_an_unknown_op_is_refused_by_name(capsys):
    assert nodeprobe.main(["nodeprobe", nodeprobe.encode({"op": "nodes"})]) == 2
    assert "unknown op 'nodes'" in capsys.readouterr().err
