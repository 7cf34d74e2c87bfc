#!/bin/sh
# netns_target: check a host of a fleet, install the Debian packages its labs need, and say
# whether podpath's runtime in DIR is VERSION already.
#   prepare.sh PYTHON DIR VERSION PACKAGE...
# Runs as root (become). Prints one line per finding, read by the role:
#   podpath-problem: what is missing, and the fix
#   podpath-installed: the packages it installed
#   podpath-runtime: current (DIR/VERSION is VERSION and its Python runs), or not current
# and exits 0, so that the role reports every problem of the host at once.
# Nothing is added to the host's own network namespace: the kernel's veth and nftables are
# tried in a network namespace of this script's own (unshare --net), which goes when it ends.
python=$1
dir=$2
version=$3
shift 3
problems=0
problem() { echo "podpath-problem: $*"; problems=1; }

system=$(uname -s)
if [ "$system" != Linux ]; then
    problem "the host runs $system, not Linux: the netns lab needs Linux's network namespaces (use a Debian or Ubuntu machine)"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    problem "the tasks run as uid $(id -u), not root: give ansible_user sudo rights (or set ansible_become_method and --ask-become-pass) so that become gives root"
    exit 0
fi
if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    problem "the host has no dpkg/apt: podpath's lab hosts are Debian or Ubuntu machines"
    exit 0
fi
if [ ! -x "$python" ]; then
    problem "the host has no $python: install it (apt-get install python3) or set netns_target_python"
elif ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    problem "$python is Python $("$python" -c 'import platform; print(platform.python_version())'), podpath needs 3.11 or later: use Debian 12 or later, Ubuntu 24.04 or later, or set netns_target_python to a newer Python"
fi

missing=""
for package in "$@"; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$package" 2>/dev/null | grep -q '^ii' || missing="$missing $package"
done
if [ -n "$missing" ]; then
    log=$(mktemp)
    # Services of the packages are not started now (policy-rc.d, unless the host has its own),
    # and a service the install enabled is disabled again: the lab runs nginx in its namespaces only.
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy"
    fi
    enabled_before=$(systemctl list-unit-files --state=enabled --no-legend 2>/dev/null | awk '{print $1}' | sort)
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    if apt-get install -y -q --no-install-recommends $missing >"$log" 2>&1 \
        || { apt-get update -q >>"$log" 2>&1 && apt-get install -y -q --no-install-recommends $missing >>"$log" 2>&1; }; then
        echo "podpath-installed:$missing"
    else
        reason=$(grep -E '^E:' "$log" | awk '!seen[$0]++' | tail -n 3 | tr '\n' ' ' | sed 's/ $//')
        problem "cannot install the Debian packages$missing (${reason:-apt-get failed}): install them by hand (apt-get install$missing), make a Debian mirror reachable from the host, or remove a name that is not a Debian package from netns_target_extra_packages"
    fi
    enabled_after=$(systemctl list-unit-files --state=enabled --no-legend 2>/dev/null | awk '{print $1}' | sort)
    # only with a list from before (systemd, and it answered): never disable what was enabled already
    if [ -n "$enabled_before" ]; then
        for unit in $(printf '%s\n' "$enabled_after" | grep -vxF -e "$enabled_before"); do
            systemctl disable "$unit" >/dev/null 2>&1 && echo "podpath-disabled: $unit"
        done
    fi
    [ -n "$policy" ] && rm -f "$policy"
    rm -f "$log"
fi

if command -v unshare >/dev/null 2>&1 && command -v ip >/dev/null 2>&1; then
    if ! out=$(unshare --net ip link add podpath-v0 type veth peer name podpath-v1 2>&1); then
        problem "the kernel cannot make veth pairs ($out): use a kernel with veth (CONFIG_VETH; Debian's and Ubuntu's have it: modprobe veth)"
    fi
    if command -v nft >/dev/null 2>&1; then
        if ! out=$(unshare --net nft add table inet podpath_check 2>&1); then
            problem "the kernel has no nftables ($out): use a kernel with nf_tables (CONFIG_NF_TABLES; modprobe nf_tables)"
        fi
    fi
fi
if [ "$problems" = 0 ]; then
    mkdir -p "$dir" && chmod 755 "$dir"
    if [ -f "$dir/VERSION" ] && [ "$(cat "$dir/VERSION")" = "$version" ] && [ -x "$dir/venv/bin/python" ]; then
        echo "podpath-runtime: current"
    else
        echo "podpath-runtime: not current"
    fi
fi
exit 0
