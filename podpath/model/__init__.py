"""The model of a lab: the topology file checked, the plan derived from it, and what the plan
renders (kube-proxy's rules, each process's inputs). It imports nothing else of podpath."""
