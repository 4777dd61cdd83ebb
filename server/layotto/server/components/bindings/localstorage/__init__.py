"""Dapr's ``bindings.localstorage``: files under ``rootPath``, on the File API's ``local`` store
(:mod:`layotto.server.components.bindings.files` says what each operation does).

``list`` answers a JSON list of the names below the directory ``fileName`` (every file when it is
empty), relative to ``rootPath``, so each can be passed to ``get`` as it is (Dapr's answers absolute
paths, which its ``get`` does not take back).
"""

from __future__ import annotations

from layotto.server.components.base import ComponentSpec, Feature
from layotto.server.components.bindings.files import MAX_GET_BYTES, OPERATIONS, FileBinding
from layotto.server.components.file.local import LocalFileStore


class LocalStorageBinding(FileBinding):
    store_class = LocalFileStore
    name_key = "fileName"
    spec = ComponentSpec(
        type="localstorage",
        building_block="bindings",
        description="Files in a local directory (Dapr's bindings.localstorage), on the File API's local store: "
        "names that lead out of `rootPath` are refused, writes are atomic; request metadata `fileName` names "
        'the file (`create` without it: a new UUID), `decodeBase64: "true"` decodes `create`\'s data.',
        features=frozenset({Feature.OUTPUT_BINDING}),
        operations=OPERATIONS,
        metadata=(*LocalFileStore.spec.metadata, MAX_GET_BYTES),
    )
