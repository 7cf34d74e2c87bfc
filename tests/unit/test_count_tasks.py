"""The progress line's count of tasks (podpath.play.playbook.count_tasks): what a local run of
one lab shows, task by task, for the playbooks `podpath up` and `down` run, and for tasks files
imported or included by a role."""
from pathlib import Path

from podpath.play import playbook

PLAYBOOKS = playbook.ROOT / "playbooks"


def test_a_tasks_file_imported_brings_its_tasks_and_one_included_is_a_task_too(tmp_path: Path):
    (tmp_path / "two.yml").write_text("- name: a\n  ansible.builtin.debug:\n- name: b\n  ansible.builtin.debug:\n")
    (tmp_path / "one.yml").write_text("- name: c\n  ansible.builtin.debug:\n")
    tasks = [{"name": "x", "ansible.builtin.import_tasks": "two.yml"},
             {"name": "y", "block": [{"name": "z", "ansible.builtin.include_tasks": {"file": "one.yml"}}]},
             {"name": "w", "ansible.builtin.meta": "noop"}]
    assert playbook._tasks(tasks, tmp_path) == 2 + (1 + 1)


def test_up_here_counts_the_same_tasks_as_one_lab_of_the_fleets_build():
    fleet_lab = playbook._role_tasks("netns_target", "lab")  # the block of one lab in netns-lab.yml
    assert fleet_lab > 10
    assert playbook.count_tasks(PLAYBOOKS / "netns-lab-here.yml") == fleet_lab
    assert playbook.count_tasks(PLAYBOOKS / "netns-lab-down-here.yml") == playbook._role_tasks("netns_target",
                                                                                               "remove")
