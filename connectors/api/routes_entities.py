"""CRUD: camera groups, cameras (-> ``cameras`` topic), watch lists and dossiers (-> ``gallery-changes``),
dossier faces (photo -> detect, quality check, descriptor -> media + SQL + Milvus -> gallery-changes)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web
from pydantic import Field

from connectors.api.auth import current_user
from connectors.api.core import ApiError, FormField, ListQuery, RouteTable, invalid, page, path_id
from connectors.api.references import crop, face_in_box, jpeg, photo, resolve
from connectors.api.state import ApiState, state
from connectors.api.uploads import Form, decode_image
from connectors.camera_health import mask_url
from connectors.sql.base import NotFoundError, new_id
from connectors.sql.entities import camera_changed, watch_list_changed
from connectors.url_policy import allowed
from schemas.api import (
    CameraGroupIn,
    CameraGroupOut,
    CameraGroupPatch,
    CameraIn,
    CameraOut,
    CameraPatch,
    DossierFaceOut,
    DossierIn,
    DossierOut,
    DossierPatch,
    EnrolIn,
    Page,
    WatchListIn,
    WatchListOut,
    WatchListPatch,
)
from schemas.messages import GalleryChange
from schemas.topics import CAMERAS, GALLERY

log = logging.getLogger(__name__)
routes = RouteTable()


# --- camera groups ------------------------------------------------------------------------------------------

@routes.add("GET", "/v1/camera-groups", "List camera groups", "cameras")
async def list_groups(request: web.Request, query: ListQuery) -> Page[CameraGroupOut]:
    return page(*await state(request).groups.list_page(query.limit, query.cursor))


@routes.add("POST", "/v1/camera-groups", "Create a camera group", "cameras", status=201)
async def create_group(request: web.Request, body: CameraGroupIn) -> CameraGroupOut:
    return await state(request).groups.create(body)


@routes.add("GET", "/v1/camera-groups/{id}", "Get a camera group", "cameras")
async def get_group(request: web.Request) -> CameraGroupOut:
    return await state(request).groups.get(path_id(request))


@routes.add("PATCH", "/v1/camera-groups/{id}", "Change a camera group", "cameras")
async def patch_group(request: web.Request, body: CameraGroupPatch) -> CameraGroupOut:
    return await state(request).groups.update(path_id(request), body.model_dump(exclude_unset=True))


@routes.add("DELETE", "/v1/camera-groups/{id}", "Delete a camera group without cameras", "cameras", errors=(409,))
async def delete_group(request: web.Request) -> None:
    await state(request).groups.delete(path_id(request))


# --- cameras ------------------------------------------------------------------------------------------------

@routes.add("GET", "/v1/cameras", "List cameras with their health", "cameras")
async def list_cameras(request: web.Request, query: ListQuery) -> Page[CameraOut]:
    cameras, cursor = await state(request).cameras.list_page(query.limit, query.cursor)
    return page([with_health(request, c) for c in cameras], cursor)


@routes.add("POST", "/v1/cameras", "Create a camera: an active camera starts decoding at once", "cameras",
            status=201, errors=(503,))
async def create_camera(request: web.Request, body: CameraIn) -> CameraOut:
    st = state(request)
    await allowed(body.url, "camera", st.settings)
    camera = await st.cameras.create(body)
    try:
        await st.publisher.publish(CAMERAS, camera.id, camera_changed(camera))
    except ApiError:
        await st.cameras.delete(camera.id)  # nothing partial: the camera does not exist
        raise
    return with_health(request, camera)


@routes.add("GET", "/v1/cameras/{id}", "Get a camera with its health (status, fps, frames, last error)",
            "cameras")
async def get_camera(request: web.Request) -> CameraOut:
    return with_health(request, await state(request).cameras.get(path_id(request)))


@routes.add("PATCH", "/v1/cameras/{id}", "Change a camera: the change applies to its running stream within "
            "2 s (a new URL, group or activation reopens that camera alone)", "cameras", errors=(503,))
async def patch_camera(request: web.Request, body: CameraPatch) -> CameraOut:
    st = state(request)
    await allowed(body.url, "camera", st.settings)
    changes = body.model_dump(exclude_unset=True)
    camera = await st.cameras.update(path_id(request), changes)
    await st.publisher.publish(CAMERAS, camera.id, camera_changed(camera))
    return with_health(request, camera)


def with_health(request: web.Request, camera: CameraOut) -> CameraOut:
    """The camera with its latest reported health; URL credentials masked below the admin role."""
    update = state(request).camera_health.fields(camera.id, camera.active)
    if current_user(request).role != "admin":
        update["url"] = mask_url(camera.url)
    return camera.model_copy(update=update)


@routes.add("DELETE", "/v1/cameras/{id}", "Delete a camera: its decoding stops", "cameras", errors=(503,))
async def delete_camera(request: web.Request) -> None:
    st = state(request)
    camera = await st.cameras.get(path_id(request))
    await st.cameras.delete(camera.id)
    await st.publisher.publish(CAMERAS, camera.id, camera_changed(camera, deleted=True))


# --- watch lists --------------------------------------------------------------------------------------------

@routes.add("GET", "/v1/watch-lists", "List watch lists", "watch lists")
async def list_watch_lists(request: web.Request, query: ListQuery) -> Page[WatchListOut]:
    return page(*await state(request).watch_lists.list_page(query.limit, query.cursor))


@routes.add("POST", "/v1/watch-lists", "Create a watch list", "watch lists", status=201, errors=(503,))
async def create_watch_list(request: web.Request, body: WatchListIn) -> WatchListOut:
    st = state(request)
    wl = await st.watch_lists.create(body)
    try:
        await st.publisher.publish(GALLERY, wl.id, watch_list_changed(wl))
    except ApiError:
        await st.watch_lists.delete(wl.id)
        raise
    return wl


@routes.add("GET", "/v1/watch-lists/{id}", "Get a watch list", "watch lists")
async def get_watch_list(request: web.Request) -> WatchListOut:
    return await state(request).watch_lists.get(path_id(request))


@routes.add("PATCH", "/v1/watch-lists/{id}", "Change a watch list", "watch lists", errors=(503,))
async def patch_watch_list(request: web.Request, body: WatchListPatch) -> WatchListOut:
    st = state(request)
    wl = await st.watch_lists.update(path_id(request), body.model_dump(exclude_unset=True))
    await st.publisher.publish(GALLERY, wl.id, watch_list_changed(wl))
    return wl


@routes.add("DELETE", "/v1/watch-lists/{id}", "Delete a watch list (its dossiers stay, without it)",
            "watch lists", errors=(503,))
async def delete_watch_list(request: web.Request) -> None:
    st = state(request)
    wl = await st.watch_lists.get(path_id(request))
    members = await st.watch_lists.dossier_ids(wl.id)
    await st.watch_lists.delete(wl.id)
    await st.publisher.publish(GALLERY, wl.id, watch_list_changed(wl, deleted=True))
    for dossier_id in members:
        await publish_dossier(st, dossier_id)


# --- dossiers -----------------------------------------------------------------------------------------------

class DossierQuery(ListQuery):
    watch_list: str | None = Field(None, max_length=128, description="Only dossiers in this watch list.")


async def publish_dossier(st: ApiState, dossier_id: str) -> None:
    """Sync a dossier's vectors' scalar fields and publish its full state to ``gallery-changes``."""
    change = await st.dossiers.gallery_state(dossier_id)
    if change.deleted:
        await st.vectors.delete_dossier(dossier_id)
    else:
        await st.vectors.upsert_dossier_faces(dossier_id, [(f.face_id, f.descriptor) for f in change.faces],
                                              change.watch_list_ids, change.active)
    await st.publisher.publish(GALLERY, dossier_id, GalleryChange(dossier=change))


@routes.add("GET", "/v1/dossiers", "List dossiers", "dossiers")
async def list_dossiers(request: web.Request, query: DossierQuery) -> Page[DossierOut]:
    return page(*await state(request).dossiers.list_page(query.limit, query.cursor, query.watch_list))


@routes.add("POST", "/v1/dossiers", "Create a dossier (add faces with POST /v1/dossiers/{id}/faces)", "dossiers",
            status=201, errors=(503,))
async def create_dossier(request: web.Request, body: DossierIn) -> DossierOut:
    st = state(request)
    dossier = await st.dossiers.create(body)
    try:
        await publish_dossier(st, dossier.id)
    except ApiError:
        await st.dossiers.delete(dossier.id)
        raise
    return dossier


@routes.add("GET", "/v1/dossiers/{id}", "Get a dossier with its faces", "dossiers")
async def get_dossier(request: web.Request) -> DossierOut:
    return await state(request).dossiers.get(path_id(request))


@routes.add("PATCH", "/v1/dossiers/{id}", "Change a dossier", "dossiers", errors=(503,))
async def patch_dossier(request: web.Request, body: DossierPatch) -> DossierOut:
    st = state(request)
    dossier = await st.dossiers.update(path_id(request), body.model_dump(exclude_unset=True))
    await publish_dossier(st, dossier.id)
    return dossier


@routes.add("DELETE", "/v1/dossiers/{id}", "Delete a dossier, its photos and vectors", "dossiers", errors=(503,))
async def delete_dossier(request: web.Request) -> None:
    st = state(request)
    ident = path_id(request)
    keys = await st.dossiers.delete(ident)
    await asyncio.get_running_loop().run_in_executor(None, _delete_media, st, keys)
    await publish_dossier(st, ident)


def _delete_media(st: ApiState, keys: list[str]) -> None:
    for key in keys:
        st.media.delete(key)


@routes.add("POST", "/v1/dossiers/{id}/faces", "Enrol a face: a photo's face (the only one, the largest, or the "
            "one in `box` of a group photo) or a known face by reference (`face`: detection:, event:, "
            "dossierface:); it is quality-checked and described", "dossiers",
            form=(FormField("photo", "The portrait or group photo (JPEG, PNG, ...), or use `face`.", file=True,
                            required=False),),
            status=201, errors=(503,))
async def add_face(request: web.Request, body: EnrolIn, form: Form) -> DossierFaceOut:
    st = state(request)
    dossier_id = path_id(request)
    await st.dossiers.get(dossier_id)
    image, bbox, quality, descriptor = await _face_to_enrol(st, body, form)
    if quality < st.settings.api.enrol_min_quality:
        raise ApiError(422, f"face quality {quality:.2f} is below the minimum {st.settings.api.enrol_min_quality:.2f} "
                            "(blurred, too small or turned away)", [{"loc": ["face" if body.face else "photo"],
                                                                     "msg": "low quality"}], "low_quality")
    face_id = new_id()
    key = f"dossiers/{dossier_id}/{face_id}.jpg"
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, st.media.put, key, image, "image/jpeg")
    try:
        out = await st.dossiers.add_face(dossier_id, face_id, key, quality, bbox, descriptor)
        await publish_dossier(st, dossier_id)
    except BaseException:
        await _undo_face(st, dossier_id, face_id, key)
        raise
    return out


async def _face_to_enrol(st: ApiState, body: EnrolIn, form: Form
                         ) -> tuple[bytes, tuple[float, float, float, float], float, list[float]]:
    """(JPEG of the dossier photo, the face's box in it, quality, descriptor) of what the request names."""
    loop = asyncio.get_running_loop()
    if body.face is not None:
        if "photo" in form.files or body.box is not None:
            raise invalid("face", "give a photo (with box or choose) or face, not both")
        known = await resolve(st, body.face, "face")
        if known.image_key is None:
            raise invalid("face", "the referenced face has no stored image")
        data = await loop.run_in_executor(None, st.media.get, known.image_key)
        image = await loop.run_in_executor(None, decode_image, data, st.settings.api.max_image_pixels, "face")
        height, width = image.shape[:2]
        box = known.bbox or (0.0, 0.0, float(width), float(height))  # an event's thumbnail is the face
        if known.bbox is not None and body.face.startswith("detection:"):  # one face of a (group) photo
            image, box = crop(image, known.bbox)
        return jpeg(image), box, known.quality, known.descriptor.tolist()
    image = await photo(st, form, "photo")
    if body.box is not None:
        faces = await st.faces.analyse(image)
        face = face_in_box(faces, body.box)
        image, box = crop(image, face.bbox)
    else:
        face = await st.faces.one_face(image, body.choose)
        box = face.bbox
    assert face.descriptor is not None
    return jpeg(image), box, face.quality, face.descriptor.tolist()


async def _undo_face(st: ApiState, dossier_id: str, face_id: str, key: str) -> None:
    with contextlib.suppress(NotFoundError):
        await st.dossiers.delete_face(dossier_id, face_id)
    with contextlib.suppress(Exception):
        await st.vectors.delete_dossier_faces([face_id])
    await asyncio.get_running_loop().run_in_executor(None, st.media.delete, key)


@routes.add("DELETE", "/v1/dossiers/{id}/faces/{face_id}", "Remove an enrolled photo", "dossiers", errors=(503,))
async def delete_face(request: web.Request) -> None:
    st = state(request)
    dossier_id, face_id = path_id(request), path_id(request, "face_id")
    key = await st.dossiers.delete_face(dossier_id, face_id)
    await st.vectors.delete_dossier_faces([face_id])
    await asyncio.get_running_loop().run_in_executor(None, st.media.delete, key)
    await publish_dossier(st, dossier_id)
