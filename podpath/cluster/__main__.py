"""python -m podpath.cluster doctor|report: the cluster verbs on their own."""
import sys

from podpath.cluster.cli import main

sys.exit(main())
