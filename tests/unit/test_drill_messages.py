"""The drills' hints (`podpath drill start` and `check`): each names the hop that broke (a
node or a namespace, and a table, a chain or a link there), never the fix.

"The fix's words" are, per fault, its `answer`: words that `drill reveal` says (its title and
the commands that find the fault). These tests hold the list to the title, so that a new word
of an answer cannot be left out, and every hint to the list. kube-proxy's faults are held to
it in both of kube-proxy's modes (the topology's kube_proxy.mode), as `drill reveal` tells
them in each."""
from __future__ import annotations

import re

import pytest

from podpath.evidence import faults
from podpath.evidence.lab import Result
from podpath.evidence.probe import NetnsLab
from podpath.model import plan as plan_mod
from podpath.model import topology as topology_mod

TOPOLOGY = topology_mod.load()
PLAN = plan_mod.build(TOPOLOGY, "stu1")
NFT_TOPOLOGY = {**TOPOLOGY, "kube_proxy": {"mode": "nftables"}}
PLANS = {"iptables": PLAN, "nftables": plan_mod.build(NFT_TOPOLOGY, "stu1")}
TOPOLOGIES = {"iptables": TOPOLOGY, "nftables": NFT_TOPOLOGY}
NAMES = sorted(faults.CATALOGUE)
MODES = ("iptables", "nftables")
# Words of a title that say where (the places a hint must be free to name) or say nothing.
PLACE = {"node", "node's", "pod", "pod's", "service", "endpoints", "chain", "kube-sep", "kube-postrouting",
         "kube-proxy's", "ingress", "controller", "leader", "lease", "announcing", "arp", "eth0", "eth1", "cni0",
         "veth", "bridge", "port", "ip", "namespace", "/var/run/netns", "packets", "kube-proxy", "endpoint-*",
         "masquerading", "table"}
FILLER = {"a", "an", "the", "of", "to", "its", "is", "no", "on", "from", "another", "own", "more", "was",
          "without", "in", "has", "and"}
# A hop: a table, a chain, a link, the announcement, the lease, the namespaces' folder.
HOP = re.compile(r"\b(nat|filter) table\b|\bKUBE-[A-Z0-9-]+|\bcni0\b|\beth[01]\b|\blan0\b|\bveth[0-9a-f]{8}\b"
                 r"|\bARP\b|\bleader lease\b|/var/run/netns|\btable ip kube-proxy\b")
# What a fault's commands change, which its hint must name: a chain, a link, a map or set.
CHANGED = re.compile(r"\bKUBE-[A-Z0-9-]+|\bveth[0-9a-f]{8}\b|\bendpoint-\S+|\bmasquerading\b|\bno-endpoint-services\b"
                     r"|\bcluster-ips\b")



def words(text: str) -> list[str]:
    return [w.strip("():,;'\"").lower() for w in text.split() if w.strip("():,;'\"")]


def hint_text(name: str, plan: plan_mod.Plan = PLAN, announcer: str | None = "worker1") -> str:
    hint = faults.CATALOGUE[name].hint(plan, announcer)
    return f"{hint.fails}\n{hint.hop}"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", NAMES)
def test_each_answer_word_is_what_reveal_says(name, mode):
    fault = faults.CATALOGUE[name].in_mode(mode)
    revealed = words(fault.title + " " + " ".join(fault.finds_it))
    assert fault.answer, f"{name}: no answer words"
    stray = [a for a in fault.answer if not any(w.startswith(a) for w in revealed)]
    assert not stray, f"{name}: {stray} are not words of its title or of the commands that find it"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", NAMES)
def test_the_answer_holds_every_word_of_the_title_that_is_not_a_place(name, mode):
    fault = faults.CATALOGUE[name].in_mode(mode)
    left = [w for w in words(fault.title) if w not in PLACE | FILLER
            and not any(w.startswith(a) for a in fault.answer)]
    assert not left, f"{name}: the title's words {left} say what is wrong: add them to its answer"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", NAMES)
def test_no_hint_uses_the_words_of_its_answer(name, mode):
    text = hint_text(name, PLANS[mode])
    fault = faults.CATALOGUE[name].in_mode(mode)
    used = sorted({w for w in words(text) for a in fault.answer if w.startswith(a)})
    assert not used, f"{name}: the hint gives the answer away with {used}:\n{text}"
    assert fault.title.lower() not in text.lower()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", NAMES)
def test_every_hint_names_a_node_or_namespace_and_a_hop(name, mode):
    text = hint_text(name, PLANS[mode])
    places = {n.name for n in PLAN.nodes} | set(PLAN.netns_names)
    assert any(re.search(rf"(?<![\w-]){re.escape(p)}(?![\w-])", text) for p in places), (
        f"{name}: the hint names no node and no namespace of the lab:\n{text}")
    assert HOP.search(text), f"{name}: the hint names no table, chain, link or hop:\n{text}"


def test_the_arp_hint_names_the_node_that_announces():
    for node in PLAN.nodes:
        assert f"node {node.name} (netns {node.netns})" in hint_text("arp", announcer=node.name)


def test_hints_follow_the_lab_they_are_given():
    other = plan_mod.build(TOPOLOGY, "stu2")
    for name in NAMES:
        assert "stu1-" not in hint_text(name, other), f"{name}: the hint names another lab's namespaces"


class Recorder:
    """Stands for the lab's namespaces: records what a fault runs where, answers iptables-save
    with the rule the REJECT fault looks for."""

    def __init__(self, plan: plan_mod.Plan):
        self.plan = plan
        self.calls: list[tuple[str | None, list[str]]] = []

    def __call__(self, argv: list[str]) -> Result:
        netns = argv[1].removeprefix("--net=/run/netns/") if argv[0] == "nsenter" else None
        cmd = argv[3:] if netns else argv
        self.calls.append((netns, cmd))
        if cmd[:1] == ["iptables-save"]:
            empty = self.plan.empty_service
            return Result(0, f"*filter\n-A KUBE-SERVICES -d {empty.cluster_ip}/32 -p tcp -m comment --comment "
                             f'"{empty.namespace}/{empty.name}:http has no endpoints" -j REJECT\nCOMMIT\n', "")
        return Result(0, "", "")


# The faults that only run commands in the lab's namespaces (the others signal processes or
# unmount files, which a recorder cannot stand in for; test_verifier runs them on a lab).
COMMAND_FAULTS = ["route", "forwarding", "sep-rule", "reject-rule", "masquerade", "bridge-port", "hairpin",
                  "pod-address", "pod-link"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", COMMAND_FAULTS)
def test_the_hint_names_where_the_fault_breaks_the_lab(name, mode):
    recorder = Recorder(PLANS[mode])
    faults.CATALOGUE[name].apply(NetnsLab(PLAN.lab, TOPOLOGIES[mode], run=recorder))
    changed = [(ns, cmd) for ns, cmd in recorder.calls if cmd[:1] != ["iptables-save"]]
    assert changed, f"{name} ran nothing"
    text = hint_text(name, PLANS[mode])
    for netns, cmd in changed:
        assert netns in text, f"{name} breaks {netns} ({' '.join(cmd)}), which its hint does not name:\n{text}"
        things = CHANGED.findall(" ".join(cmd))
        if name == "reject-rule" and mode == "nftables":
            things = []  # the map and the set are the answer; the hint names the hooks that look them up
        for thing in things:
            assert thing in text, f"{name} changes {thing}, which its hint does not name:\n{text}"


KUBE_PROXY_FAULTS = ["sep-rule", "reject-rule", "masquerade"]


@pytest.mark.parametrize("name", KUBE_PROXY_FAULTS)
def test_kube_proxys_faults_break_the_rules_of_the_labs_own_mode(name):
    """In nftables mode a kube-proxy fault changes the table ip kube-proxy with nft, and no
    iptables rule (there are none); in iptables mode, the reverse."""
    for mode, tool, other in (("iptables", "iptables", "nft"), ("nftables", "nft", "iptables")):
        recorder = Recorder(PLANS[mode])
        faults.CATALOGUE[name].apply(NetnsLab(PLAN.lab, TOPOLOGIES[mode], run=recorder))
        tools = {cmd[0] for _, cmd in recorder.calls if cmd[:1] != ["iptables-save"]}
        assert tools == {tool}, f"{name} in {mode} mode ran {sorted(tools)}, not {tool} alone"
        if mode == "nftables":
            assert all(cmd[3:5] == ["ip", "kube-proxy"] for _, cmd in recorder.calls), recorder.calls
    assert faults.CATALOGUE[name].in_mode("nftables").title != faults.CATALOGUE[name].title
    assert faults.CATALOGUE[name].in_mode("iptables") is faults.CATALOGUE[name]
