"""One namespace host: its address, the daemons started in it, commands run inside it.

Processes: `Host.spawn` starts a daemon in its own session and remembers its pid;
`Host.stop()` signals those pids and every pid still inside the host's namespace
(`ip netns pids`: the namespace is ours, so its processes are ours too, e.g. the
per-connection children of sshd). Nothing is ever stopped by name.

sshd runs in the host's own mount namespace with a clean, empty home bind-mounted
over `/root`, so a remote shell neither reads the operator's real dotfiles nor
spends time on them.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from irctl.lab.system import SSHD, LabError, run, terminate, wait_port

if TYPE_CHECKING:
    from irctl.lab.netns import Network


@dataclass
class Host:
    """One namespace host on a `Network`: an address, daemons we started, commands run inside."""

    name: str
    netns: str
    address: str
    veth: str
    network: Network
    pids: list[int] = field(default_factory=list)
    ssh_port: int = 22

    def run(
        self, argv: Sequence[str], check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside the host's network namespace and wait for it."""
        proc = subprocess.run(
            ["ip", "netns", "exec", self.netns, *argv],
            capture_output=True,
            text=True,
            input=input,
            check=False,
        )
        if check and proc.returncode != 0:
            raise LabError(
                f"{self.name}: {shlex.join(argv)} failed ({proc.returncode}): "
                f"{proc.stderr.strip()[:500]}"
            )
        return proc

    def spawn(self, argv: Sequence[str], log_name: str | None = None) -> int:
        """Start a daemon inside the namespace; its pid is tracked and stopped by `stop()`."""
        log_dir = self.network.workdir / "logs"
        log_dir.mkdir(exist_ok=True)
        log_path = log_dir / f"{self.name}-{log_name or Path(argv[0]).name}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.pids.append(proc.pid)
        self.network._children[proc.pid] = proc
        return proc.pid

    def start_sshd(self, authorized_keys: str, port: int = 22) -> str:
        """Start sshd on `address:port` with its own host key; returns the public key line."""
        hostdir = self.network.workdir / "hosts" / self.name
        hostdir.mkdir(parents=True, exist_ok=True)
        key = hostdir / "ssh_host_ed25519_key"
        if not key.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.name, "-f", str(key)])
        auth = hostdir / "authorized_keys"
        auth.write_text(
            authorized_keys if authorized_keys.endswith("\n") else authorized_keys + "\n"
        )
        config = hostdir / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress {self.address}:{port}",
                    f"HostKey {key}",
                    f"AuthorizedKeysFile {auth}",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "UseDNS no",
                    "StrictModes no",
                    "PrintMotd no",
                    "PrintLastLog no",
                    "PidFile none",
                    "MaxSessions 64",
                    "MaxStartups 200:30:400",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        # sshd refuses to start without its privilege separation directory (systemd makes it).
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        home = self.network.workdir / "home"
        script = 'mount --bind "$1" /root && shift && exec "$@"'
        self.spawn(
            ["sh", "-c", script, "sh", str(home), SSHD, "-D", "-e", "-f", str(config)], "sshd"
        )
        self.ssh_port = port
        wait_port(self.address, port)
        return (key.with_suffix(".pub")).read_text().strip()

    def start_memcached(self, port: int = 11211, *, memory_mb: int = 16, conns: int = 4096) -> int:
        """Start memcached on `address:port` (TCP only) and wait until it accepts."""
        pid = self.spawn(
            [
                "memcached", "-u", "root", "-l", self.address, "-p", str(port), "-U", "0",
                "-m", str(memory_mb), "-c", str(conns), "-t", "1",
            ],
            f"memcached-{port}",
        )  # fmt: skip
        wait_port(self.address, port)
        return pid

    def start_nutcracker(self, config_text: str, *, listen_port: int | None = None) -> int:
        """Start nutcracker with `config_text`; waits for `listen_port` when given."""
        hostdir = self.network.workdir / "hosts" / self.name
        hostdir.mkdir(parents=True, exist_ok=True)
        conf = hostdir / "nutcracker.yml"
        conf.write_text(config_text)
        pid = self.spawn(
            ["nutcracker", "-c", str(conf), "-a", self.address, "-s", "22222", "-v", "4"],
            "nutcracker",
        )
        if listen_port is not None:
            wait_port(self.address, listen_port)
        return pid

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the daemons started here and anything still in our namespace, by pid."""
        pids = set(self.pids) | set(self._namespace_pids())
        terminate(pids, self.network._children, timeout)
        self.pids.clear()

    def _namespace_pids(self) -> list[int]:
        out = run(["ip", "netns", "pids", self.netns], check=False)
        return [int(p) for p in out.split() if p.isdigit() and int(p) != os.getpid()]
