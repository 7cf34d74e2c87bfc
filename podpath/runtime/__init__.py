"""What runs inside a netns lab: the pause program, MetalLB's speaker, the ingress controller
and its leader lease, the kube-proxy sync daemon. Each reads its own rendered inputs; it imports only podpath.model."""
