# Copyright: podpath contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Action plugin of podpath_iptables: on the controller itself (local connection, no become,
the controller's Python) the module's code runs in-process, else the module runs as usual.
See podpath/play/inprocess.py."""
from __future__ import annotations

from ansible.plugins.action.normal import ActionModule as NormalAction

try:
    from podpath.play.inprocess import action_plugin
except ImportError:  # podpath's package is not in this Python: every task runs the module as usual
    ActionModule = NormalAction
else:
    ActionModule = action_plugin("podpath_iptables")
