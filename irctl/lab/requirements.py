"""What `irctl lab up` needs before it touches anything: root, the Debian packages, moto."""

from __future__ import annotations

import importlib.util
import os

from irctl.errors import InputError
from irctl.lab.system import SSHD, missing_tools

TOOLS = {
    "ip": "iproute2",
    "nft": "nftables",
    SSHD: "openssh-server",
    "ssh-keygen": "openssh-client",
    "memcached": "memcached",
    "nutcracker": "nutcracker",
}


def check_requirements() -> None:
    """Root, the Debian packages and moto: say exactly what is missing, in one line."""
    problems = []
    if os.geteuid() != 0:
        problems.append("root (network namespaces need it)")
    missing = missing_tools(*TOOLS)
    if missing:
        pkgs = sorted({TOOLS[t] for t in missing})
        problems.append(f"{', '.join(missing)} (apt-get install {' '.join(pkgs)})")
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        problems.append("moto server (pip install 'moto[server]')")
    if problems:
        raise InputError(f"irctl lab needs {'; '.join(problems)}", "install them and retry")
