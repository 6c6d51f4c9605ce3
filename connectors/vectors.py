"""Descriptor store and search engine: Milvus (Lite file by default, a server when ``store.milvus_uri`` is set).

Two collections of L2-normalised 128-D float32 descriptors, COSINE metric (so a search's ``distance`` is the
cosine similarity, in [-1, 1]; for unit vectors the Euclidean distance is ``sqrt(2 - 2 * cosine)``):

- ``dossier_faces``: one row per enrolled photo: id (face id), dossier_id, watch_lists, active.
- ``event_faces``: one row per event: id (event id), camera, camera_group, timestamp (UNIX s), matched,
  dossier_id ("" when unmatched), watch_lists.

Index: FLAT on Milvus Lite (it falls back to brute force anyway and exact is best there), HNSW on a server.

Consistency: every search and query asks for ``Strong`` consistency, so it sees every write acknowledged
before it, by any process (the store role writes events, the API searches them). A Milvus server's default
(Bounded) answered a search right after an upsert with nothing for ~0.5 s. Milvus Lite is always strong.
Milvus Lite is synchronous, single-process (one process may open a file) and slow-ish: every call runs on one
dedicated worker thread, so callers simply ``await``. Share one ``VectorStore`` per process via ``open_vectors``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pipeline.settings import Settings
from schemas.api import EventFilters
from schemas.messages import FaceEvent

log = logging.getLogger(__name__)

DIM = 128
DOSSIER_FACES = "dossier_faces"
EVENT_FACES = "event_faces"
MAX_WATCH_LISTS = 64
R = TypeVar("R")
CONSISTENCY = "Strong"


class VectorStoreError(RuntimeError):
    """The vector store cannot be opened (the message says why and what to do)."""


@dataclass(frozen=True)
class VectorHit:
    id: str  # face id (dossier_faces) or event id (event_faces)
    cosine: float  # similarity in [-1, 1]
    fields: dict[str, Any]


def milvus_uri(settings: Settings) -> str:
    return settings.store.milvus_uri or str((Path(settings.data_dir) / "milvus.db").resolve())


def quote(value: str) -> str:
    """A string literal for a Milvus filter expression."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def event_filter_expr(f: EventFilters, watch_lists: Sequence[str] = ()) -> str:
    """A Milvus boolean expression for the event filters that ``event_faces`` holds (not ``acknowledged``
    nor ``min_confidence``: those are applied on the SQL rows)."""
    parts: list[str] = []
    if f.camera is not None:
        parts.append(f"camera == {quote(f.camera)}")
    if f.camera_group is not None:
        parts.append(f"camera_group == {quote(f.camera_group)}")
    if f.dossier is not None:
        parts.append(f"dossier_id == {quote(f.dossier)}")
    if f.matched is not None:
        parts.append(f"matched == {'true' if f.matched else 'false'}")
    if f.since is not None:
        parts.append(f"timestamp >= {float(f.since)!r}")
    if f.until is not None:
        parts.append(f"timestamp < {float(f.until)!r}")
    if f.watch_list is not None:
        parts.append(f"array_contains(watch_lists, {quote(f.watch_list)})")
    if watch_lists:
        parts.append(f"array_contains_any(watch_lists, [{', '.join(quote(w) for w in watch_lists)}])")
    return " and ".join(parts)


class VectorStore:
    """Async facade over a ``MilvusClient``; ``await start()`` before use, ``await close()`` after."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.is_lite = not uri.startswith(("http://", "https://", "tcp://", "unix:"))
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="milvus")
        self._client: Any = None
        self._users = 0
        self._lock = asyncio.Lock()

    async def _call(self, fn: Callable[..., R], *args: Any) -> R:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def start(self) -> None:
        async with self._lock:
            if self._client is None:
                await self._call(self._open)
            self._users += 1

    def _open(self) -> None:
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException

        if self.is_lite:
            if importlib.util.find_spec("milvus_lite") is None:
                raise VectorStoreError("a Milvus Lite file needs milvus-lite: pip install 'facestream[embedded]', "
                                       "or set FACESTREAM_STORE_MILVUS_URI to a Milvus server")
            Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
        client = MilvusClient(self.uri)
        for name, schema in ((DOSSIER_FACES, self._dossier_schema()), (EVENT_FACES, self._event_schema())):
            if not client.has_collection(name):
                try:
                    client.create_collection(name, schema=schema, index_params=self._index(client),
                                             consistency_level=CONSISTENCY)
                except MilvusException:
                    if not client.has_collection(name):  # else another role created it at the same moment
                        raise
            self._index_and_load(client, name)
        self._client = client

    def _index_and_load(self, client: Any, name: str) -> None:
        """Load ``name``, first adding its index if it has none. create_collection with index parameters is
        three calls (create, index, load): a role starting beside the one creating it can find the collection
        before its index, and Milvus refuses to load it ("index not found"; seen with roles started at once)."""
        from pymilvus.exceptions import MilvusException

        if not client.list_indexes(name):
            try:
                client.create_index(name, self._index(client))
            except MilvusException:
                if not client.list_indexes(name):  # else the creating role added it at the same moment
                    raise
        client.load_collection(name)

    def _index(self, client: Any) -> Any:
        params = client.prepare_index_params()
        if self.is_lite:
            params.add_index(field_name="vector", index_type="FLAT", metric_type="COSINE")
        else:
            params.add_index(field_name="vector", index_type="HNSW", metric_type="COSINE",
                             params={"M": 16, "efConstruction": 200})
        return params

    @staticmethod
    def _base_schema() -> Any:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=256)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
        schema.add_field("dossier_id", DataType.VARCHAR, max_length=64)
        schema.add_field("watch_lists", DataType.ARRAY, element_type=DataType.VARCHAR,
                         max_capacity=MAX_WATCH_LISTS, max_length=64)
        return schema

    def _dossier_schema(self) -> Any:
        from pymilvus import DataType

        schema = self._base_schema()
        schema.add_field("active", DataType.BOOL)
        return schema

    def _event_schema(self) -> Any:
        from pymilvus import DataType

        schema = self._base_schema()
        schema.add_field("camera", DataType.VARCHAR, max_length=128)
        schema.add_field("camera_group", DataType.VARCHAR, max_length=64)
        schema.add_field("timestamp", DataType.DOUBLE)
        schema.add_field("matched", DataType.BOOL)
        return schema

    async def close(self) -> None:
        self._users -= 1
        if self._users > 0 or self._client is None:
            return
        client, self._client = self._client, None
        await self._call(client.close)
        _shared.pop(self.uri, None)

    # --- events ---------------------------------------------------------------------------------------------

    async def upsert_events(self, events: Sequence[FaceEvent]) -> None:
        """Idempotent on event id."""
        rows = [{"id": e.event_id, "vector": list(e.descriptor), "camera": e.camera_id,
                 "camera_group": e.camera_group, "timestamp": float(e.timestamp), "matched": e.matched,
                 "dossier_id": e.dossier_id or "", "watch_lists": sorted(set(e.watch_list_ids))[:MAX_WATCH_LISTS]}
                for e in {e.event_id: e for e in events}.values()]
        if rows:
            await self._call(self._client.upsert, EVENT_FACES, rows)

    async def delete_events(self, ids: Sequence[str]) -> None:
        if ids:
            await self._call(lambda: self._client.delete(EVENT_FACES, ids=list(ids)))

    async def search_events(self, vector: Sequence[float], limit: int, filters: EventFilters | None = None,
                            watch_lists: Sequence[str] = ()) -> list[VectorHit]:
        """Nearest events; ``watch_lists``: only events matched in one of them."""
        expr = event_filter_expr(filters or EventFilters(), watch_lists)
        return await self._search(EVENT_FACES, vector, limit, expr, ["camera", "timestamp", "matched"])

    async def count(self, collection: str) -> int:
        def run() -> int:
            rows = self._client.query(collection, filter="", output_fields=["count(*)"],
                                      consistency_level=CONSISTENCY)
            return int(rows[0]["count(*)"])
        return await self._call(run)

    # --- dossiers -------------------------------------------------------------------------------------------

    async def upsert_dossier_faces(self, dossier_id: str, faces: Sequence[tuple[str, Sequence[float]]],
                                   watch_list_ids: Sequence[str], active: bool) -> None:
        """Store (or refresh the scalar fields of) a dossier's faces: (face id, descriptor) pairs."""
        rows = [{"id": fid, "vector": list(vec), "dossier_id": dossier_id, "active": active,
                 "watch_lists": sorted(set(watch_list_ids))[:MAX_WATCH_LISTS]} for fid, vec in faces]
        if rows:
            await self._call(self._client.upsert, DOSSIER_FACES, rows)

    async def delete_dossier_faces(self, face_ids: Sequence[str]) -> None:
        if face_ids:
            await self._call(lambda: self._client.delete(DOSSIER_FACES, ids=list(face_ids)))

    async def delete_dossier(self, dossier_id: str) -> None:
        await self._call(lambda: self._client.delete(DOSSIER_FACES, filter=f"dossier_id == {quote(dossier_id)}"))

    async def search_dossier_faces(self, vector: Sequence[float], limit: int, active_only: bool = True,
                                   watch_lists: Sequence[str] = (), watch_list: str | None = None
                                   ) -> list[VectorHit]:
        """Nearest dossier faces; ``watch_lists``: only faces of dossiers in one of them; ``watch_list``: only
        those in this one (both: both hold, as for events)."""
        parts = ["active == true"] if active_only else []
        if watch_list is not None:
            parts.append(f"array_contains(watch_lists, {quote(watch_list)})")
        if watch_lists:
            parts.append(f"array_contains_any(watch_lists, [{', '.join(quote(w) for w in watch_lists)}])")
        return await self._search(DOSSIER_FACES, vector, limit, " and ".join(parts), ["dossier_id"])

    async def event_vectors(self, ids: Sequence[str]) -> dict[str, list[float]]:
        """The stored descriptors of these events (those it has)."""
        if not ids:
            return {}
        rows = await self._call(lambda: self._client.query(EVENT_FACES, ids=list(ids), output_fields=["vector"]))
        return {str(r["id"]): [float(v) for v in r["vector"]] for r in rows}

    async def _search(self, collection: str, vector: Sequence[float], limit: int, expr: str,
                      fields: list[str]) -> list[VectorHit]:
        def run() -> list[VectorHit]:
            kwargs: dict[str, Any] = {"data": [list(vector)], "limit": limit, "output_fields": fields,
                                      "search_params": {"metric_type": "COSINE"},
                                      "consistency_level": CONSISTENCY}
            if expr:
                kwargs["filter"] = expr
            result = self._client.search(collection, **kwargs)
            return [VectorHit(h["id"], float(h["distance"]), dict(h.get("entity", {}))) for h in result[0]]
        return await self._call(run)


_shared: dict[str, VectorStore] = {}


async def open_vectors(settings: Settings) -> VectorStore:
    """The process-wide ``VectorStore`` for the configured URI (Milvus Lite allows one client per file per
    process); started; call ``close()`` once per ``open_vectors``."""
    uri = milvus_uri(settings)
    store = _shared.get(uri)
    if store is None:
        store = _shared[uri] = VectorStore(uri)
    await store.start()
    return store
