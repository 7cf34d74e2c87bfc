"""How podpath runs its playbooks: through ansible-runner, with the project's modules run
in-process by their action plugins where that changes nothing but the time."""
