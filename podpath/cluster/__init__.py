"""Helpers for the cluster lab (Vagrant + kubeadm) that run on the student's own machine.

doctor: checks the laptop before `vagrant up` (podpath cluster doctor).
report: gathers what an instructor needs after a failed boot into one file (podpath cluster report).
cli: the `cluster` verb for podpath's command line.
"""
