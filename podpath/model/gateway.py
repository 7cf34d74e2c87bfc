"""The Gateway API edge of the netns lab: NGINX Gateway Fabric's data plane, rendered.

In a cluster, NGINX Gateway Fabric's control plane watches the GatewayClass, the Gateway and
its HTTPRoutes, provisions for the Gateway an nginx Deployment and a LoadBalancer Service
named <gateway>-<class>, and sends each data-plane pod the nginx configuration it renders
from them; nginx reloads it. The netns lab has no control plane: this module renders that
configuration from the plan's Gateway and HTTPRoute, the way NGF writes it:

- one `upstream` per backend Service port, named <namespace>_<service>_<port>, whose
  servers are the Service's endpoints (pod IPs: nginx balances, not kube-proxy);
- a default server per listener port (`listen 80 default_server`) that answers 404 to a
  host no route names;
- a server per listener hostname, whose `location` comes from the rule's path match
  (PathPrefix /: `location /`; PathPrefix /p: `location /p/` and `location = /p`), with
  `proxy_set_header` for NGF's own headers and the rule's RequestHeaderModifier (added to the
  request the backend receives), and `proxy_pass` to the upstream;
- a backendRef that names no Service goes to NGF's upstream invalid-backend-ref, whose one
  server answers 500 (Gateway API: a request to an invalid backend gets a 500).

Each data-plane pod also adds GATEWAY_HEADER (its pod name) to every answer, as the lab's
ingress controllers add X-Ingress-Controller, so that a client sees which pod served. NGF's
data plane has no leader election: every pod serves the same configuration.
"""
from __future__ import annotations

from typing import Any

from podpath.model.plan import GatewayRoute, Plan, Pod

# The header each data-plane pod adds to its answers (its pod name), lower-cased as read back.
GATEWAY_HEADER = "x-gateway-pod"
# NGF's upstream for a backendRef it cannot resolve, answered with 500 by a server on a socket.
INVALID_BACKEND = "invalid-backend-ref"


def upstream_name(namespace: str, service: str, port: int) -> str:
    """NGF's name of the upstream of Service NAMESPACE/SERVICE's port PORT."""
    return f"{namespace}_{service}_{port}"


def header_variable(name: str) -> str:
    """The nginx variable of request header NAME ($http_x_podpath_route for X-Podpath-Route)."""
    return "$http_" + name.lower().replace("-", "_")


def locations(path_prefix: str) -> list[str]:
    """The nginx location(s) NGF renders for a PathPrefix match: / stays /; /p (no trailing
    slash) matches /p itself and everything under /p/, not /px."""
    if path_prefix == "/":
        return ["/"]
    return [f"{path_prefix}/", f"= {path_prefix}"]


def request_headers(route: GatewayRoute) -> list[dict[str, str]]:
    """The headers the echo backend prints (field = the header's lower-cased name): the
    HTTPRoute's added header, so the backend's answer shows it reached the backend."""
    if not route or not route.add_header:
        return []
    name = route.add_header[0]
    return [{"field": name.lower(), "var": header_variable(name)}]


def render_context(plan: Plan, pod: Pod, endpoints: list[dict[str, Any]], *, backend_missing: bool = False,
                   hostname: str | None = None) -> dict[str, Any]:
    """What nginx-gateway.conf.j2 reads for data-plane pod POD. BACKEND_MISSING renders the
    route as NGF does when its backendRef names no Service; HOSTNAME replaces the listener's
    (the lab's faults render these; `podpath up` renders the plan again)."""
    route = plan.gateway
    if route is None:
        raise ValueError(f"lab {plan.lab} has edge {plan.edge}, not gateway-api: it has no Gateway to render")
    upstream = INVALID_BACKEND if backend_missing else upstream_name(route.namespace, route.backend,
                                                                     route.backend_port)
    return {"route": route, "hostname": hostname or route.hostname, "locations": locations(route.path_prefix),
            "upstream": upstream, "backend_missing": backend_missing, "endpoints": endpoints,
            "header": GATEWAY_HEADER}
