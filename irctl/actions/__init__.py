"""The registry of actions: a plain dict from action name to where it lives.

Entries are import paths so that listing, validating and `--help` never import
an action's heavy dependencies (boto3, paramiko); `get_action` loads one.
"""

from __future__ import annotations

import importlib
import os

from irctl.actions.base import Action
from irctl.errors import InputError

ACTIONS: dict[str, str] = {
    # built-in
    "confirm": "irctl.actions.builtin:Confirm",
    "manual": "irctl.actions.builtin:Manual",
    "wait": "irctl.actions.builtin:Wait",
    "assert": "irctl.actions.builtin:Assert",
    # diagnose
    "diagnose.cluster": "irctl.actions.diagnose:DiagnoseCluster",
    "diagnose.host": "irctl.actions.diagnose:DiagnoseHost",
    # aws
    "aws.replace_proxy": "irctl.actions.aws_replace:ReplaceProxy",
    "aws.scale_proxies": "irctl.actions.aws_scale:ScaleProxies",
    # notify
    "notify.slack": "irctl.actions.notify:NotifySlack",
    "notify.statuspage": "irctl.actions.notify:NotifyStatuspage",
    "notify.webhook": "irctl.actions.notify:NotifyWebhook",
    # cache
    "cache.stats": "irctl.actions.cache:CacheStats",
    "cache.flush": "irctl.actions.cache_flush:CacheFlush",
    "cache.locate": "irctl.actions.cache:CacheLocate",
    # ssh and filters
    "ssh.run": "irctl.actions.ssh:SshRun",
    "filter.block": "irctl.actions.filter:FilterBlock",
    "filter.revert": "irctl.actions.filter:FilterRevert",
}

_loaded: dict[str, Action] = {}


def _plugins(spec: str) -> dict[str, str]:
    """Site actions from `IRCTL_ACTION_PLUGINS="name=module:Class,..."` (modules on sys.path)."""
    found: dict[str, str] = {}
    for entry in spec.split(","):
        name, sep, target = entry.strip().partition("=")
        if sep and name and ":" in target:
            found[name.strip()] = target.strip()
    return found


ACTIONS.update(_plugins(os.environ.get("IRCTL_ACTION_PLUGINS", "")))


def get_action(name: str) -> Action:
    """The action instance for `name`; InputError naming the known ones when unknown."""
    if name in _loaded:
        return _loaded[name]
    try:
        target = ACTIONS[name]
    except KeyError:
        known = ", ".join(sorted(ACTIONS))
        raise InputError(f"unknown action {name!r}", f"known actions: {known}") from None
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    action: Action = cls()
    _loaded[name] = action
    return action
