"""The configuration from Kubernetes: the file plus the countersign.dev resources, kept in service.

`KubeSource` runs five informers (ClusterImagePolicies, Verifiers, ImagePolicies, and the Secrets and
ConfigMaps of the provider's namespace). Once every one has listed its collection, and ~0.3 s after any
later change (debounced), it recomposes:

1. `provider.kube.resources.compose` merges the file's document with the resources (resources win by
   name; invalid ones are left out, their last valid spec keeps serving);
2. every Verifier's `spec.files` is materialized from the watched Secrets/ConfigMaps into a private
   content-addressed directory (`<runtime>/files/<sha256>`, 0700) that becomes its confined `base_dir`;
   directories no generation uses any more are removed;
3. the operator's registry credentials (`kubernetes.pullSecrets`) are written as a docker config there
   too and put first in `Config.docker_configs`;
4. the engine is built (`Engine.create`); a failure `attribute` pins on resources drops
   them (they turn Invalid) and the rest is built again; the new generation is swapped in through
   `ConfigReloader`, whose file watch also makes this run again;
5. each resource's status is patched when it changed (`provider.kube.status`).

Nothing is rebuilt when the composed configuration (its fingerprint covers the file, the resources in
service and their files' digests) and the operator's credentials are what is already serving: a Secret or
ConfigMap nobody references changed, or only a resource's status did. Only statuses are brought up to date
then (the engine and its caches stay). A change of the file, and SIGHUP, always rebuild.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from provider.config import Config, ConfigError, read_config_yaml
from provider.engine import Engine
from provider.kube.api import KubeApi, KubeApiError, default_namespace, resource_path
from provider.kube.informer import Informer, left_out
from provider.kube.pullsecrets import PullSecrets
from provider.kube.resources import (
    CLUSTER_IMAGE_POLICY,
    GROUP,
    IMAGE_POLICY,
    PLURALS,
    VERIFIER,
    VERSION,
    Composition,
    Resource,
    ResourceError,
    attribute,
    compose,
)
from provider.kube.status import status_patch
from provider.metrics import Metrics
from provider.reload import ConfigReloader, Generation, Loaded

__all__ = ["KubeSource"]

log = logging.getLogger(__name__)

DEBOUNCE = 0.3
MAX_ATTRIBUTION_ROUNDS = 8
MAX_FILE_BYTES = 1024 * 1024  # a Secret's own limit
# The Secrets and the ConfigMaps of the provider's namespace are held in memory (their slimmed JSON):
# each collection up to MAX_NAMESPACE_BYTES, one object up to MAX_OBJECT_BYTES (more than the API server
# stores with etcd's default 1.5 MiB request limit). Past either, the object is left out (a placeholder
# says why; a Verifier naming it is Invalid with that reason). A list page of NAMESPACE_PAGE objects fits
# in `api.MAX_RESPONSE_BYTES` (32 MiB) even when every one is as large as allowed.
MAX_NAMESPACE_BYTES = 32 * 1024 * 1024
MAX_OBJECT_BYTES = 2 * 1024 * 1024
NAMESPACE_PAGE = 16
RESOURCE_STATES = ("ready", "invalid", "unavailable")
# The resources' kinds by collection name (their plural); then the provider's namespace's collections.
KINDS = {PLURALS[kind]: kind for kind in (CLUSTER_IMAGE_POLICY, VERIFIER, IMAGE_POLICY)}
NAMESPACE_COLLECTIONS = ("secrets", "configmaps")
COLLECTIONS = (*KINDS, *NAMESPACE_COLLECTIONS)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeSource:
    """The Kubernetes half of the configuration; `load` is the `ConfigReloader`'s loader."""

    def __init__(
        self,
        config: Config,
        config_path: Path,
        metrics: Metrics,
        *,
        runtime_dir: Path | None = None,
        kubeconfig: Path | None = None,
    ) -> None:
        self.settings = config.kubernetes
        self.config_path = config_path
        self.metrics = metrics
        self.kubeconfig = kubeconfig or self.settings.kubeconfig
        self.namespace = self.settings.namespace or default_namespace()
        base = runtime_dir or Path(os.environ.get("COUNTERSIGN_RUNTIME_DIR") or tempfile.gettempdir())
        self.runtime_dir = base / f"countersign-{os.getpid()}"
        self.reloader: ConfigReloader | None = None
        self.api: KubeApi | None = None
        self.stores: dict[str, Mapping[str, dict[str, Any]]] = {}
        self.informers: dict[str, Informer] = {}
        self.serving: dict[str, Any] = {}  # uid -> the last valid Resource (compose's `serving`)
        self.compositions = 0
        self._composition: Composition | None = None  # the one the last successful load served
        self._inputs = ""  # digest of what that composition was made from
        # What the last successful load served: its first composition's fingerprint (before any engine
        # failure refused a generation) and the operator's credentials; and the refusals it needed.
        self._served_key: tuple[str, tuple[Path, ...]] | None = None
        self._refused: dict[tuple[str, int], tuple[str, str]] = {}
        self.unchanged = 0  # recompositions that found nothing to rebuild
        self._timer: asyncio.TimerHandle | None = None
        self._running: asyncio.Task[None] | None = None
        self._dirty = False
        self._stopped = False
        self._in_use: set[Path] = set()
        self._pull_secret_problems: dict[str, str] = {}  # kubernetes.pullSecrets name -> problem logged

    # --- lifecycle -------------------------------------------------------------------------------------

    async def start(self, reloader: ConfigReloader) -> None:
        """Connect and start the informers; the first composition follows their first lists."""
        if not self.namespace:
            raise ValueError(
                "kubernetes.namespace is empty and neither POD_NAMESPACE nor the service account says it"
            )
        self.reloader = reloader
        await asyncio.to_thread(self._make_runtime_dir)
        try:
            self.api = await KubeApi.connect(kubeconfig=self.kubeconfig)
        except KubeApiError as e:
            raise ValueError(f"kubernetes: {e}") from e
        loop = asyncio.get_running_loop()
        collections: dict[str, tuple[str, dict[str, str]]] = {
            plural: (resource_path(GROUP, VERSION, plural), {}) for plural in KINDS
        }
        # Helm keeps release history in Secrets of the release namespace: not ours to hold.
        collections["secrets"] = (
            resource_path("", "v1", "secrets", namespace=self.namespace),
            {"fieldSelector": "type!=helm.sh/release.v1"},
        )
        collections["configmaps"] = (resource_path("", "v1", "configmaps", namespace=self.namespace), {})
        for name, (path, params) in collections.items():
            namespaced = name in NAMESPACE_COLLECTIONS
            informer = Informer(
                self.api,
                path,
                lambda objects, name=name: self._changed(name, objects),  # type: ignore[misc]
                loop,
                name=name,
                resync=self.settings.resync,
                params=params,
                page_size=NAMESPACE_PAGE if namespaced else 250,
                max_bytes=MAX_NAMESPACE_BYTES if namespaced else None,
                max_object_bytes=MAX_OBJECT_BYTES if namespaced else None,
                on_error=lambda _e, name=name: self.metrics.kube_watch_errors.labels(name).inc(),  # type: ignore[misc]
                on_list=lambda reason, name=name: self.metrics.kube_relists.labels(name, reason).inc(),  # type: ignore[misc]
            )
            self.metrics.kube_watch_errors.labels(name)
            self.informers[name] = informer
            informer.start()
        log.info("watching countersign.dev resources and namespace %s's Secrets/ConfigMaps", self.namespace)

    async def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        for informer in self.informers.values():
            informer.stop()
        if self.api is not None:
            self.api.close()
        await asyncio.to_thread(self._join)
        if self._running is not None:
            await asyncio.gather(self._running, return_exceptions=True)
        await asyncio.to_thread(shutil.rmtree, self.runtime_dir, True)

    def _join(self) -> None:
        for informer in self.informers.values():
            informer.join(5.0)

    @property
    def synced(self) -> bool:
        return bool(self.informers) and all(i.synced for i in self.informers.values())

    # --- changes ---------------------------------------------------------------------------------------

    def _changed(self, name: str, objects: Mapping[str, dict[str, Any]]) -> None:
        """On the loop: an informer's new set of objects; recompose after a quiet `DEBOUNCE`."""
        self.stores[name] = objects
        informer = self.informers.get(name)
        if informer is not None and informer.max_bytes is not None:
            self.metrics.kube_held_bytes.labels(name).set(informer.bytes)
            self.metrics.kube_objects_left_out.labels(name).set(
                sum(1 for obj in objects.values() if left_out(obj) is not None)
            )
        if self._stopped or not self.synced:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(DEBOUNCE, self._kick)

    def _kick(self) -> None:
        self._timer = None
        if self._running is not None and not self._running.done():
            self._dirty = True  # run again when the one under way ends
            return
        self._running = asyncio.get_running_loop().create_task(self._recompose())

    async def _recompose(self) -> None:
        while not self._stopped:
            self._dirty = False
            try:
                await self.refresh()
            except Exception:
                log.exception("recomposing the Kubernetes configuration failed")
            if not self._dirty:
                return

    async def refresh(self) -> None:
        """Recompose; swap when anything that is served changed; bring the statuses up to date."""
        assert self.reloader is not None
        objects = self._snapshot()
        inputs = await asyncio.to_thread(self._inputs_digest, objects)
        if self.reloader.current is None:
            await self.reloader.reload(force=True)
        elif self._inputs != inputs:
            same = await asyncio.to_thread(self._still_serving, objects)
            if same is None:
                await self.reloader.reload(force=True)
            else:
                self._composition, self.serving, self._inputs = same, dict(same.serving), inputs
                self.unchanged += 1
                self.metrics.kube_compositions.labels("unchanged").inc()
                self._count_resources(same)
        await self.write_statuses()

    def _still_serving(self, objects: Mapping[str, Mapping[str, dict[str, Any]]]) -> Composition | None:
        """In a thread: the composition (for its statuses) when it builds exactly what is serving, None when
        a rebuild is due. Both the first composition (before refusals: a rotated file may fix a refused
        generation) and the one with the last load's refusals must match what that load served."""
        if self._served_key is None or self._composition is None:
            return None
        try:
            document, base = self._read_file()
            first, docker = self._compose(document, base, objects, {})
            if (first.config.fingerprint, docker) != self._served_key:
                return None
            # Without refusals the second composition is the first (compose is pure; the files are
            # content-addressed): not done again.
            final = self._compose(document, base, objects, self._refused)[0] if self._refused else first
        except (ConfigError, OSError, ResourceError):
            return None  # the load says what is wrong
        if final.config.fingerprint != self._composition.config.fingerprint:
            return None
        return final

    def _snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {name: dict(self.stores.get(name, {})) for name in COLLECTIONS}

    def _compose(
        self,
        document: Mapping[str, Any],
        base: Path,
        objects: Mapping[str, Mapping[str, dict[str, Any]]],
        refused: Mapping[tuple[str, int], tuple[str, str]],
    ) -> tuple[Composition, tuple[Path, ...]]:
        """The composition and the operator's credentials (docker configs) from these objects."""
        items = [self._resource(name, obj) for name in KINDS for obj in objects[name].values()]
        composition = compose(
            document,
            items,
            self.serving,
            files_dir=lambda r: self._files_dir(r, objects),
            allow_exec=self.settings.allow_exec_verifiers,
            base=base,
            refused=refused,
        )
        return composition, tuple(self._pull_secret_configs(objects))

    # --- the loader ------------------------------------------------------------------------------------

    async def load(self, old: Generation | None) -> Loaded:
        """Read the file, compose it with the resources, build the engine (dropping the resources an
        engine failure is pinned on). A `ConfigError` in the file itself fails the load."""
        try:
            loaded = await self._load(old)
        except Exception:
            self.metrics.kube_compositions.labels("failed").inc()
            raise
        self.metrics.kube_compositions.labels("rebuilt").inc()
        if self._composition is not None:
            self._count_resources(self._composition)
        return loaded

    def _count_resources(self, composition: Composition) -> None:
        counts = {(kind, state): 0 for kind in KINDS.values() for state in RESOURCE_STATES}
        for status in composition.statuses.values():
            if status.valid:
                state = "ready"
            elif status.serving_generation is not None:
                state = "invalid"
            else:
                state = "unavailable"
            counts[(status.kind, state)] = counts.get((status.kind, state), 0) + 1
        for (kind, state), count in counts.items():
            self.metrics.kube_resources.labels(kind, state).set(count)

    async def _load(self, old: Generation | None) -> Loaded:
        if self.informers and not self.synced:
            # A file change or SIGHUP before every collection was listed: composing now would serve the
            # file without the resources (a file policy a resource replaces would be in force).
            raise ConfigError("kubernetes", "the resources are not listed yet; composed once they are")
        document, base = await asyncio.to_thread(self._read_file)
        objects = self._snapshot()
        inputs = await asyncio.to_thread(self._inputs_digest, objects)  # as in refresh: off the loop
        refused: dict[tuple[str, int], tuple[str, str]] = {}
        served_key: tuple[str, tuple[Path, ...]] | None = None
        for _ in range(MAX_ATTRIBUTION_ROUNDS):
            composition, docker = await asyncio.to_thread(self._compose, document, base, objects, refused)
            if served_key is None:
                served_key = (composition.config.fingerprint, docker)
            config = dataclasses.replace(
                composition.config, docker_configs=(*docker, *composition.config.docker_configs)
            )
            restart = False
            if old is not None and self.reloader is not None:
                config, restart = self.reloader.keep_restart_only(config, old.config)
            try:
                engine = await Engine.create(
                    config,
                    self.metrics,
                    memory=old.engine.memory if old is not None else None,
                    workload=self._workload(config),
                )
            except ConfigError as e:
                # A verifier that cannot be built (a key file that does not parse): its resource is
                # refused at that generation and the rest built again; the file's own part fails the load.
                blamed = composition.refusals(attribute(e, composition))
                if not blamed or blamed.keys() <= refused.keys():
                    raise
                refused |= blamed
                continue
            self._composition = composition
            self.serving = dict(composition.serving)
            self._inputs = inputs
            self._served_key, self._refused = served_key, dict(refused)
            self.compositions += 1
            await asyncio.to_thread(self._collect, config, old.config if old is not None else None)
            return Loaded(config, engine, restart)
        raise ConfigError("", f"resources still fail after {MAX_ATTRIBUTION_ROUNDS} rounds of attribution")

    def _read_file(self) -> tuple[Mapping[str, Any], Path]:
        data = read_config_yaml(self.config_path)
        if not isinstance(data, dict):
            raise ConfigError("", f"{self.config_path}: expected a mapping")
        return data, self.config_path.parent

    def _resource(self, collection: str, obj: Mapping[str, Any]) -> Resource:
        kind = KINDS[collection]
        metadata = obj.get("metadata") or {}
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            spec = {}
        generation = metadata.get("generation")
        return Resource(
            kind=kind,
            namespace=str(metadata.get("namespace") or "") or None if kind == IMAGE_POLICY else None,
            name=str(metadata.get("name", "")),
            uid=str(metadata.get("uid", "")),
            generation=generation if isinstance(generation, int) else 0,
            creation_timestamp=str(metadata.get("creationTimestamp", "")),
            spec=spec,
        )

    def _inputs_digest(self, objects: Mapping[str, Mapping[str, dict[str, Any]]]) -> str:
        """What a composition depends on besides the file (which the reloader watches itself)."""
        digest = hashlib.sha256()
        for name in COLLECTIONS:
            for key, obj in sorted(objects.get(name, {}).items()):
                metadata = obj.get("metadata") or {}
                held = "left-out" if left_out(obj) is not None else "held"  # a relist may let it in
                digest.update(f"{name}\0{key}\0{metadata.get('resourceVersion')}\0{held}\0".encode())
        return digest.hexdigest()

    # --- files -----------------------------------------------------------------------------------------

    def _make_runtime_dir(self) -> None:
        (self.runtime_dir / "files").mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.runtime_dir, 0o700)

    def _files_dir(
        self, resource: Resource, objects: Mapping[str, Mapping[str, dict[str, Any]]]
    ) -> Path | None:
        """The directory holding `resource`'s `spec.files` (None: it has none). Raises `ResourceError`."""
        files = resource.spec.get("files") if resource.kind == VERIFIER else None
        if not files:
            return None
        if not isinstance(files, dict):
            raise ResourceError("spec.files", "expected a mapping of relative path to a source")
        contents: dict[str, bytes] = {}
        for rel, source in sorted(files.items()):
            where = f"spec.files[{rel!r}]"
            path = PurePosixPath(str(rel))
            if not rel or path.is_absolute() or ".." in path.parts or str(path) != rel:
                raise ResourceError(where, "must be a relative path without '..'")
            for name, data in self._read_source(where, source, objects).items():
                target = str(path / name) if name else str(path)
                contents[target] = data
        return self._write_files(contents)

    def _read_source(
        self, where: str, source: object, objects: Mapping[str, Mapping[str, dict[str, Any]]]
    ) -> dict[str, bytes]:
        if not isinstance(source, dict) or len(source) != 1:
            raise ResourceError(where, "set exactly one of secretKeyRef, configMapKeyRef, secret, configMap")
        ((kind, ref),) = source.items()
        if not isinstance(ref, dict) or not isinstance(ref.get("name"), str):
            raise ResourceError(where, f"{kind}: expected {{name{', key' if 'KeyRef' in kind else ''}}}")
        store = "secrets" if kind in ("secretKeyRef", "secret") else "configmaps"
        if kind not in ("secretKeyRef", "secret", "configMapKeyRef", "configMap"):
            raise ResourceError(where, f"unknown source {kind!r}")
        obj = objects.get(store, {}).get(f"{self.namespace}/{ref['name']}")
        what = "Secret" if store == "secrets" else "ConfigMap"
        if obj is None:
            raise ResourceError(where, f"{what} {self.namespace}/{ref['name']} not found")
        reason = left_out(obj)
        if reason is not None:
            raise ResourceError(where, f"{what} {self.namespace}/{ref['name']} is not read: {reason}")
        entries = _entries(obj, store == "secrets")
        if kind.endswith("KeyRef"):
            key = ref.get("key")
            if not isinstance(key, str) or key not in entries:
                raise ResourceError(where, f"{what} {ref['name']} has no key {key!r}")
            return {"": entries[key]}
        return entries

    def _write_files(self, contents: Mapping[str, bytes]) -> Path:
        digest = hashlib.sha256()
        for name, data in sorted(contents.items()):
            digest.update(hashlib.sha256(name.encode() + b"\0" + data).digest())
        directory = self.runtime_dir / "files" / digest.hexdigest()
        if directory.is_dir():
            return directory
        staging = Path(tempfile.mkdtemp(dir=self.runtime_dir / "files", prefix=".new-"))
        for name, data in contents.items():
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        try:
            staging.rename(directory)
        except OSError:  # made meanwhile by an identical composition
            shutil.rmtree(staging, ignore_errors=True)
        return directory

    def _workload(self, config: Config) -> PullSecrets | None:
        """v1 keys' own pull secrets through this source's API client (`kubernetes.workloadPullSecrets`)."""
        if not config.kubernetes.workload_pull_secrets or self.api is None:
            return None
        return PullSecrets(self.api)

    def _pull_secret_configs(self, objects: Mapping[str, Mapping[str, dict[str, Any]]]) -> list[Path]:
        """`kubernetes.pullSecrets` as docker config files (the structure `CredentialStore` reads). A Secret
        that cannot be used is left out with a warning, logged once per change of its problem (not at every
        recomposition), and an info line when it is read again."""
        paths = []
        for name in self.settings.pull_secrets:
            data, problem = self._pull_secret(objects, name)
            previous = self._pull_secret_problems.get(name)
            if problem != previous:
                if problem is not None:
                    log.warning("kubernetes.pullSecrets: Secret %s/%s %s", self.namespace, name, problem)
                elif previous is not None:
                    log.info("kubernetes.pullSecrets: Secret %s/%s is read again", self.namespace, name)
                self._pull_secret_problems = {
                    **{k: v for k, v in self._pull_secret_problems.items() if k != name},
                    **({name: problem} if problem is not None else {}),
                }
            if data is not None:
                paths.append(self._write_files({"config.json": data}) / "config.json")
        return paths

    def _pull_secret(
        self, objects: Mapping[str, Mapping[str, dict[str, Any]]], name: str
    ) -> tuple[bytes | None, str | None]:
        """The docker config of one `kubernetes.pullSecrets` Secret, or None and what is wrong with it."""
        secret = objects.get("secrets", {}).get(f"{self.namespace}/{name}")
        if secret is None:
            return None, "not found"
        reason = left_out(secret)
        if reason is not None:
            return None, f"is not read: {reason}"
        try:
            entries = _entries(secret, True)
        except ResourceError as e:
            return None, f"key {e.path}: {e.message}"
        if ".dockerconfigjson" in entries:
            return entries[".dockerconfigjson"], None
        if ".dockercfg" in entries:  # the legacy format: the `auths` mapping alone
            try:
                return json.dumps({"auths": json.loads(entries[".dockercfg"])}).encode(), None
            except ValueError:
                return None, "has a .dockercfg that is not JSON"
        return None, "has no .dockerconfigjson"

    def _collect(self, config: Config, previous: Config | None) -> None:
        """Remove the file directories neither the new nor the retiring generation uses."""
        files = self.runtime_dir / "files"
        keep: set[Path] = set()
        for c in (config, previous):
            if c is None:
                continue
            for verifier in c.verifiers.values():
                if verifier.base_dir is not None and verifier.base_dir.parent == files:
                    keep.add(verifier.base_dir)
            for docker in c.docker_configs:
                if docker.parent.parent == files:
                    keep.add(docker.parent)
        for directory in files.iterdir():
            if directory not in keep and not directory.name.startswith(".new-"):
                shutil.rmtree(directory, ignore_errors=True)
        self._in_use = keep

    # --- statuses --------------------------------------------------------------------------------------

    async def write_statuses(self) -> None:
        """Patch the status of every resource whose verdict differs from what it says."""
        composition = self._composition
        if composition is None or self.api is None:
            return
        now = _now()
        for plural, kind in KINDS.items():
            for obj in self.stores.get(plural, {}).values():
                metadata = obj.get("metadata") or {}
                status = composition.statuses.get(str(metadata.get("uid", "")))
                if status is None or status.observed_generation != metadata.get("generation"):
                    continue  # composed before this generation: the next composition says
                patch = status_patch(obj.get("status"), status, now)
                if patch is None:
                    continue
                path = resource_path(
                    GROUP,
                    VERSION,
                    plural,
                    namespace=metadata.get("namespace") if kind == IMAGE_POLICY else None,
                    name=str(metadata.get("name")),
                )
                try:
                    await self.api.patch_status(path, patch)
                except KubeApiError as e:
                    if e.status != 404:  # deleted meanwhile
                        self.metrics.kube_status_write_failures.labels(kind).inc()
                        log.warning("status of %s %s not written: %s", kind, metadata.get("name"), e)


def _entries(obj: Mapping[str, Any], secret: bool) -> dict[str, bytes]:
    """A Secret's (base64 `data`) or a ConfigMap's (`data` and base64 `binaryData`) keys as bytes."""
    entries: dict[str, bytes] = {}
    data = obj.get("data") or {}
    binary = obj.get("binaryData") or {}
    for key, value in data.items() if isinstance(data, dict) else ():
        if not isinstance(value, str):
            continue
        if secret:
            try:
                entries[key] = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                continue
        else:
            entries[key] = value.encode()
    for key, value in binary.items() if isinstance(binary, dict) else ():
        if isinstance(value, str):
            try:
                entries[key] = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                continue
    for key, value in entries.items():
        if len(value) > MAX_FILE_BYTES:
            raise ResourceError(key, f"larger than {MAX_FILE_BYTES} bytes")
    return {k: v for k, v in entries.items() if _safe_key(k)}


def _safe_key(key: str) -> bool:
    return bool(key) and "/" not in key and key not in (".", "..")
