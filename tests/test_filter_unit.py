"""Pure filter logic: validation, comments, nft batch text and parsing, listing."""

from __future__ import annotations

import ipaddress
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from irctl.errors import InputError, RefusedError
from irctl.filters import spec as fs
from irctl.filters.listing import build_listing
from irctl.filters.nftables import block_batch, parse_table, revert_batch
from irctl.providers.nft import ss_filter


def make_spec(**kw: object) -> fs.FilterSpec:
    base: dict[str, object] = dict(
        id="flt-0123abcd",
        cidr=ipaddress.ip_network("198.51.100.0/24"),
        ports=(11211,),
        action="reject",
        ttl=1800,
        reason="storm",
        operator="alice",
    )
    base.update(kw)
    return fs.FilterSpec(**base)  # type: ignore[arg-type]


def test_ttl_rules() -> None:
    assert fs.parse_ttl(None, permanent=False) == 1800
    assert fs.parse_ttl("1h30m", permanent=False) == 5400
    assert fs.parse_ttl(None, permanent=True) == 0
    with pytest.raises(RefusedError):
        fs.parse_ttl("24h1s", permanent=False)
    with pytest.raises(InputError):
        fs.parse_ttl("0", permanent=False)
    with pytest.raises(InputError):
        fs.parse_ttl("10m", permanent=True)


@pytest.mark.parametrize("bare", ["30", 30, "1.5", 90.0])
def test_a_ttl_without_unit_is_refused_not_read_as_seconds(bare: object) -> None:
    with pytest.raises(InputError) as caught:
        fs.parse_ttl(bare, permanent=False)  # type: ignore[arg-type]
    assert "no unit" in caught.value.message and f"say {bare}s or {bare}m" in str(caught.value.hint)
    assert fs.parse_ttl("30s", permanent=False) == 30


def test_cidr_rules() -> None:
    v4 = [ipaddress.ip_network("10.1.0.0/16")]
    fs.check_cidrs(v4, ["203.0.113.0/24", "2001:db8::/32"], force=False)
    with pytest.raises(RefusedError, match="allowlisted"):
        fs.check_cidrs([ipaddress.ip_network("203.0.0.0/16")], ["203.0.113.0/24"], force=True)
    with pytest.raises(RefusedError):
        fs.check_cidrs([ipaddress.ip_network("10.0.0.0/8")], [], force=False)
    fs.check_cidrs([ipaddress.ip_network("10.0.0.0/8")], [], force=True)
    with pytest.raises(RefusedError, match="own address"):
        fs.check_operator_address(v4, "proxy-1", "10.1.2.3")
    fs.check_operator_address(v4, "proxy-1", "2001:db8::1")
    assert str(fs.parse_cidr("198.51.100.7")) == "198.51.100.7/32"


@given(st.text(max_size=600))
def test_comment_is_always_safe_for_nft_and_decodes(reason: str) -> None:
    try:
        clean = fs.check_reason(reason)
    except InputError:
        return
    comment = fs.encode_comment(make_spec(reason=clean), 1700000000)
    assert len(comment.encode()) <= fs.MAX_COMMENT
    assert '"' not in comment and "\\" not in comment and "\n" not in comment
    info = fs.decode_comment(comment)
    assert info is not None and info.id == "flt-0123abcd" and info.operator == "alice"
    assert info.ttl == 1800 and info.created == 1700000000


def test_batch_text_is_exact() -> None:
    batch = block_batch([make_spec(ports=(11211, 22122)), make_spec(
        id="flt-99999999", cidr=ipaddress.ip_network("2001:db8:1::/48"), action="drop", ttl=0
    )], 1700000000)  # fmt: skip
    lines = batch.splitlines()
    assert lines[0] == "add table inet irctl"
    assert "flush chain inet irctl input" in lines
    assert (
        "add rule inet irctl input tcp flags & (syn | ack) == syn "
        "ip saddr . tcp dport @reject4 reject with tcp reset"
    ) in lines
    assert lines[-3] == (
        "add element inet irctl reject4 { 198.51.100.0/24 . 11211 timeout 1800s comment "
        '"irctl;id=flt-0123abcd;op=alice;at=1700000000;ttl=1800;why=storm" }'
    )
    assert lines[-1].startswith("add element inet irctl drop6 { 2001:db8:1::/48 . 11211 comment")
    assert " 22 " not in batch


def test_parse_table_and_revert_batch() -> None:
    doc = {
        "nftables": [
            {"metainfo": {"json_schema_version": 1}},
            {"table": {"family": "inet", "name": "irctl"}},
            {"set": {"family": "inet", "table": "irctl", "name": "reject4", "elem": [
                {"elem": {"val": {"concat": [{"prefix": {"addr": "198.51.100.0", "len": 24}},
                                             11211]},
                          "timeout": 1800, "expires": 1700,
                          "comment": "irctl;id=flt-0123abcd;op=al;at=5;ttl=1800;why=a;b=c"}},
                {"concat": ["198.51.100.9", 11211]},
            ]}},
        ]
    }  # fmt: skip
    elements = parse_table(json.dumps(doc))
    assert [(e.cidr, e.port, e.expires) for e in elements] == [
        ("198.51.100.0/24", 11211, 1700),
        ("198.51.100.9/32", 11211, None),
    ]
    assert elements[0].info is not None and elements[0].info.reason == "a;b=c"
    assert elements[1].info is None
    assert revert_batch(elements[:1]) == (
        "delete element inet irctl reject4 { 198.51.100.0/24 . 11211 }\n"
    )


def test_ss_filter_quotes_ipv6_prefixes() -> None:
    nets = [ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("2001:db8::/48")]
    assert ss_filter(nets, [11211, 22122]) == (
        "( sport = :11211 or sport = :22122 ) and ( dst 198.51.100.0/24 or dst [2001:db8::]/48 )"
    )


def test_listing_reports_differences_between_hosts() -> None:
    from irctl.providers.ssh import HostOutcome, HostRef

    comment = "irctl;id=flt-0123abcd;op=al;at=5;ttl=1800;why=x"
    doc = {"nftables": [{"set": {"table": "irctl", "name": "reject4", "elem": [{"elem": {
        "val": {"concat": [{"prefix": {"addr": "198.51.100.0", "len": 24}}, 11211]},
        "timeout": 1800, "expires": 100, "comment": comment}}]}}]}  # fmt: skip
    hosts = [HostRef("a", "192.0.2.1"), HostRef("b", "192.0.2.2"), HostRef("c", "192.0.2.3")]
    reads = [
        HostOutcome(hosts[0], parse_table(json.dumps(doc))),
        HostOutcome(hosts[1], []),
        HostOutcome(hosts[2], error="cannot connect"),
    ]
    listing = build_listing(hosts, reads, {}, now=1000)
    (row,) = listing.filters
    assert row["hosts"] == ["a"] and row["differences"] == ["missing on b"]
    assert row["expires_at"] == "1970-01-01T00:18:20Z"
    assert listing.unreachable == {"c": "cannot connect"}
