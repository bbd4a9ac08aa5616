"""The lab's background process: moto's HTTP endpoint, honest target health, and a reconciler.

    python -m irctl.lab.reconciler --dir $IRCTL_STATE_DIR/lab

It serves moto on 127.0.0.1 (a free port, written to `<dir>/endpoint`), then every
`--interval` seconds makes the namespaces match EC2: a running (or pending) instance in
the lab's subnet that no host stands for becomes a proxy host with exactly the
instance's private address, sshd (host key published to the lab's known_hosts) and
nutcracker; a host whose instance is stopped, terminated or gone is removed. Backends
and clients are instances too but are never created or removed here.

moto reports every registered running target as `healthy`. Serving moto from this
process lets target health be honest: a health checker connects to each proxy's client
port like a load balancer would, and `describe_target_health` answers `initial` until a
target first answers and `unhealthy` after two failed checks in a row.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from irctl.lab import cloud
from irctl.lab.files import write_targets
from irctl.lab.hosts import add_known_host, attach, remove_host, remove_known_host, start_proxy
from irctl.lab.netns import Network
from irctl.lab.state import HostRecord, LabState, read_state, updating

log = logging.getLogger("irctl.lab.reconciler")
LIVE = ("pending", "running")
FAILS_TO_UNHEALTHY = 2


class HealthChecker:
    """TCP checks of each proxy's client port, as a network load balancer does them."""

    def __init__(self, port: int, timeout: float = 2.0) -> None:
        self.port = port
        self.timeout = timeout
        self._lock = threading.Lock()
        self._seen_ok: set[str] = set()
        self._fails: dict[str, int] = {}

    def check(self, addresses: list[str]) -> None:
        results: dict[str, bool] = {}
        if addresses:
            with ThreadPoolExecutor(max_workers=min(16, len(addresses))) as pool:
                results = dict(zip(addresses, pool.map(self._probe, addresses), strict=True))
        with self._lock:
            for addr, ok in results.items():
                if ok:
                    self._seen_ok.add(addr)
                    self._fails[addr] = 0
                else:
                    self._fails[addr] = self._fails.get(addr, 0) + 1
            for addr in (set(self._fails) | self._seen_ok) - set(addresses):
                self._fails.pop(addr, None)
                self._seen_ok.discard(addr)

    def _probe(self, address: str) -> bool:
        try:
            with socket.create_connection((address, self.port), timeout=self.timeout):
                return True
        except OSError:
            return False

    def state(self, address: str) -> tuple[str, str | None, str | None]:
        with self._lock:
            if address not in self._seen_ok:
                return "initial", "Elb.RegistrationInProgress", "Target registration is in progress"
            if self._fails.get(address, 0) >= FAILS_TO_UNHEALTHY:
                return "unhealthy", "Target.Timeout", "Request timed out"
            return "healthy", None, None


def patch_target_health(checker: HealthChecker, subnet_id: str) -> None:
    """Make moto's target health come from `checker` for instances in the lab's subnet."""
    from moto.elbv2 import models

    original = models.FakeTargetGroup.health_for

    def health_for(self: Any, target: dict[str, Any], ec2_backend: Any) -> Any:
        status = original(self, target, ec2_backend)
        if status.status != "healthy" or not str(target.get("Id", "")).startswith("i-"):
            return status
        instance = ec2_backend.get_instance_by_id(target["Id"])
        if instance is None or getattr(instance, "subnet_id", None) != subnet_id:
            return status
        state: str
        reason: str | None
        description: str | None
        if instance.state != "running":
            # moto keeps calling a terminated group member healthy; a load balancer would not.
            state, reason, description = "unused", "Target.InvalidState", "Target is not running"
        else:
            state, reason, description = checker.state(instance.private_ip_address)
        if state == "healthy":
            return status
        return models.FakeHealthStatus(
            status.instance_id, status.port, status.health_check_port, state, reason, description
        )

    models.FakeTargetGroup.health_for = health_for  # type: ignore[method-assign]


class Reconciler:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.net: Network | None = None
        self.aws: Any = None
        # Instances that could not be built are not retried: one log line each, not one a pass.
        self.failed: set[str] = set()

    def pass_once(self, state: LabState) -> None:
        if self.net is None:
            self.net = attach(state)
            self.aws = cloud.provider(str(state.endpoint))
        instances = cloud.lab_instances(self.aws, state.aws["subnet_id"])
        fixed = {h.instance_id for h in state.hosts.values() if h.role != "proxy"}
        wanted = {
            str(i["InstanceId"]): str(i["PrivateIpAddress"])
            for i in instances
            if i["State"]["Name"] in LIVE and i["InstanceId"] not in fixed
        }
        proxies = {h.instance_id: h for h in state.by_role("proxy")}
        # Removals first: moto hands a terminated instance's address to the next launch.
        for iid, rec in proxies.items():
            if iid not in wanted or wanted[iid] != rec.address:
                self._remove(rec)
        proxies = {iid: rec for iid, rec in proxies.items() if iid in wanted}
        new = [
            (iid, ip) for iid, ip in wanted.items() if iid not in proxies and iid not in self.failed
        ]
        if new:
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(lambda item: self._add(state, *item), new))

    def _remove(self, rec: HostRecord) -> None:
        log.info("removing %s (%s)", rec.name, rec.address)
        assert self.net is not None
        if rec.name not in self.net.hosts:
            self.net.adopt(rec.name, rec.netns, rec.address, rec.veth, [])
        with updating(self.directory) as st:
            remove_known_host(st, rec.address)
        remove_host(self.net, rec.name)
        with updating(self.directory) as st:
            st.hosts.pop(rec.name, None)
            write_targets(st)

    def _add(self, state: LabState, instance_id: str, address: str) -> None:
        assert self.net is not None
        log.info("adding %s (%s)", instance_id, address)
        try:
            host = self.net.add_host(instance_id, address)
        except Exception as exc:
            log.error("cannot make a host for %s at %s: %s", instance_id, address, exc)
            self.failed.add(instance_id)
            return
        rec = HostRecord(instance_id, "proxy", host.netns, address, host.veth)
        rec.instance_id = instance_id
        # On record before anything runs in it, so `lab down` finds it even if we die here.
        with updating(self.directory) as st:
            st.hosts[rec.name] = rec
            st.next_index = max(st.next_index, self.net._index)
        try:
            public = Path(state.files["key"] + ".pub").read_text()
            rec.host_key = host.start_sshd(public)
            rec.pids["sshd"] = host.pids[-1]
            add_known_host(state, host, rec.host_key)
            rec.pids["nutcracker"] = start_proxy(host, state)
        except Exception:
            log.exception("building %s failed; it is left out", instance_id)
            self.failed.add(instance_id)
            self._remove(rec)
            return
        with updating(self.directory) as st:
            st.hosts[rec.name] = rec
            write_targets(st)


def _warm_up() -> None:
    """Load moto's EC2 data (images, instance types) while `lab up` builds namespaces."""
    try:
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.ec2.models import ec2_backends
        from moto.elbv2.models import elbv2_backends

        ec2_backends[DEFAULT_ACCOUNT_ID][cloud.REGION].describe_images()
        elbv2_backends[DEFAULT_ACCOUNT_ID][cloud.REGION].describe_target_groups(None, [], [])
    except Exception:  # an optimisation only: the first API call does the same work
        log.exception("warming moto up failed")


def serve(directory: Path, interval: float) -> None:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    cloud.use_lab_credentials()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    threading.Thread(target=_warm_up, daemon=True).start()
    endpoint = directory / "endpoint"
    endpoint.with_suffix(".tmp").write_text(f"http://{host}:{port}")
    os.replace(endpoint.with_suffix(".tmp"), endpoint)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    reconciler = Reconciler(directory)
    checker: HealthChecker | None = None
    try:
        while not stop.is_set():
            state = read_state(directory)
            if state is not None and state.ready:
                if checker is None:
                    checker = HealthChecker(state.proxy_port)
                    patch_target_health(checker, state.aws["subnet_id"])
                try:
                    reconciler.pass_once(state)
                    state = read_state(directory) or state
                    checker.check([h.address for h in state.by_role("proxy")])
                except Exception:  # keep reconciling: one failed pass is logged, not fatal
                    log.exception("reconcile pass failed")
            stop.wait(interval)
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m irctl.lab.reconciler")
    parser.add_argument("--dir", required=True, type=Path, help="the lab's state folder")
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True
    )
    serve(args.dir, args.interval)


if __name__ == "__main__":
    main()
