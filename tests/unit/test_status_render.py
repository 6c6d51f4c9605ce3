"""ops status rendering and member-id parsing (pure; the broker path is tests/integration/test_ops_status.py)."""

from __future__ import annotations

from ops import status


def _cluster(embedded: bool) -> status.ClusterStatus:
    members = (
        status.MemberStatus("detector@a:1-" + "0" * 36, "detector@a:1", "10.0.0.5", (("fs.frames", 0),), "broker"),
        status.MemberStatus("detector@b:2-" + "1" * 36, "detector@b:2", "10.0.0.6", (("fs.frames", 1),), "broker"),
    )
    parts = (
        status.PartitionStatus("fs.frames", 0, committed=90, end=100, owner="detector@a:1"),
        status.PartitionStatus("fs.frames", 1, committed=None, end=5, owner="detector@b:2"),
    )
    group = status.GroupStatus("fs.detector", "detector", "Stable", members, parts)
    absent = status.GroupStatus("fs.matcher", "matcher", "absent", (), ())
    return status.ClusterStatus("kafka:9092", "abc", embedded, (group, absent))


def test_lag_on_kafka() -> None:
    text = status.render(_cluster(embedded=False), "fs.")
    assert "lag 15" in text  # 10 + 5 (nothing committed on partition 1)
    assert "frames[0]" in text and "frames[1]" in text
    assert "matcher: group fs.matcher - no worker has joined" in text
    assert status.EMBEDDED_NOTE not in text


def test_embedded_broker_says_lag_is_unreliable() -> None:
    text = status.render(_cluster(embedded=True), "fs.")
    assert status.EMBEDDED_NOTE in text
    assert "lag n/a" in text and "lag 15" not in text


def test_client_id_from_member_id() -> None:
    assert status._client_of("detector@h:7-1d8d3683-2dc3-434f-82fa-d68ee8590f2a") == "detector@h:7"
    assert status._client_of("short") == "short"
