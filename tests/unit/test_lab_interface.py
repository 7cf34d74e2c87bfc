"""The verifier's lab interface (podpath/evidence/lab.py): both adapters answer every
question, and the pod runtime's namespace model is the one each lab really has."""
from __future__ import annotations

import pytest

from podpath.evidence import lab as lab_mod
from podpath.evidence.cluster import ClusterLab
from podpath.evidence.probe import NetnsLab


@pytest.mark.parametrize("adapter", [NetnsLab, ClusterLab], ids=["netns", "cluster"])
def test_every_adapter_answers_every_question(adapter):
    questions = [n for n in dir(lab_mod.Lab) if not n.startswith("_")]
    missing = [n for n in questions if not hasattr(adapter, n) and n != "name"]
    assert not missing, f"{adapter.__name__} lacks {missing}"


@pytest.mark.parametrize("kind", ["net", "ipc", "uts"])
def test_containerd_joins_every_container_to_the_sandbox_network_ipc_and_uts(kind):
    assert lab_mod.CONTAINERD.expectation(kind) == "shared"


def test_containerd_gives_each_container_its_mount_and_pid_namespaces_unless_the_pod_shares_pid():
    assert lab_mod.CONTAINERD.expectation("mnt") == "own"
    assert lab_mod.CONTAINERD.expectation("pid") == "own"
    assert lab_mod.CONTAINERD.expectation("pid", share_process_namespace=True) == "shared"
    assert lab_mod.CONTAINERD.expectation("mnt", share_process_namespace=True) == "own"


def test_the_netns_lab_makes_its_pods_as_containerd_does():
    # library/podpath_containers.py joins the holder's network, IPC and UTS namespaces and
    # unshares mount and, unless the pod shares its holder's, PID; the verifier's scenario 3
    # checks it on a running lab
    model = lab_mod.NETNS_LAB
    for share in (False, True):
        assert {k: model.expectation(k, share) for k in lab_mod.NAMESPACE_KINDS} == \
            {k: lab_mod.CONTAINERD.expectation(k, share) for k in lab_mod.NAMESPACE_KINDS}
    assert model.expectation("uts") == "shared" and model.expectation("pid", share_process_namespace=True) == "shared"
    assert model.sandbox_process == "podpath-pause"


def test_each_model_names_every_kind_once():
    for model in (lab_mod.CONTAINERD, lab_mod.NETNS_LAB):
        assert model.shared | model.own == set(lab_mod.NAMESPACE_KINDS) and not model.shared & model.own


def test_an_unknown_namespace_kind_is_refused_by_name():
    with pytest.raises(ValueError, match="'time' is not one of net, ipc, uts, mnt, pid"):
        lab_mod.CONTAINERD.expectation("time")
