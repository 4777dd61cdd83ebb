"""Dapr component manifests (apiVersion dapr.io/v1alpha1, kind Component) from a directory.

Users bring the component files they run Dapr with::

    apiVersion: dapr.io/v1alpha1
    kind: Component
    metadata: {name: statestore}
    spec:
      type: state.redis
      version: v1
      metadata:
      - {name: redisHost, value: "localhost:6379"}

A Configuration manifest's ``spec.secrets.scopes`` (which secrets the app may read) and
``spec.accessControl`` are honoured, the rest of a Configuration is skipped; so is a Resiliency
manifest (its ``spec``: policies and targets) whose ``scopes`` list this app id or that has none;
Subscription manifests (v1alpha1 and v2alpha1, with ``scopes``) declare the app's subscriptions.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from layotto.server.components.base import ConfigError, read_config_text
from layotto.server.components.secretrefs import SecretRef, dapr_secret_ref
from layotto.server.errors import InvalidArgument
from layotto.server.runtime.subscriptions import TopicSubscription, from_manifest

log = logging.getLogger(__name__)

#: Dapr's building-block prefix of spec.type -> this runtime's config section
DAPR_BLOCKS = {
    "state": "state",
    "pubsub": "pubsub",
    "lock": "lock",
    "secretstores": "secret_store",
    "configuration": "config_store",
    "crypto": "crypto",
    "bindings": "bindings",
}
#: the kinds of Dapr's manifests (dapr.io)
DAPR_KINDS = ("Component", "Configuration", "Resiliency", "Subscription", "HTTPEndpoint")
#: the kinds their own loaders read (load_secret_scopes, load_access_control, load_resiliency, load_subscriptions)
READ_ELSEWHERE = ("Configuration", "Resiliency", "Subscription")
#: the keys of Dapr's ComponentSpec
SPEC_KEYS = frozenset({"type", "version", "metadata", "initTimeout", "ignoreErrors"})
#: Dapr metadata keys that change nothing here and are accepted silently
IGNORED_KEYS = frozenset({"actorStateStore", "direction"})  # direction: a binding's spec says what it does
#: Dapr's type names that differ from ours
TYPE_ALIASES = {
    ("state", "postgres"): "postgresql",
    ("crypto", "dapr.localstorage"): "local",
    ("crypto", "dapr.jwks"): "jwks",
    ("bindings", "postgres"): "postgresql",
    ("bindings", "aws.s3"): "s3",
}


def _metadata(items: Any, secret_store: Any, where: str) -> tuple[dict[str, str], tuple[SecretRef, ...]]:
    """Inline values, and the values to read from ``secret_store`` (the manifest's auth.secretStore)."""
    if items is None:
        return {}, ()
    if not isinstance(items, list):
        raise ConfigError(f"{where}: expected a list of {{name, value}}")
    out, refs = {}, []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "name" not in item:
            raise ConfigError(f"{where}[{i}]: expected {{name, value}}")
        name = str(item["name"])
        if name in IGNORED_KEYS:
            continue
        if "secretKeyRef" in item:
            refs.append(dapr_secret_ref(name, item["secretKeyRef"], secret_store, f"{where}[{i}] ({name})"))
            continue
        value = item.get("value", "")
        out[name] = value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    return out, tuple(refs)


Manifest = tuple[str, str, str, dict[str, str], tuple[SecretRef, ...]]


def _component(doc: dict[str, Any], where: str) -> Manifest:
    name = (doc.get("metadata") or {}).get("name")
    spec = doc.get("spec") or {}
    if not name:
        raise ConfigError(f"{where}: metadata.name is required")
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: spec: expected a mapping (type, version, metadata, ...)")
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:  # a misspelt `metadata:` would load the component with none
        raise ConfigError(f"{where}: spec.{unknown[0]}: unknown key (known: {', '.join(sorted(SPEC_KEYS))})")
    dapr_type = str(spec.get("type", ""))
    prefix, _, type_name = dapr_type.partition(".")
    if not type_name:
        raise ConfigError(f"{where}: spec.type: expected BLOCK.TYPE such as state.redis, got {dapr_type!r}")
    block = DAPR_BLOCKS.get(prefix)
    if block is None:
        raise ConfigError(
            f"{where}: spec.type: {prefix} components are not served yet (served: {', '.join(DAPR_BLOCKS)})"
        )
    type_name = TYPE_ALIASES.get((block, type_name), type_name)
    secret_store = (doc.get("auth") or {}).get("secretStore")
    metadata, refs = _metadata(spec.get("metadata"), secret_store, f"{where}: spec.metadata")
    return block, str(name), type_name, metadata, refs


def _documents(directory: Path) -> list[tuple[str, Any]]:
    """(where, document) of every YAML document of the directory's manifests."""
    if not directory.is_dir():
        raise ConfigError(f"components_path: {directory} is not a directory")
    found = []
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            docs = list(yaml.safe_load_all(read_config_text(path, "components_path")))
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {getattr(error, 'problem', error)}") from None
        for index, doc in enumerate(d for d in docs if d):
            found.append((f"{path}" + (f" (document {index + 1})" if len(docs) > 1 else ""), doc))
    return found


def load_manifests(directory: Path) -> list[Manifest]:
    """(block, name, type, metadata, secret references) for every Component manifest under ``directory``."""
    return [manifest for _, manifest in located_manifests(directory)]


def located_manifests(directory: Path, app_id: str | None = None) -> list[tuple[str, Manifest]]:
    """(where: the file, and the document's number in it when it has several; the manifest) for
    every Component manifest under ``directory``; with ``app_id``, only those whose ``scopes`` name
    it or that have none (Dapr loads a scoped component only in the apps its scopes list)."""
    found = []
    for where, doc in _documents(directory):
        kind = doc.get("kind") if isinstance(doc, dict) else None
        if kind in READ_ELSEWHERE:
            continue
        if kind != "Component":
            if kind in DAPR_KINDS:  # not served
                log.info("%s: skipping kind %s", where, kind)
            else:  # a misspelt kind: Component would leave a component out without a word
                log.warning("%s: kind %r is not a Dapr manifest kind (%s): skipped", where, kind, ", ".join(DAPR_KINDS))
            continue
        if not str(doc.get("apiVersion", "")).startswith("dapr.io/"):
            raise ConfigError(f"{where}: apiVersion: expected dapr.io/v1alpha1, got {doc.get('apiVersion')!r}")
        manifest = _component(doc, where)
        if app_id is not None and not _in_scope(doc, where, app_id, f"component {manifest[1]!r}"):
            continue
        found.append((where, manifest))
    return found


def _in_scope(doc: dict[str, Any], where: str, app_id: str, what: str) -> bool:
    """Whether the manifest applies to ``app_id``: its ``scopes`` (a list of app ids) name it, or it
    has none (Dapr's rule for components and resiliency); a skipped one is logged."""
    scopes = doc.get("scopes")
    if scopes is not None and not (isinstance(scopes, list) and all(isinstance(s, str) for s in scopes)):
        raise ConfigError(f"{where}: scopes: expected a list of app ids, got {scopes!r}")
    if scopes and app_id not in scopes:
        log.info("%s: %s scoped to %s, not to app %r: skipped", where, what, ", ".join(scopes), app_id)
        return False
    return True


def load_secret_scopes(directory: Path) -> list[tuple[str, Any]]:
    """(where, raw ``spec.secrets.scopes``) of every Dapr Configuration manifest under ``directory``."""
    return [
        (f"{where}: spec.secrets.scopes", doc["spec"]["secrets"]["scopes"])
        for where, doc in _documents(directory)
        if isinstance(doc, dict)
        and doc.get("kind") == "Configuration"
        and isinstance(doc.get("spec"), dict)
        and isinstance(doc["spec"].get("secrets"), dict)
        and "scopes" in doc["spec"]["secrets"]
    ]


def load_access_control(directory: Path) -> list[tuple[str, Any]]:
    """(where, raw ``spec.accessControl``) of every Dapr Configuration manifest under ``directory``."""
    return [
        (f"{where}: spec.accessControl", doc["spec"]["accessControl"])
        for where, doc in _documents(directory)
        if isinstance(doc, dict)
        and doc.get("kind") == "Configuration"
        and isinstance(doc.get("spec"), dict)
        and "accessControl" in doc["spec"]
    ]


def load_resiliency(directory: Path, app_id: str) -> list[tuple[str, Any]]:
    """(where, raw ``spec``) of every Resiliency manifest under ``directory`` that applies to
    ``app_id``: its ``scopes`` name it, or it has none (Dapr's rule)."""
    found = []
    for where, doc in _documents(directory):
        if not isinstance(doc, dict) or doc.get("kind") != "Resiliency":
            continue
        if not str(doc.get("apiVersion", "")).startswith("dapr.io/"):
            raise ConfigError(f"{where}: apiVersion: expected dapr.io/v1alpha1, got {doc.get('apiVersion')!r}")
        if not _in_scope(doc, where, app_id, "resiliency"):
            continue
        if "spec" not in doc:
            raise ConfigError(f"{where}: spec is required (policies, targets)")
        found.append((f"{where}: spec", doc["spec"]))
    return found


def load_subscriptions(directory: Path) -> list[TopicSubscription]:
    """The subscriptions of every Dapr Subscription manifest under ``directory``; a ConfigError (one
    line naming the file and the field) when one is wrong, a routing rule's CEL match included."""
    found = []
    for where, doc in _documents(directory):
        if isinstance(doc, dict) and doc.get("kind") == "Subscription":
            try:
                found.append(from_manifest(doc, where))
            except InvalidArgument as error:
                raise ConfigError(error.message) from None
    return found
