"""``facestream ops status``: every stage's consumer group, its members, their partitions, offsets and lag.

Read from the broker with confluent-kafka's AdminClient (list/describe consumer groups, committed offsets,
end offsets). Two gaps of the embedded broker (Tansu) are filled or flagged, never papered over:

- Tansu's DescribeGroups names the members but returns no client host and no assignment (and confluent-kafka
  then drops the members altogether). Members come from a raw DescribeGroups (aiokafka) and their partitions
  from the reports each worker publishes on the ``stage-members`` topic (``pipeline.membership``); the table
  marks such partitions ``reported``. Those reports also carry each role's restart count (``facestream up``
  restarts a crashed role), shown per member.
- Tansu misreports end offsets (end = first offset of the last batch + 1), so on it the end offsets and lag
  are not printed; the output says so.

Entry points: ``run(settings) -> str`` (blocking, for the CLI), ``collect`` (async, structured) and
``render``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec

from pipeline.roles import ROLES
from pipeline.settings import Settings
from schemas.base import SchemaError
from schemas.messages import MemberReport
from schemas.topics import STAGE_MEMBERS

log = logging.getLogger(__name__)

EMBEDDED_NOTE = (
    "NOTE: the embedded broker (Tansu) misreports end offsets (end = first offset of the last batch + 1), "
    "so end offsets and lag are not shown; committed offsets are exact. Run on Apache Kafka for lag."
)
_UUID_SUFFIX = 37  # "-" + a 36-character UUID: how Kafka clients build a member id from their client id


# ---------------------------------------------------------------- the structured view


@dataclass(frozen=True)
class MemberStatus:
    """One live member of a group. ``partitions`` is None when neither the broker nor a report says."""

    member_id: str
    client_id: str
    host: str
    partitions: tuple[tuple[str, int], ...] | None
    source: str  # "broker" (from DescribeGroups), "reported" (stage-members topic) or "unknown"
    restarts: int | None = None  # crashes restarted in that process (from its report; None: no report)


@dataclass(frozen=True)
class PartitionStatus:
    """One input partition of a group: committed offset, end offset (None when unreliable) and owner."""

    topic: str
    partition: int
    committed: int | None
    end: int | None
    owner: str | None

    @property
    def lag(self) -> int | None:
        """Messages not yet committed; None when the end offset is unknown or unreliable."""
        if self.end is None:
            return None
        return max(0, self.end - (self.committed or 0))


@dataclass(frozen=True)
class GroupStatus:
    group: str
    role: str
    state: str  # Stable, PreparingRebalance, Empty, ... or "absent" (no member ever joined)
    members: tuple[MemberStatus, ...]
    partitions: tuple[PartitionStatus, ...]

    @property
    def lag(self) -> int | None:
        lags = [p.lag for p in self.partitions]
        return None if any(x is None for x in lags) else sum(x or 0 for x in lags)


@dataclass(frozen=True)
class ClusterStatus:
    bootstrap: str
    cluster_id: str
    embedded: bool  # end offsets unreliable
    groups: tuple[GroupStatus, ...] = field(default_factory=tuple)


# ---------------------------------------------------------------- collecting


def _bootstrap(settings: Settings, bootstrap: str | None) -> str:
    servers = bootstrap or settings.bootstrap_servers
    if not servers:
        raise RuntimeError(
            "ops status needs a broker: pass --bootstrap HOST:PORT (the embedded broker's address, printed by "
            "`facestream up`) or set FACESTREAM_BOOTSTRAP_SERVERS"
        )
    return servers


def _admin(servers: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": servers, "log_level": 0, "log.connection.close": False})


async def collect(
    settings: Settings, *, bootstrap: str | None = None, embedded: bool | None = None, timeout: float = 10.0
) -> ClusterStatus:
    """Query the broker for every stage group named ``{kafka.topic_prefix}{role}`` and groups with the prefix.

    ``embedded`` forces (or denies) the Tansu treatment; by default it is detected from the cluster id.
    Blocking admin calls run in the default executor.
    """
    servers = _bootstrap(settings, bootstrap)
    loop = asyncio.get_running_loop()
    admin = _admin(servers)
    metadata = await loop.run_in_executor(None, lambda: admin.list_topics(timeout=timeout))
    cluster_id = str(metadata.cluster_id or "")
    is_embedded = embedded if embedded is not None else cluster_id.startswith("tansu")
    prefix = settings.kafka.topic_prefix
    roles = {f"{prefix}{role}": role for role in ROLES}
    listed = await loop.run_in_executor(None, _list_groups, admin, timeout)
    for group in listed:
        if group.startswith(prefix) and group not in roles:
            roles[group] = group[len(prefix):]
    described = await loop.run_in_executor(None, _describe_groups, admin, sorted(roles), timeout)
    silent = [g for g, (state, m) in described.items() if not m and state not in ("Empty", "Dead", "absent")]
    if silent:
        raw = await _raw_members(servers, silent)
        described = {g: (s, m or raw.get(g, [])) for g, (s, m) in described.items()}
    reports = await _read_reports(settings, servers, metadata) if _needs_reports(described) else {}
    topic_sizes = {name: len(t.partitions) for name, t in metadata.topics.items()}
    groups = []
    for group in sorted(roles, key=lambda g: (g not in listed, g)):
        state, members = described.get(group, ("absent", []))
        if group not in listed and not members:
            state = "absent"  # Tansu describes unknown groups as Empty, Kafka as Dead
        members = [_with_report(m, reports.get(group, {})) for m in members]
        committed = await loop.run_in_executor(None, _committed, admin, group, timeout)
        groups.append((group, roles[group], state, members, committed))
    wanted = _partitions_to_show(groups, topic_sizes)
    ends = {} if is_embedded else await loop.run_in_executor(None, _end_offsets, admin, wanted, timeout)
    result = tuple(
        _group_status(group, role, state, members, committed, wanted, ends)
        for group, role, state, members, committed in groups
    )
    return ClusterStatus(bootstrap=servers, cluster_id=cluster_id, embedded=is_embedded, groups=result)


def _list_groups(admin: AdminClient, timeout: float) -> set[str]:
    result = admin.list_consumer_groups(request_timeout=timeout).result()
    return {g.group_id for g in result.valid}


def _describe_groups(
    admin: AdminClient, groups: list[str], timeout: float
) -> dict[str, tuple[str, list[MemberStatus]]]:
    """group -> (state, members as the broker reports them; assignments from the broker)."""
    out: dict[str, tuple[str, list[MemberStatus]]] = {}
    if not groups:
        return out
    for group, future in admin.describe_consumer_groups(groups, request_timeout=timeout).items():
        try:
            desc = future.result()
        except KafkaException:
            out[group] = ("absent", [])
            continue
        state = _state_name(desc.state)
        members = [
            MemberStatus(
                member_id=m.member_id, client_id=m.client_id or _client_of(m.member_id), host=m.host or "?",
                partitions=_assigned(m.assignment.topic_partitions if m.assignment else None),
                source="broker" if m.assignment and m.assignment.topic_partitions else "unknown",
            )
            for m in desc.members
        ]
        if state == "Dead" and not members:
            state = "absent"
        out[group] = (state, members)
    return out


def _state_name(state: ConsumerGroupState) -> str:
    name = state.name
    return {"STABLE": "Stable", "EMPTY": "Empty", "DEAD": "Dead", "PREPARING_REBALANCING": "PreparingRebalance",
            "COMPLETING_REBALANCING": "CompletingRebalance", "UNKNOWN": "Unknown"}.get(name, name)


def _assigned(tps: list[TopicPartition] | None) -> tuple[tuple[str, int], ...] | None:
    if not tps:
        return None
    return tuple(sorted((tp.topic, tp.partition) for tp in tps))


def _client_of(member_id: str) -> str:
    """Kafka clients name a member ``{client_id}-{uuid}``: recover the client id."""
    if len(member_id) > _UUID_SUFFIX and member_id[-_UUID_SUFFIX] == "-":
        return member_id[:-_UUID_SUFFIX]
    return member_id


async def _raw_members(servers: str, groups: list[str]) -> dict[str, list[MemberStatus]]:
    """Members from a raw DescribeGroups (aiokafka): what Tansu returns that confluent-kafka drops."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    responses = []
    try:
        for group in groups:  # one per request: a bad answer about one group spoils no other
            try:
                responses.extend(await admin.describe_consumer_groups([group]))
            except (ValueError, KafkaError) as exc:
                log.warning("DescribeGroups %s failed: %s", group, exc)
    finally:
        await admin.close()
    out: dict[str, list[MemberStatus]] = {}
    for response in responses:
        for entry in response.to_object()["groups"]:
            out[entry["group"]] = [
                MemberStatus(
                    member_id=m["member_id"], client_id=m["client_id"] or _client_of(m["member_id"]),
                    host=m["client_host"] or "?", partitions=None, source="unknown",
                )
                for m in entry["members"]
            ]
    return out


def _needs_reports(described: dict[str, tuple[str, list[MemberStatus]]]) -> bool:
    """Reports fill in partitions the broker does not give and every member's restart count."""
    return any(members for _, members in described.values())


async def _read_reports(settings: Settings, servers: str, metadata: Any) -> dict[str, dict[str, MemberReport]]:
    """group -> client id -> latest ``MemberReport``, read from the start of the stage-members topic."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka import TopicPartition as AioTopicPartition

    name = f"{settings.kafka.topic_prefix}{STAGE_MEMBERS.name}"
    if name not in metadata.topics:
        return {}
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    await consumer.start()
    latest: dict[str, dict[str, MemberReport]] = {}
    try:
        consumer.assign([AioTopicPartition(name, p) for p in metadata.topics[name].partitions])
        await consumer.seek_to_beginning()
        while batches := await consumer.getmany(timeout_ms=500):  # an idle fetch = the end (no end offsets)
            for records in batches.values():
                for record in records:
                    _keep_latest(latest, record.value)
    finally:
        await consumer.stop()
    return latest


def _keep_latest(latest: dict[str, dict[str, MemberReport]], raw: bytes | None) -> None:
    try:
        report = STAGE_MEMBERS.decode(raw)
    except SchemaError as exc:
        log.warning("skipping undecodable member report: %s", exc)
        return
    by_client = latest.setdefault(report.group, {})
    known = by_client.get(report.client_id)
    if known is None or known.timestamp <= report.timestamp:
        by_client[report.client_id] = report


def _with_report(member: MemberStatus, reports: dict[str, MemberReport]) -> MemberStatus:
    report = reports.get(member.client_id) or reports.get(_client_of(member.member_id))
    if report is None:
        return member
    if member.partitions is not None:
        return dataclasses.replace(member, restarts=report.restarts)
    return MemberStatus(
        member_id=member.member_id, client_id=member.client_id,
        host=member.host if member.host != "?" else report.host,
        partitions=tuple(sorted((t, p) for t, p in report.partitions)), source="reported",
        restarts=report.restarts,
    )


def _committed(admin: AdminClient, group: str, timeout: float) -> dict[tuple[str, int], int]:
    request = [ConsumerGroupTopicPartitions(group)]
    try:
        result = admin.list_consumer_group_offsets(request, request_timeout=timeout)[group].result()
    except KafkaException:
        return {}
    return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions or [] if tp.offset >= 0}


def _partitions_to_show(groups: list[Any], topic_sizes: dict[str, int]) -> dict[str, list[tuple[str, int]]]:
    """group -> every partition of every topic it committed on or is assigned (all partitions of the topic)."""
    wanted: dict[str, list[tuple[str, int]]] = {}
    for group, _role, _state, members, committed in groups:
        topics = {t for t, _ in committed}
        for m in members:
            topics.update(t for t, _ in m.partitions or ())
        wanted[group] = [(t, p) for t in sorted(topics) for p in range(topic_sizes.get(t, 0))]
    return wanted


def _end_offsets(
    admin: AdminClient, wanted: dict[str, list[tuple[str, int]]], timeout: float
) -> dict[tuple[str, int], int]:
    tps = {tp for parts in wanted.values() for tp in parts}
    if not tps:
        return {}
    request = {TopicPartition(t, p): OffsetSpec.latest() for t, p in tps}
    out: dict[tuple[str, int], int] = {}
    for tp, future in admin.list_offsets(request, request_timeout=timeout).items():
        try:
            out[(tp.topic, tp.partition)] = future.result().offset
        except KafkaException as exc:
            log.warning("no end offset for %s[%d]: %s", tp.topic, tp.partition, exc)
    return out


def _group_status(
    group: str, role: str, state: str, members: list[MemberStatus], committed: dict[tuple[str, int], int],
    wanted: dict[str, list[tuple[str, int]]], ends: dict[tuple[str, int], int],
) -> GroupStatus:
    owners = {tp: m.client_id for m in members for tp in m.partitions or ()}
    partitions = tuple(
        PartitionStatus(topic=t, partition=p, committed=committed.get((t, p)), end=ends.get((t, p)),
                        owner=owners.get((t, p)))
        for t, p in wanted.get(group, [])
    )
    return GroupStatus(group=group, role=role, state=state, members=tuple(members), partitions=partitions)


# ---------------------------------------------------------------- rendering


def render(status: ClusterStatus, topic_prefix: str = "") -> str:
    """A terminal table per group. Topic names are shown without ``topic_prefix``."""
    kind = "embedded Tansu" if status.embedded else "Kafka"
    lines = [f"broker {status.bootstrap} ({kind}, cluster {status.cluster_id or '?'})"]
    if status.embedded:
        lines.append(EMBEDDED_NOTE)
    for g in status.groups:
        lines.append("")
        lines.extend(_render_group(g, status.embedded, topic_prefix))
    return "\n".join(lines) + "\n"


def _short(topic: str, prefix: str) -> str:
    return topic[len(prefix):] if prefix and topic.startswith(prefix) else topic


def _render_group(g: GroupStatus, embedded: bool, prefix: str) -> list[str]:
    if g.state == "absent":
        return [f"{g.role}: group {g.group} - no worker has joined"]
    lag = "n/a" if embedded else ("?" if g.lag is None else str(g.lag))
    lines = [f"{g.role}: group {g.group}  state {g.state}  members {len(g.members)}  lag {lag}"]
    member_rows = [
        [m.client_id, m.host, _fmt_parts(m.partitions, prefix), m.source, _num(m.restarts)] for m in g.members
    ]
    if member_rows:
        lines.extend(_table(["member", "host", "partitions", "from", "restarts"], member_rows, indent=2))
    part_rows = [
        [_short(p.topic, prefix), str(p.partition), p.owner or "-", _num(p.committed),
         "n/a" if embedded else _num(p.end), "n/a" if embedded else _num(p.lag)]
        for p in g.partitions
    ]
    if part_rows:
        lines.extend(_table(["topic", "partition", "owner", "committed", "end", "lag"], part_rows, indent=2))
    return lines


def _fmt_parts(parts: tuple[tuple[str, int], ...] | None, prefix: str) -> str:
    if parts is None:
        return "?"
    by_topic: dict[str, list[int]] = {}
    for t, p in parts:
        by_topic.setdefault(_short(t, prefix), []).append(p)
    return " ".join(f"{t}[{','.join(map(str, sorted(ps)))}]" for t, ps in sorted(by_topic.items())) or "-"


def _num(value: int | None) -> str:
    return "-" if value is None else str(value)


def _table(header: list[str], rows: list[list[str]], indent: int) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    pad = " " * indent
    fmt = lambda r: pad + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
    return [fmt(header), *(fmt(r) for r in rows)]


def run(settings: Settings, *, bootstrap: str | None = None, embedded: bool | None = None) -> str:
    """Blocking entry for the CLI: the rendered status of every stage group.

    Raises ``SystemExit`` with a one-line reason when no broker is configured or it cannot be reached.
    """
    try:
        status = asyncio.run(collect(settings, bootstrap=bootstrap, embedded=embedded))
    except (RuntimeError, KafkaException) as exc:
        raise SystemExit(f"facestream ops status: {exc}") from exc
    return render(status, settings.kafka.topic_prefix)
