"""The modules' argument specs coerce and refuse what their documentation promises.

Every suboption the DOCUMENTATION declares is in the ARGUMENT_SPEC, so Ansible itself turns
the strings YAML and templating give ("no", "false", "8080") into the documented types,
refuses misspelt keys and missing required ones, and the modules' own checks keep only
what a spec cannot say. Each case runs twice: through Ansible's ModuleArgumentSpecValidator
(what AnsibleModule does on the managed host) and through the in-process path of
podpath.play.inprocess.run(), which must give the same answer.

The in-process runs of podpath_netns and podpath_containers that get past the spec run in
check mode, with a lab and namespace names that do not exist: they read the system and
change nothing.
"""
from __future__ import annotations

import copy
import os
import secrets

import pytest
from ansible.module_utils.common.arg_spec import ModuleArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError

from podpath.model.labdir import lab_dir
from podpath.play import inprocess

NETNS = inprocess.load_library("podpath_netns")
CONTAINERS = inprocess.load_library("podpath_containers")
IPTABLES = inprocess.load_library("podpath_iptables")
LIBRARIES = {"podpath_netns": NETNS, "podpath_containers": CONTAINERS, "podpath_iptables": IPTABLES}

UNIT_FILE = f"{lab_dir('unit')}/f"  # a file name for the messages; nothing is written there
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the modules refuse to run (even in check mode) "
                                                          "without root: run the unit tests as root")


def validate(module: str, args: dict):
    """Ansible's own validation of ARGS against MODULE's ARGUMENT_SPEC."""
    return ModuleArgumentSpecValidator(LIBRARIES[module].ARGUMENT_SPEC).validate(copy.deepcopy(args))


def fresh_lab() -> str:
    """A lab name no test and no lab on this host uses: nothing is found, nothing is owned."""
    return "u" + secrets.token_hex(4)


def pod(lab: str, **namespace) -> list[dict]:
    """A node with a bridge and one pod whose veth's host end is a port of it."""
    peer = {"name": f"{lab}h", "namespace": f"{lab}-node", "master": "cni0"}
    peer.update(namespace.pop("peer", {}))
    return [
        {"name": f"{lab}-node", "links": [{"name": "cni0", "kind": "bridge", "addresses": ["10.251.0.1/24"]}]},
        dict({"name": f"{lab}-pod", "links": [{"name": "eth0", "addresses": ["10.251.0.2/24"], "peer": peer}]},
             **namespace),
    ]


# -- what the spec turns into the documented type ---------------------------------------
def _pod_peer(params):
    return params["namespaces"][1]["links"][0]["peer"]


NETNS_COERCED = [
    # (id, changes to the pod's namespace, where to look in the validated params, expected value)
    ("holder-no", {"holder": "no"}, lambda p: p["namespaces"][1]["holder"], False),
    ("holder-yes", {"holder": "yes"}, lambda p: p["namespaces"][1]["holder"], True),
    ("holder-omitted", {}, lambda p: p["namespaces"][1]["holder"], False),
    ("hairpin-false-string", {"peer": {"hairpin": "false"}}, lambda p: _pod_peer(p)["hairpin"], False),
    ("hairpin-true-string", {"peer": {"hairpin": "true"}}, lambda p: _pod_peer(p)["hairpin"], True),
    ("hairpin-omitted-is-left-alone", {}, lambda p: _pod_peer(p)["hairpin"], None),
    ("one-address-as-a-string", {"peer": {"addresses": "10.251.0.9/24"}}, lambda p: _pod_peer(p)["addresses"],
     ["10.251.0.9/24"]),
    ("route-dst-omitted-is-default", {"routes": [{"gateway": "10.251.0.1"}]},
     lambda p: p["namespaces"][1]["routes"][0]["dst"], "default"),
]


@pytest.mark.parametrize("change, where, expected", [pytest.param(c, w, e, id=i) for i, c, w, e in NETNS_COERCED])
def test_the_netns_spec_gives_the_documented_types(change, where, expected):
    result = validate("podpath_netns", {"lab": "unit", "namespaces": pod("unit", **change)})
    assert result.error_messages == []
    assert where(result.validated_parameters) == expected


CONTAINERS_COERCED = [
    ("listen-port-as-a-string", {"listen": ["8080"]}, "listen", [8080]),
    ("isolate-yes", {"isolate": "yes"}, "isolate", True),
    ("isolate-omitted", {}, "isolate", False),
    ("restart-files-omitted", {}, "files", []),
]


@pytest.mark.parametrize("change, key, expected", [pytest.param(c, k, e, id=i) for i, c, k, e in CONTAINERS_COERCED])
def test_the_containers_spec_gives_the_documented_types(change, key, expected):
    container = dict({"name": "echo-1/echo", "netns": "n", "argv": ["sleep", "1d"]}, **change)
    result = validate("podpath_containers", {"lab": "unit", "containers": [container]})
    assert result.error_messages == []
    assert result.validated_parameters["containers"][0][key] == expected


def test_a_file_without_mode_gets_0644_and_a_yaml_octal_mode_stays_a_number():
    files = [{"path": f"{lab_dir('unit')}/a", "content": "x"}, {"path": f"{lab_dir('unit')}/b", "content": "x",
                                                              "mode": 0o644}]
    result = validate("podpath_containers", {"lab": "unit", "files": files})
    assert result.error_messages == []
    assert [f["mode"] for f in result.validated_parameters["files"]] == ["0644", 420]


# -- what the spec refuses, with Ansible's message ---------------------------------------
def _netns(**change):
    def args(lab):
        spec = pod(lab)
        spec[1].update(change)
        return {"lab": lab, "namespaces": spec}
    return args


def _netns_link(**change):
    def args(lab):
        spec = pod(lab)
        spec[1]["links"][0].update(change)
        return {"lab": lab, "namespaces": spec}
    return args


def _netns_peer(**change):
    def args(lab):
        return {"lab": lab, "namespaces": pod(lab, peer=change)}
    return args


def _containers(**container):
    def args(lab):
        return {"lab": lab, "containers": [dict({"name": "c", "netns": "n", "argv": ["sleep", "1d"]}, **container)]}
    return args


def _files(**entry):
    def args(lab):
        return {"lab": lab, "files": [dict({"path": f"{lab_dir(lab)}/f", "content": "x"}, **entry)]}
    return args


REFUSED = [
    # (id, module, arguments for a lab, words the message must contain)
    ("misspelt-namespace-key", "podpath_netns", _netns(holdr=True),
     "Unsupported parameters for (podpath_netns) module: namespaces.holdr"),
    ("misspelt-link-key", "podpath_netns", _netns_link(hairpn=True),
     "Unsupported parameters for (podpath_netns) module: namespaces.links.hairpn"),
    ("misspelt-peer-key", "podpath_netns", _netns_peer(namspace="x"),
     "Unsupported parameters for (podpath_netns) module: namespaces.links.peer.namspace"),
    ("holder-not-a-boolean", "podpath_netns", _netns(holder="sometimes"), "holder"),
    ("hairpin-not-a-boolean", "podpath_netns", _netns_peer(hairpin="maybe"), "hairpin"),
    ("kind-not-a-choice", "podpath_netns", _netns_link(kind="macvlan"),
     "value of kind must be one of: bridge, veth, vxlan, got: macvlan"),
    ("namespace-without-name", "podpath_netns", lambda lab: {"lab": lab, "namespaces": [{"holder": True}]},
     "missing required arguments: name found in namespaces"),
    ("namespaces-not-mappings", "podpath_netns", lambda lab: {"lab": lab, "namespaces": ["node1"]},
     "Elements value for option 'namespaces' is of type str and we were unable to convert to dict"),
    ("links-not-mappings", "podpath_netns", _netns(links=["cni0"]),
     "Elements value for option 'links' found in 'namespaces' is of type str"),
    ("route-without-gateway", "podpath_netns", _netns(routes=[{"dst": "default"}]),
     "missing required arguments: gateway found in namespaces -> routes"),
    ("file-without-content", "podpath_containers", lambda lab: {"lab": lab, "files": [{"path": f"{lab_dir(lab)}/f"}]},
     "missing required arguments: content found in files"),
    ("misspelt-file-key", "podpath_containers", _files(contents="x"),
     "Unsupported parameters for (podpath_containers) module: files.contents"),
    ("container-without-argv", "podpath_containers",
     lambda lab: {"lab": lab, "containers": [{"name": "c", "netns": "n"}]},
     "missing required arguments: argv found in containers"),
    ("listen-not-a-port-number", "podpath_containers", _containers(listen=["http"]),
     "Elements value for option 'listen' found in 'containers' is of type str and we were unable to convert to int"),
    ("rules-not-a-mapping", "podpath_iptables", lambda lab: {"lab": lab, "rules": ["COMMIT"]}, "rules"),
    ("mode-not-a-choice", "podpath_iptables", lambda lab: {"lab": lab, "mode": "ipvs", "rules": {}},
     "value of mode must be one of: iptables, nftables, got: ipvs"),
]


def ansible_module_message(module: str, result) -> str:
    """The msg AnsibleModule fails with for these validation RESULTs: the first error's."""
    if isinstance(result.errors[0], UnsupportedError):
        return "Unsupported parameters for (%s) module: %s" % (module, result.errors.msg)
    return result.errors.msg


@pytest.mark.parametrize("module, args, words", [pytest.param(m, a, w, id=i) for i, m, a, w in REFUSED])
def test_ansible_refuses_what_the_spec_does_not_allow(module, args, words):
    result = validate(module, args("unit"))
    assert result.error_messages, "the spec accepted it"
    messages = [ansible_module_message(module, result)] + result.error_messages
    assert any(words in message for message in messages), messages


@pytest.mark.parametrize("module, args", [pytest.param(m, a, id=i) for i, m, a, _words in REFUSED])
def test_the_in_process_run_refuses_the_same_before_the_module_runs(module, args, monkeypatch):
    ran = []
    monkeypatch.setattr(LIBRARIES[module], "run_module", ran.append)
    result = inprocess.run(LIBRARIES[module], module, args("unit"))
    assert result.get("failed") is True, result
    assert result["msg"] == ansible_module_message(module, validate(module, args("unit")))
    assert ran == []


# -- the coerced values reach the module: check-mode runs in-process -------------------------
@needs_root
@pytest.mark.parametrize("holder, started", [("no", False), ("false", False), ("yes", True), (True, True)])
def test_a_holder_given_as_a_string_is_what_it_says(holder, started):
    lab = fresh_lab()
    result = inprocess.run(NETNS, "podpath_netns", {"lab": lab, "namespaces": pod(lab, holder=holder)},
                           check_mode=True)
    assert not result.get("failed"), result.get("msg")
    assert (f"{lab}-pod: start holder" in result["changes"]) is started, result["changes"]


@needs_root
@pytest.mark.parametrize("hairpin, line", [("false", None), ("off", None), ("true", "set hairpin on on"),
                                           (True, "set hairpin on on")])
def test_a_hairpin_given_as_a_string_is_what_it_says(hairpin, line):
    lab = fresh_lab()
    result = inprocess.run(NETNS, "podpath_netns", {"lab": lab, "namespaces": pod(lab, peer={"hairpin": hairpin})},
                           check_mode=True)
    assert not result.get("failed"), result.get("msg")
    hairpins = [change for change in result["changes"] if "hairpin" in change]
    assert hairpins == ([f"{lab}-node: {line} {lab}h"] if line else []), result["changes"]


# -- what only the module can say, before it changes anything -------------------------------
@pytest.mark.parametrize("value, bits", [
    pytest.param("0644", 0o644, id="string-0644"),
    pytest.param("644", 0o644, id="string-644"),
    pytest.param("0755", 0o755, id="string-0755"),
    pytest.param("0600", 0o600, id="string-0600"),
    pytest.param(420, 0o644, id="yaml-unquoted-0644-is-420"),
    pytest.param(0o755, 0o755, id="yaml-unquoted-0755"),
])
def test_a_file_mode_is_octal_digits_or_the_number_yaml_made_of_them(value, bits):
    assert CONTAINERS.file_mode(value, UNIT_FILE) == (bits, "")


@pytest.mark.parametrize("value, words", [
    pytest.param(644, "644 (a number: octal 1204)", id="number-644-without-its-zero"),
    pytest.param(755, "755 (a number: octal 1363)", id="number-755-without-its-zero"),
    pytest.param("0666", f"'0666' of file {UNIT_FILE} allows more than 0o755", id="writable-by-others"),
    pytest.param("4755", "allows more than 0o755", id="setuid"),
    pytest.param("rw-r--r--", "is not a string of octal digits", id="symbolic"),
    pytest.param("0o644", "is not a string of octal digits", id="python-octal-prefix"),
    pytest.param("0648", "is not a string of octal digits", id="not-octal"),
    pytest.param(True, "is not a mode", id="boolean"),
    pytest.param(6.44, "is not a mode", id="float"),
])
def test_a_file_mode_that_is_not_a_mode_the_lab_writes_is_refused(value, words):
    bits, error = CONTAINERS.file_mode(value, UNIT_FILE)
    assert bits is None and words in error and "'0644'" in error, error


@pytest.mark.parametrize("container, words", [
    pytest.param({"argv": ["nginx -g daemon off;"]}, "argv of container c is the string 'nginx -g daemon off;'",
                 id="argv-a-shell-string"),
    pytest.param({"argv": []}, "container 'c' has an empty argv", id="argv-empty"),
    pytest.param({"netns": ""}, "container 'c' has an empty netns", id="netns-empty"),
])
def test_a_container_the_spec_lets_through_but_cannot_run_is_refused(container, words):
    entry = dict({"name": "c", "netns": "n", "argv": ["sleep", "1d"], "isolate": False, "files": [], "listen": []},
                 **container)
    assert words in CONTAINERS.container_error(entry)


@pytest.mark.parametrize("argv", [["sleep"], ["sleep", "1d"], ["nginx", "-g", "daemon off;"]])
def test_a_list_of_words_is_a_command(argv):
    entry = {"name": "c", "netns": "n", "argv": argv, "isolate": False, "files": [], "listen": []}
    assert CONTAINERS.container_error(entry) == ""


@needs_root
@pytest.mark.parametrize("args, words", [
    pytest.param(_containers(argv="sleep 1d"), "is the string 'sleep 1d'", id="string-argv"),
    pytest.param(_files(mode=644), "644 (a number: octal 1204)", id="mode-644-as-a-number"),
    pytest.param(_files(mode="0777"), "allows more than 0o755", id="mode-0777"),
])
def test_the_containers_module_refuses_them_in_check_mode_too(args, words):
    lab = fresh_lab()
    result = inprocess.run(CONTAINERS, "podpath_containers", args(lab), check_mode=True)
    assert result.get("failed") is True and words in result["msg"], result
    assert not os.path.exists(lab_dir(lab)), "a refused call wrote something"


@needs_root
def test_a_yaml_octal_mode_is_the_mode_it_stands_for():
    lab = fresh_lab()
    result = inprocess.run(CONTAINERS, "podpath_containers", _files(mode=420)(lab), check_mode=True)
    assert not result.get("failed"), result.get("msg")
    assert result["files_changed"] == [f"{lab_dir(lab)}/f"]
    assert not os.path.exists(lab_dir(lab)), "check mode wrote something"
