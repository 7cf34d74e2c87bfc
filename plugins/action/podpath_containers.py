# Copyright: podpath contributors
# Apache License 2.0 (see LICENSE)
"""Action plugin of podpath_containers: on the controller itself (local connection, no become,
the controller's Python) the module's code runs in-process, else the module runs as usual.
See podpath/inprocess.py."""
try:
    from podpath.inprocess import action_plugin
except ImportError:  # podpath's package is not in this Python: every task runs the module as usual
    from ansible.plugins.action.normal import ActionModule  # noqa: F401
else:
    ActionModule = action_plugin("podpath_containers")
