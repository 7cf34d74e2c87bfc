#!/bin/sh
# netns_target: install podpath's runtime from the bundle the control node packed.
#   install-runtime.sh DIR PYTHON
# DIR/runtime.tar.gz (copied there by the role) holds the control node's podpath package and
# module_utils, as in its checkout, the programs podpath's builder built (bin/), VERSION, and
# the verifier (tests/verify, the reference topology, verifier/: pytest and testinfra).
# They go to DIR/lib; DIR/venv is a virtualenv of PYTHON (no pip, Debian's Python packages
# seen) whose podpath.pth names DIR/lib and DIR/lib/verifier and whose bin/ gets the programs. Prints
# "unchanged" when DIR already runs that version, else "installed VERSION".
set -eu
dir=$1
python=$2
bundle=$dir/runtime.tar.gz
# one install at a time in DIR (two inventory names of one machine share it)
exec 9>"$dir/.install.lock"
flock 9
version=$(tar -xzOf "$bundle" ./VERSION)
if [ -f "$dir/VERSION" ] && [ "$(cat "$dir/VERSION")" = "$version" ] \
    && "$dir/venv/bin/python" -c 'import podpath.runtime.daemon' >/dev/null 2>&1; then
    echo unchanged
    exit 0
fi
rm -rf "$dir/lib.new" "$dir/lib.old"
mkdir -p "$dir/lib.new"
tar -xzf "$bundle" -C "$dir/lib.new" --no-same-owner
if [ ! -x "$dir/venv/bin/python" ]; then
    "$python" -m venv --without-pip --system-site-packages "$dir/venv"
fi
site=$("$dir/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ -d "$dir/lib" ]; then
    mv "$dir/lib" "$dir/lib.old"
fi
mv "$dir/lib.new" "$dir/lib"
rm -rf "$dir/lib.old"
# lib/: podpath and module_utils; lib/verifier: the verifier's pytest and testinfra, after it
printf '%s\n%s\n' "$dir/lib" "$dir/lib/verifier" > "$site/podpath.pth"
for program in "$dir"/lib/bin/*; do
    [ -f "$program" ] && install -m 0755 "$program" "$dir/venv/bin/"
done
"$dir/venv/bin/python" -c 'import podpath.runtime.daemon, podpath.model.labdir'
cp "$dir/lib/VERSION" "$dir/VERSION"
echo "installed $version"
