"""The fleet as the operator describes it: clusters, proxies, shards, allowlist.

Loaded from YAML and validated with pydantic; problems are reported with their
line and column like runbook problems are. Proxies may also be discovered from
EC2 tags (the AWS provider fills `discovered` at run time).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from irctl.errors import InputError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AwsSettings(_Strict):
    region: str = "us-east-1"
    profile: str | None = None
    endpoint_url: str | None = None
    # Poll intervals and waiter timeouts: production defaults; tests and the lab shorten them.
    poll_interval: float = 5.0
    wait_timeout: float = 900.0


class SshSettings(_Strict):
    user: str | None = None
    port: int | None = None
    key_file: str | None = None
    known_hosts: str | None = "~/.ssh/known_hosts"
    jump_host: str | None = None
    connect_timeout: float = 10.0
    command_timeout: float = 30.0
    concurrency: int = Field(default=32, ge=1, le=512)
    config_file: str | None = "~/.ssh/config"


class Proxy(_Strict):
    name: str
    address: str
    instance_id: str | None = None
    ssh_port: int | None = None

    @field_validator("address")
    @classmethod
    def _ip(cls, v: str) -> str:
        ipaddress.ip_address(v)
        return v


class Shard(_Strict):
    name: str
    servers: list[str] = Field(min_length=1)
    weight: int = 1

    @field_validator("servers")
    @classmethod
    def _hostports(cls, v: list[str]) -> list[str]:
        for server in v:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"server {server!r} must be HOST:PORT")
        return v


class Hashing(_Strict):
    distribution: Literal["ketama", "modula", "random"] = "ketama"
    hash: str = "fnv1a_64"
    # twemproxy's hash_tag, e.g. "{}": only the part of a key between the two is hashed.
    hash_tag: str | None = Field(default=None, min_length=2, max_length=2)


class Backend(_Strict):
    name: str
    address: str
    ssh_port: int | None = None


class Cluster(_Strict):
    target_group_arn: str | None = None
    autoscaling_group: str | None = None
    launch_template: str | None = None
    proxy_port: int = Field(default=11211, gt=0, lt=65536)
    proxies: list[Proxy] = Field(default_factory=list)
    discover: dict[str, str] | None = None
    shards: list[Shard] = Field(default_factory=list)
    backends: list[Backend] = Field(default_factory=list)
    hashing: Hashing = Field(default_factory=Hashing)
    # Thresholds for diagnosis; the diagnose action documents the keys it reads.
    thresholds: dict[str, float] = Field(default_factory=dict)
    min_healthy_proxies: int = Field(default=1, ge=0)


class SlackSettings(_Strict):
    webhook_url_env: str


class StatuspageSettings(_Strict):
    page_id: str
    api_key_env: str
    base_url: str = "https://api.statuspage.io/v1"
    component_ids: dict[str, str] = Field(default_factory=dict)


class WebhookSettings(_Strict):
    name: str
    url: str
    secret_env: str | None = None


class NotifySettings(_Strict):
    slack: SlackSettings | None = None
    statuspage: StatuspageSettings | None = None
    webhooks: list[WebhookSettings] = Field(default_factory=list)
    timeout: float = 5.0
    retries: int = 3


class Inventory(_Strict):
    aws: AwsSettings = Field(default_factory=AwsSettings)
    ssh: SshSettings = Field(default_factory=SshSettings)
    allowlist: list[str] = Field(default_factory=list)
    clusters: dict[str, Cluster] = Field(default_factory=dict)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    source: str | None = Field(default=None, exclude=True)

    @field_validator("allowlist")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        for cidr in v:
            ipaddress.ip_network(cidr, strict=False)
        return v

    def cluster(self, name: str) -> Cluster:
        try:
            return self.clusters[name]
        except KeyError:
            known = ", ".join(sorted(self.clusters)) or "none"
            raise InputError(
                f"unknown cluster {name!r}", f"clusters in the inventory: {known}"
            ) from None

    def find_proxy(self, cluster: str, ref: str) -> Proxy:
        """A proxy by inventory name, address or instance id (INTERFACE.md's PROXY)."""
        for proxy in self.cluster(cluster).proxies:
            if ref in (proxy.name, proxy.address, proxy.instance_id):
                return proxy
        names = ", ".join(p.name for p in self.cluster(cluster).proxies) or "none"
        raise InputError(
            f"unknown proxy {ref!r} in cluster {cluster!r}",
            f"use a name, address or instance id; proxies: {names}",
        )


def load_inventory(path: Path | None) -> Inventory:
    """The inventory at `path`, or an empty one when there is none."""
    if path is None:
        return Inventory()
    from irctl.runbook.yamlpos import load_with_positions

    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(
            f"cannot read inventory {path}: {exc.strerror}", "pass --inventory PATH"
        ) from None
    data, positions, problems = load_with_positions(text, str(path))
    if problems:
        raise InputError(problems[0].render(), "fix the inventory file")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"{path}:1:1: the inventory must be a mapping", "see docs/inventory.md")
    from pydantic import ValidationError

    try:
        inv = Inventory.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = positions.locate(str(path), tuple(err["loc"]))
        field = ".".join(str(p) for p in err["loc"])
        raise InputError(f"{where}: {field}: {err['msg']}", "fix the inventory file") from None
    inv.source = str(path)
    return inv


def as_plain(inv: Inventory) -> dict[str, Any]:
    """The inventory as templates see it (`inventory.clusters[...]`)."""
    return inv.model_dump(mode="json")
