"""How podstore keeps pods and containers on the node: containers/storage.

The seed's intermediate API in Python form. ``Store`` is one store driven
through the ``containers-storage`` command line, ``ImageService`` pulls and
inspects images through ``skopeo``, ``RuntimeService`` keeps pods as sets of
containers. This package never imports kopf: the operator and the
manifest-file mode both stand on it.
"""

from controller.storage import errors
from controller.storage.images import ImageConfig, ImageInfo, ImageService
from controller.storage.metadata import RuntimeContainerMetadata
from controller.storage.ocispec import ProcessSpec, build_template, render
from controller.storage.runtime import (
    ContainerInfo,
    ContainerRequest,
    ManagedContainer,
    RuntimeService,
    new_id,
)
from controller.storage.store import StorageContainer, StorageImage, Store

__all__ = [
    "ContainerInfo",
    "ContainerRequest",
    "ImageConfig",
    "ImageInfo",
    "ImageService",
    "ManagedContainer",
    "ProcessSpec",
    "RuntimeContainerMetadata",
    "RuntimeService",
    "StorageContainer",
    "StorageImage",
    "Store",
    "build_template",
    "errors",
    "new_id",
    "render",
]
