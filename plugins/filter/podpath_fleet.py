# -*- coding: utf-8 -*-
# Copyright: podpath contributors
# Apache License 2.0 (see LICENSE)
"""The netns labs of a fleet: which labs each host of the inventory runs (docs/classroom.md).

Runs in ansible-playbook on Ansible's control node. A host's labs come from, first match:

1. ``-e podpath_lab=NAME``: lab NAME on every host of the play (what ``podpath up`` passes);
2. the host's ``podpath_labs`` (a host or group variable): a list of lab names;
3. a roster (``podpath_roster``: the path of a CSV file of students and their labs), spread
   over the hosts that have ``podpath_capacity`` (how many labs the host takes);
4. the inventory's ``podpath_lab`` (inventory/group_vars/all/lab.yml: ``podpath``): one lab;
5. none: the host is left as it is.

The roster is spread deterministically: hosts in natural order of their names (pc2 before
pc10), each student in roster order to the host that is least full for its capacity, ties to
the first host. The same roster and hosts always give the same spread; a student added at the
end of the roster moves nobody; ``--limit`` does not change it (every host of the inventory
with a capacity counts, whether the play runs on it or not).

Bad input raises an error that names the value and the fix, before any host is changed.
"""
from __future__ import annotations

import csv
import io
import os
import re

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover - the unit tests import this file without Ansible's errors in the way
    AnsibleFilterError = ValueError

# The same rule as module_utils/podpath_lab.py (check_lab_name), which this file cannot import
# when Ansible loads it; tests/unit/test_fleet_labs.py checks the two agree.
LAB_NAME = re.compile(r"^[a-z][a-z0-9]{0,9}$")
LAB_NAME_RULE = "1 to 10 characters, lower-case letters and digits, starting with a letter"
ROSTER_HEADER = ["student", "lab"]
LOCAL_CONNECTIONS = ("local", "ansible.builtin.local")


class FleetError(AnsibleFilterError):
    """Bad fleet input: the message names the value and the fix."""


def _natural(name: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(name))]


def check_lab(lab, where: str) -> str:
    if not isinstance(lab, str) or not LAB_NAME.match(lab):
        raise FleetError(f"{where}: lab name {lab!r} is not valid: use {LAB_NAME_RULE} (for example 'student07')")
    return lab


def read_roster(path: str) -> list[tuple[str, str]]:
    """[(student, lab)] of the roster CSV at PATH, checked: a header line `student,lab`, one
    student a line, each lab a valid and unique name; empty lines and lines starting with #
    are skipped."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except OSError as exc:
        raise FleetError(f"podpath_roster: cannot read {path!r} ({exc.strerror}): give the path of a CSV file "
                         f"whose first line is 'student,lab' (a relative path is read from the folder "
                         f"ansible-playbook runs in, currently {os.getcwd()})") from None
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise FleetError(f"podpath_roster {path}: the file has no students: write the line 'student,lab', "
                         "then one line per student, such as 'Ada Lovelace,student01'")
    rows = list(csv.reader(io.StringIO("\n".join(line for _, line in lines))))
    header = [cell.strip().lower() for cell in rows[0]]
    if header != ROSTER_HEADER:
        raise FleetError(f"podpath_roster {path}, line {lines[0][0]}: the first line is {lines[0][1]!r}, not "
                         "'student,lab': start the file with that header line")
    roster: list[tuple[str, str]] = []
    students: dict[str, int] = {}
    labs: dict[str, int] = {}
    for (number, line), row in zip(lines[1:], rows[1:]):
        where = f"podpath_roster {path}, line {number}"
        if len(row) != 2:
            raise FleetError(f"{where}: {line!r} has {len(row)} fields, not 2: write 'student,lab' (quote a "
                             "student name that has a comma: \"Lovelace, Ada\",student01)")
        student, lab = row[0].strip(), row[1].strip()
        if not student:
            raise FleetError(f"{where}: {line!r} has no student name: write 'student,lab'")
        check_lab(lab, where)
        if lab in labs:
            raise FleetError(f"{where}: lab {lab!r} is already given on line {labs[lab]}: give each student a "
                             "lab of their own")
        if student in students:
            raise FleetError(f"{where}: student {student!r} is already on line {students[student]}: list each "
                             "student once")
        labs[lab], students[student] = number, number
        roster.append((student, lab))
    if not roster:
        raise FleetError(f"podpath_roster {path}: the file has a header and no students: add one line per "
                         "student, such as 'Ada Lovelace,student01'")
    return roster


def capacity_of(host: str, value) -> int:
    """A host's podpath_capacity: a whole number of labs, at least 1 (INI inventories give strings)."""
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        number = None
    if number is None or number < 1:
        raise FleetError(f"podpath_capacity of host {host} is {value!r}: give the number of labs the host "
                         "takes, a whole number of 1 or more (podpath_capacity: 10), or remove it so that "
                         "the host takes no student of the roster")
    return number


def spread(roster: list[tuple[str, str]], capacities: dict[str, int], path: str = "the roster") -> dict[str, list[str]]:
    """{host: [lab, ...]}: each lab in roster order to the least full host (assigned/capacity),
    ties to the first host in natural order of the names. Every host is in the answer."""
    hosts = sorted(capacities, key=_natural)
    if not hosts:
        raise FleetError(f"{path} has {len(roster)} students but no host of the inventory has podpath_capacity: "
                         "set podpath_capacity (how many labs it takes) on the hosts that run the labs")
    total = sum(capacities.values())
    if len(roster) > total:
        raise FleetError(f"{path} has {len(roster)} students but the hosts take {total} labs in all "
                         f"({', '.join(f'{h}: {capacities[h]}' for h in hosts)}): add hosts with "
                         "podpath_capacity or raise it")
    labs: dict[str, list[str]] = {host: [] for host in hosts}
    for _, lab in roster:
        open_hosts = [h for h in hosts if len(labs[h]) < capacities[h]]
        best = min(open_hosts, key=lambda h: (len(labs[h]) / capacities[h], hosts.index(h)))
        labs[best].append(lab)
    return labs


def host_labs(host: str, hostvars, all_hosts, given_lab=None, roster: str | None = None) -> list[str]:
    """The labs HOST runs (the module's docstring gives the order of the sources).

    HOSTVARS: Ansible's hostvars; ALL_HOSTS: every host of the inventory (groups['all']);
    GIVEN_LAB: -e podpath_lab, or None; ROSTER: the roster's path, or None."""
    if given_lab is not None:
        return [check_lab(given_lab, "podpath_lab (-e podpath_lab=NAME)")]
    own = hostvars[host]
    labs = own.get("podpath_labs")
    if labs is not None:
        if isinstance(labs, str) or not isinstance(labs, (list, tuple)):
            raise FleetError(f"podpath_labs of host {host} is {labs!r}, not a list: write it as a list, such as "
                             "podpath_labs: [student01, student02]")
        seen = []
        for lab in labs:
            check_lab(lab, f"podpath_labs of host {host}")
            if lab in seen:
                raise FleetError(f"podpath_labs of host {host} names lab {lab!r} twice: list each lab once")
            seen.append(lab)
        return seen
    if roster:
        capacities = {}
        for name in all_hosts:
            value = hostvars[name].get("podpath_capacity")
            if value is not None and hostvars[name].get("podpath_labs") is None:
                capacities[name] = capacity_of(name, value)
        return spread(read_roster(str(roster)), capacities, f"podpath_roster {roster}").get(host, [])
    lab = own.get("podpath_lab")
    return [check_lab(lab, f"podpath_lab of host {host}")] if lab is not None else []


def packages(text: str, section: str = "lab") -> list[str]:
    """The Debian packages of one section of debian-packages.txt: the lines after `# [SECTION]`
    up to the next `# [...]` line, first word of each line, comments left out."""
    found, inside = [], False
    for line in text.splitlines():
        heading = re.match(r"^#\s*\[([\w-]+)\]", line)
        if heading:
            inside = heading.group(1) == section
            continue
        words = line.split("#", 1)[0].split()
        if inside and words:
            found.append(words[0])
    if not found:
        raise FleetError(f"debian-packages.txt has no section '# [{section}]': the netns_target role installs the "
                         "packages listed under that line")
    return found


def is_local(connection) -> bool:
    """Whether a host's connection is Ansible's local one (the control node itself)."""
    return str(connection or "") in LOCAL_CONNECTIONS


def summary(all_hosts, active_hosts, hostvars, done: str = "runs") -> list[str]:
    """One line per host of the play: its labs, or that it failed or was unreachable (Ansible
    said why above, and its recap counts it)."""
    lines = []
    for host in sorted(all_hosts, key=_natural):
        labs = hostvars[host].get("podpath_host_labs")
        if host not in active_hosts:
            lines.append(f"{host}: FAILED or UNREACHABLE, its error is above (its labs: "
                         f"{', '.join(labs) if labs else 'not chosen'})")
        elif labs:
            lines.append(f"{host} {done} {', '.join(labs)}")
        else:
            lines.append(f"{host}: no lab")
    return lines


def remote_hosts(hostvars_list) -> list[str]:
    """The hosts (each given by its hostvars) that have labs and are not the control node
    itself: those that get podpath's runtime from the control node."""
    return [str(h.get("inventory_hostname")) for h in hostvars_list
            if h.get("podpath_host_labs") and not is_local(h.get("ansible_connection", "ssh"))]


class FilterModule:
    def filters(self):
        return {"podpath_host_labs": host_labs, "podpath_packages": packages, "podpath_is_local": is_local,
                "podpath_fleet_summary": summary, "podpath_fleet_remote": remote_hosts}
