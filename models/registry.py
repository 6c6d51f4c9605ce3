"""The detector and descriptor plug-in registry: the shipped plug-ins, ``register_*``, and the entry-point
groups ``facestream.detectors`` / ``facestream.descriptors`` for third-party ones (contracts: ``models.plugins``).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel, ValidationError

from models.descriptors import dlib_resnet
from models.detectors import centerface
from models.plugins import DescriptorPlugin, DetectorPlugin, FaceDescriptor, FaceDetector, Paths, PluginError

if TYPE_CHECKING:
    from models.config import ModelSettings

DETECTOR_GROUP = "facestream.detectors"
DESCRIPTOR_GROUP = "facestream.descriptors"

_DETECTORS: dict[str, DetectorPlugin] = {centerface.PLUGIN.name: centerface.PLUGIN}
_DESCRIPTORS: dict[str, DescriptorPlugin] = {dlib_resnet.PLUGIN.name: dlib_resnet.PLUGIN}


def register_detector(plugin: DetectorPlugin) -> None:
    """Add (or replace) a detector plug-in under ``plugin.name``."""
    _DETECTORS[plugin.name] = plugin


def register_descriptor(plugin: DescriptorPlugin) -> None:
    """Add (or replace) a descriptor plug-in under ``plugin.name``."""
    _DESCRIPTORS[plugin.name] = plugin


P = TypeVar("P", DetectorPlugin, DescriptorPlugin)


def _lookup(name: str, registry: dict[str, P], group: str, kind: str) -> P:
    if name not in registry:
        for entry in entry_points(group=group):
            if entry.name == name:
                registry[name] = entry.load()
    if name not in registry:
        raise PluginError(f"unknown {kind} plug-in {name!r}; known: {sorted(registry)} "
                          f"(third-party plug-ins: entry-point group {group!r})")
    return registry[name]


def detector_plugin(name: str) -> DetectorPlugin:
    """The detector plug-in called ``name`` (registry, then entry points). Raises ``PluginError``."""
    return _lookup(name, _DETECTORS, DETECTOR_GROUP, "detector")


def descriptor_plugin(name: str) -> DescriptorPlugin:
    """The descriptor plug-in called ``name`` (registry, then entry points). Raises ``PluginError``."""
    return _lookup(name, _DESCRIPTORS, DESCRIPTOR_GROUP, "descriptor")


def _configure(plugin: DetectorPlugin | DescriptorPlugin, options: dict[str, object],
               settings: ModelSettings) -> BaseModel:
    try:
        return plugin.configure(settings) if plugin.configure else plugin.config.model_validate(options)
    except ValidationError as exc:
        raise PluginError(f"{plugin.name} options: {exc}") from exc


def open_detector(settings: ModelSettings, paths: Paths) -> FaceDetector:
    """The detector ``settings.detector`` names, configured and opened."""
    plugin = detector_plugin(settings.detector)
    return plugin.open(_configure(plugin, dict(settings.detector_options), settings), settings, paths)


def open_descriptor(settings: ModelSettings, paths: Paths) -> FaceDescriptor:
    """The descriptor ``settings.descriptor`` names, configured and opened."""
    plugin = descriptor_plugin(settings.descriptor)
    return plugin.open(_configure(plugin, dict(settings.descriptor_options), settings), settings, paths)
