"""The cluster lab's Vagrant boxes, built from Debian's official cloud image (build.py)."""
