"""The engine: keys in, one outcome per distinct key out, within a deadline.

For each distinct key, concurrently: parse -> resolve the digest (verified bytes) -> verdict cache ->
policy -> the policy's verifiers, concurrently, over one shared `ImageReader` -> combine -> cache.

Three outcomes, never confused (see docs/rego.md):
- `Decided`: a value (allowed or denied for a definite reason); cached by Gatekeeper and by us.
- `Invalid`: the key is not an image reference; an item error; cacheable.
- `Undecided`: could not be decided now (registry down, rate limited, deadline); never cached.

A key whose policies name only tag-independent verifiers (`verifiers.base.TagIndependent`) also finds the
verdict another tag of its digest got (the verdict cache's any-tag entry), with its `reference` rewritten.

A key the caches fully answer (its tag's digest, its manifest and its verdict held), and a key its name
alone denies, is answered in the batch loop itself (`_answer_from_caches`): no task, deadline or memory
account, the same answer and cache metrics as the full path.

Concurrent requests for the same image share one verification. A verification that misses a request's
deadline keeps running (bounded by `background_timeout`) so that its verdict warms the cache.

Workload pull secrets (opt-in, a `WorkloadSource`): a v1 key names its Pod's service account and image pull
secrets. Its verification looks their credentials up first and sets them in `WORKLOAD` for its own task, so
every registry read it makes uses them for their hosts (provider/registry/workload.py). The single flight is
keyed by what determines those credentials (namespace, service account, secret names), and the verdict cache
by their identity: a verdict obtained with one namespace's credentials is never served to a key without them.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import weakref
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol, TypeVar

import provider.trace as trace
from provider.budget import ACCOUNT, Account, MemoryBudget
from provider.cache import PackedTTLCache, SingleFlight, TTLCache
from provider.config import Config, ConfigError, Policy, VerifierConfig
from provider.metrics import Metrics
from provider.outcome import Decided, Invalid, Outcome, UndecidedKey, encode_value
from provider.policy import covers, policy_for
from provider.registry.auth import CredentialStore
from provider.registry.cached import CachedRegistry, ImageReader
from provider.registry.client import DEADLINE, RegistryClient
from provider.registry.egress import EgressRefused
from provider.registry.workload import WORKLOAD, WorkloadCredentials
from provider.verdict import (
    Decision,
    VerifierOutcome,
    combine_all,
    denial_value,
    safe_text,
    verdict_value,
)
from verifiers.base import (
    BindsVerifiers,
    Context,
    HoldsResources,
    InvalidReport,
    Memo,
    OptionsError,
    Report,
    Subject,
    Undecided,
    Verifier,
    check_report,
    is_tag_independent,
    option_paths_relative_to,
)
from verifiers.cpu import INLINE, CpuPool, CpuRunner
from verifiers.errors import IntegrityError, InvalidContent, NotFound, RegistryError, TooLarge
from verifiers.plugins import PluginError, create_verifier
from verifiers.reference import ImageReference, Key, ReferenceError, parse_key, parse_reference

__all__ = ["Engine", "WorkloadSource", "build_verifiers"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


# Verdicts are cached deflated (a digest-pin verdict: ~600 bytes of JSON, ~150 deflated) against a preset
# dictionary of what every verdict spells out; a 4 KiB window and memLevel 4 keep the compressor small.
_VERDICT_DICTIONARY = (
    b'"details":{}}],"reasons":[]}{"schemaVersion":1,"allowed":false,"reason":"policy_not_satisfied",'
    b'"reference":"","digest":"sha256:","namespace":"","policy":"","namespacePolicy":"",'
    b'"verifiers":[{"name":"","type":"cosign",'
    b'"passed":false,"reason":"","message":"","details":{"digest":"sha256:"}}],"reasons":[]}'
    b'{"schemaVersion":1,"allowed":true,"reason":"verified","reference":"'
)
_WINDOW_BITS = -12


def pack_verdict(encoded: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, _WINDOW_BITS, 4, zdict=_VERDICT_DICTIONARY)
    return compressor.compress(encoded) + compressor.flush()


def unpack_verdict(packed: bytes) -> bytes:
    decompressor = zlib.decompressobj(_WINDOW_BITS, zdict=_VERDICT_DICTIONARY)
    return decompressor.decompress(packed) + decompressor.flush()


def _verdict_key(
    fingerprint: str,
    namespace: str,
    reference: str,
    digest: str,
    identity: str = "",
    *,
    any_tag: bool = False,
) -> bytes:
    """The verdict cache's key: a 128-bit BLAKE2b of its parts (16 bytes, not several strings per entry).

    The policies a verdict was decided under are not named: they are a function of the configuration
    (its `fingerprint`, and the cache belongs to one engine, whose configuration never changes), the
    `namespace` and the repository `reference` names. `identity`: the workload credentials'
    (provider/registry/workload.py) when the verification had some.

    `any_tag`: the key of a verdict shared by every tag of `digest` (`reference` then `name@digest`), which
    only verifications whose verifiers are all tag-independent use. It hashes another JSON shape (an
    object, not a list), so it is never the exact key of any reference, a digest-pinned one included:
    an exact entry is served as stored, a shared one only with its `reference` rewritten.
    """
    fields = [fingerprint, namespace, reference, digest]
    if identity:
        fields.append(identity)
    text = json.dumps({"anyTag": fields} if any_tag else fields)
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _for_reference(encoded: bytes, reference: str) -> bytes:
    """A verdict made for another tag of the same digest, as the verification of `reference` makes it:
    every other field is tag-free when every verifier is (`verifiers.base.TagIndependent`)."""
    value = json.loads(encoded)
    value["reference"] = reference
    return encode_value(value)


@dataclass(frozen=True, slots=True)
class _Lookup:
    """One look into the verdict cache: the key's own entry, the any-tag entry it looked at (or None),
    what it found, and whether that came from the key's own entry."""

    cache_key: bytes
    any_tag_key: bytes | None
    decided: Decided | None
    exact: bool


class WorkloadSource(Protocol):
    """Where a v1 key's workload credentials come from (provider/kube/pullsecrets.py).

    `credentials` raises `Undecided` when they cannot be known now (the API server unreachable); a Secret
    that is missing or unusable contributes nothing and is named in the result's `notes`.
    """

    async def credentials(self, key: Key) -> WorkloadCredentials: ...

    async def aclose(self) -> None: ...


OVERLOADED = UndecidedKey("overloaded", "too many verifications in flight; try again shortly")


def _definite_reason(error: RegistryError) -> str:
    if isinstance(error, NotFound):
        return "content_not_found"
    if isinstance(error, IntegrityError):
        return "registry_integrity_error"
    if isinstance(error, TooLarge):
        return "content_too_large"
    if isinstance(error, EgressRefused):
        return "egress_refused"
    return "content_invalid"


def _verifier_error(name: str, what: str) -> Undecided:
    return Undecided("verifier_error", safe_text(f"verifier {name} {what}", 1000))


def _plain_undecided(name: str, e: Undecided) -> Undecided:
    """The verifier's Undecided when its reason and message are plain strings, else a verifier_error."""
    reason, message = getattr(e, "reason", None), getattr(e, "message", None)
    if not isinstance(reason, str) or not reason or not isinstance(message, str):
        return _verifier_error(name, f"raised {type(e).__name__} without a string reason and message")
    if safe_text(message) == message and safe_text(reason, 128) == reason:
        return e
    return Undecided(safe_text(reason, 128), safe_text(message))


def build_verifiers(config: Config) -> dict[str, Verifier]:
    """Instantiate every configured verifier; errors point at `verifiers.<name>.<field>`.

    Then bind them: a verifier with a `bind(verifiers)` method is given every built verifier (a read-only
    mapping by name), e.g. for an option that names another verifier; an `OptionsError` it raises points
    at `verifiers.<name>.options.<field>`.

    While both run, `resolve_option_path` resolves relative option paths against the directory of the
    configuration file (`config.base_dir`), not the working directory.
    """
    with option_paths_relative_to(config.base_dir):
        built: dict[str, Verifier] = {}
        errors: list[tuple[str, str]] = []  # of every verifier, reported at once
        for name, vc in config.verifiers.items():
            try:
                with _option_base(config, vc):
                    built[name] = create_verifier(vc.type, name, vc.options)
            except PluginError as e:
                errors += ConfigError.within(f"verifiers.{name}", e).errors
        if errors:
            # Binding is skipped: a reference to a verifier that failed to build would only echo its error.
            raise ConfigError.of(errors)
        everyone = MappingProxyType(built)
        for name, verifier in built.items():
            if not isinstance(verifier, BindsVerifiers):
                continue
            try:
                with _option_base(config, config.verifiers[name]):
                    verifier.bind(everyone)
            except OptionsError as e:
                errors += ConfigError.within(f"verifiers.{name}.options", e).errors
            except Exception as e:  # a plugin bug must give a config error, not a traceback
                errors.append(
                    (f"verifiers.{name}.type", f"verifier {name!r} failed to bind: {type(e).__name__}: {e}")
                )
        if errors:
            raise ConfigError.of(errors)
        return built


def _option_base(config: Config, verifier: VerifierConfig) -> AbstractContextManager[None]:
    """Where a verifier's relative option paths resolve: its own files (a Kubernetes resource's, confined
    to them) or the configuration file's directory."""
    if verifier.base_dir is None:
        return option_paths_relative_to(config.base_dir)
    return option_paths_relative_to(verifier.base_dir, confined=verifier.confined)


def _memory_of(engine: weakref.ref[Engine], pool: str) -> float:
    """What `pool` counts in the engine (0 once it is gone): the memory gauges' function."""
    alive = engine()
    return 0.0 if alive is None else float(alive.memory_use[pool])


class Engine:
    def __init__(
        self,
        config: Config,
        registry: CachedRegistry,
        verifiers: Mapping[str, Verifier],
        metrics: Metrics | None = None,
        memory: MemoryBudget | None = None,
        workload: WorkloadSource | None = None,
        cpu_workers: int = 0,
    ) -> None:
        self.config = config
        # v1 keys' own pull secrets; None: every key is verified with the operator's credentials only.
        self.workload = workload
        self.registry = registry
        self.verifiers = dict(verifiers)
        self.metrics = metrics or Metrics()
        # Registry responses in flight, for the whole process (a reloaded configuration's engine shares it).
        self.memory = memory or MemoryBudget(config.server.in_flight_bytes)
        # Verdicts as deflated compact JSON under a 32-byte key, bounded by count and by real cost.
        self._verdicts: PackedTTLCache[bytes] = PackedTTLCache(
            config.cache.verdict_ttl, config.cache.max_verdicts, config.cache.verdict_bytes
        )
        # The verifiers that promise reports independent of the key's tag (fixed once built and bound): a
        # key whose policies name only these shares its verdict with every tag of its digest.
        self._tag_independent = frozenset(n for n, v in self.verifiers.items() if is_tag_independent(v))
        self._verifications: SingleFlight[tuple[object, ...], Outcome] = SingleFlight()
        # The memory seniority of each image's first attempt (see provider/budget.py), kept across retries.
        self._seniority: TTLCache[object, int] = TTLCache(
            config.server.background_timeout * 4, config.server.max_in_flight_verifications
        )
        self._pins: SingleFlight[str, Outcome] = SingleFlight()
        # Bounds: verifications running at once, and verifications in flight (running, queued or
        # finishing in the background). Past the second bound new keys are undecided at once.
        self._slots = asyncio.Semaphore(config.server.max_concurrent_verifications)
        # Where verifiers' CPU-heavy work (`Context.run_cpu`) runs: with `cpu_workers` N > 0 a bounded pool
        # of N threads (queue 4N) this engine owns; with 0 (the default) the event loop thread itself.
        # Measured (docs/performance.md, "CPU per cold image"): handing the built-in verifiers' work
        # (mostly Python, which holds the GIL) to threads made cold batches slower and costlier here.
        self.cpu: CpuRunner = CpuPool(cpu_workers) if cpu_workers > 0 else INLINE
        for pool in ("in_flight", "verdict", "content", "tag"):
            # by a weak reference: the metrics (which may outlive this engine) never keep it alive
            self.metrics.memory.labels(pool).set_function(
                functools.partial(_memory_of, weakref.ref(self), pool)
            )
        for verifier in self.verifiers.values():
            self.metrics.add_verifier(verifier.name, verifier.type)

    @classmethod
    async def create(
        cls,
        config: Config,
        metrics: Metrics | None = None,
        memory: MemoryBudget | None = None,
        workload: WorkloadSource | None = None,
        cpu_workers: int = 0,
    ) -> Engine:
        """Build the engine and its registry client (inside the running event loop); `memory`: the process's
        budget for registry responses when one exists already (a reload), else a new one; `workload`: where
        v1 keys' pull secrets come from (`kubernetes.workloadPullSecrets`), else None; `cpu_workers`: threads
        of the engine's pool for `Context.run_cpu` (0: run inline on the event loop thread)."""
        metrics = metrics or Metrics()
        verifiers = build_verifiers(config)
        credentials = CredentialStore(docker_configs=config.docker_configs)  # ValueError when unreadable
        client = RegistryClient(
            settings=config.registries,
            credentials=credentials,
            limits=config.limits,
            observe=metrics.observe_registry,
            egress=config.egress,
        )
        try:
            client.check_settings()
        except ValueError:
            await client.close()
            raise
        registry = CachedRegistry(
            client,
            content_bytes=config.cache.content_bytes,
            tag_ttl=config.cache.tag_ttl,
            tag_bytes=config.cache.tag_bytes,
            metrics=metrics,
        )
        return cls(config, registry, verifiers, metrics, memory, workload, cpu_workers)

    @property
    def memory_use(self) -> dict[str, int]:
        """Bytes counted now: registry responses in flight and each cache's cost."""
        return {"in_flight": self.memory.used, "verdict": self._verdicts.size, **self.registry.memory}

    async def close(self) -> None:
        await self._verifications.drain()
        await self._pins.drain()
        for verifier in self.verifiers.values():
            if isinstance(verifier, HoldsResources):  # optional hook: a verifier's own sessions
                try:
                    await verifier.aclose()
                except Exception:
                    log.exception("closing verifier %s failed", verifier.name)
        if isinstance(self.cpu, CpuPool):
            self.cpu.close()
        await self.registry.close()
        await self.registry.client.close()
        if self.workload is not None:
            await self.workload.aclose()

    # --- verify ----------------------------------------------------------------------------------------

    async def verify(self, raw_keys: Sequence[str], budget: float) -> dict[str, Outcome]:
        """One outcome per distinct key, answered within `budget` seconds (work may go on after it)."""
        with trace.span("batch", "verify", len(raw_keys)):
            return await self._verify_batch(raw_keys, budget)

    async def _verify_batch(self, raw_keys: Sequence[str], budget: float) -> dict[str, Outcome]:
        results: dict[str, Outcome] = {}
        tasks: dict[str, asyncio.Task[Outcome]] = {}
        for raw in dict.fromkeys(raw_keys):
            try:
                key = parse_key(raw)
            except ReferenceError as e:
                results[raw] = Invalid(str(e))
                continue
            cached = self._answer_from_caches(key)
            if cached is not None:
                results[raw] = cached
                continue
            flight: tuple[object, ...] = (key.namespace or "", str(key.reference))
            if self._workload_of(key) is not None:  # what decides its credentials (not known yet)
                flight += (key.service_account, key.pull_secrets)
            if flight not in self._verifications and self._overloaded():
                results[raw] = OVERLOADED
                continue
            tasks[raw] = self._verifications.task(
                flight, functools.partial(self._bounded, self._verify_key, key, flight)
            )
        await self._wait(tasks, budget, results)
        return results

    def _workload_of(self, key: Key) -> WorkloadSource | None:
        """Where `key`'s own pull secrets come from: only v1 keys name them, and only when enabled."""
        return self.workload if key.version >= 1 else None

    async def _wait(
        self, tasks: Mapping[str, asyncio.Task[Outcome]], budget: float, results: dict[str, Outcome]
    ) -> None:
        if tasks:
            await asyncio.wait(set(tasks.values()), timeout=max(budget, 0.0))
        for raw, task in tasks.items():
            if not task.done():
                results[raw] = UndecidedKey(
                    "deadline_exceeded",
                    f"not finished within the {budget:.2f}s deadline; it goes on in the background",
                )
            elif task.cancelled():
                results[raw] = UndecidedKey("cancelled", "verification was cancelled")
            elif (exc := task.exception()) is not None:
                log.error("verification of %s failed", raw, exc_info=exc)
                results[raw] = UndecidedKey("internal_error", f"internal error: {type(exc).__name__}")
            else:
                results[raw] = task.result()

    async def _bounded(self, work: Callable[[_T], Awaitable[Outcome]], arg: _T, flight: object) -> Outcome:
        """Run one verification with its own deadline (the background bound), so registry retries know it."""
        timeout = self.config.server.background_timeout
        deadline = asyncio.get_running_loop().time() + timeout
        DEADLINE.set(deadline)  # this task's own context copy
        # What this verification reads from registries is reserved in its account until it ends.
        seniority = self._seniority.get(flight)
        account = Account(self.memory, self.config.server.verification_bytes, deadline, seniority)
        ACCOUNT.set(account)
        outcome: Outcome | None = None
        try:
            async with asyncio.timeout(timeout):
                outcome = await work(arg)
                return outcome
        except TimeoutError:
            return UndecidedKey("deadline_exceeded", f"not finished within {timeout:g}s")
        finally:
            account.close()
            if isinstance(outcome, UndecidedKey) and outcome.reason == "overloaded":
                if seniority is None:  # retried, it keeps this one
                    self._seniority.put(flight, account.seniority)
            elif seniority is not None:
                self._seniority.put(flight, 0, ttl=0)  # done with it

    async def _verify_key(self, key: Key) -> Outcome:
        with trace.span("image", "verify", key.reference):
            return await self._verify_image(key)

    def _policies(self, key: Key) -> Decided | tuple[Policy, Policy | None]:
        """The cluster policy and the namespace's ImagePolicy (or None) that apply to `key`, or the denial
        that its name alone decides (no policy, a policy that cannot be served). No I/O."""
        ref = key.reference
        # The policy depends only on the name, so an image no policy covers is denied without
        # contacting its registry (keys name arbitrary hosts; nothing is fetched for them).
        policy = policy_for(self.config.policies, ref, key.namespace)
        if policy is None:
            return Decided(
                denial_value(
                    key, "", "no_policy", f"no policy scope matches {ref.name}; images are denied by default"
                )
            )
        # On top of it, the most specific ImagePolicy of the key's namespace that matches (additive: both
        # must be satisfied). A key without a namespace has none (the template's `namespacedKeys`).
        namespace_policy = None
        if key.namespace:
            namespace_policy = policy_for(
                self.config.namespace_policies.get(key.namespace, ()), ref, key.namespace
            )
        # A policy resource that cannot be served still claims its scopes: its images are denied, from the
        # name alone, rather than left to a less specific (maybe weaker) policy.
        for applied in (policy, namespace_policy):
            if applied is not None and applied.unavailable is not None:
                message = f"{ref.name} is in the scopes of {applied.unavailable}; its images are denied"
                ns_name = namespace_policy.name if namespace_policy is not None else ""
                return Decided(denial_value(key, "", "policy_unavailable", message, policy.name, ns_name))
        return policy, namespace_policy

    def _verifier_names(self, policy: Policy, namespace_policy: Policy | None) -> list[str]:
        """Each verifier once, whichever policies name it: the cluster policy's, then the namespace's."""
        last = policy if namespace_policy is None else namespace_policy
        return list(dict.fromkeys((*policy.verifiers, *last.verifiers)))

    def _cached_verdict(self, key: Key, digest: str, identity: str, names: Sequence[str]) -> _Lookup:
        """The verdict cache's answer for `key` at `digest`: under its own key, else (when every verifier in
        `names` is tag-independent) the verdict another tag of this digest (or the digest itself) got with
        the same configuration, namespace and credentials: the same one but for its `reference`, copied
        under the key's own entry to expire when the one it is copied from does. Counts nothing."""
        fingerprint, namespace, ref = self.config.fingerprint, key.namespace or "", key.reference
        cache_key = _verdict_key(fingerprint, namespace, str(ref), digest, identity)
        cached = self._verdicts.get(cache_key)
        if cached is not None:
            return _Lookup(cache_key, None, Decided(encoded=unpack_verdict(cached)), exact=True)
        if not self._tag_independent.issuperset(names):
            return _Lookup(cache_key, None, None, exact=False)
        any_tag_key = _verdict_key(fingerprint, namespace, ref.pinned(digest), digest, identity, any_tag=True)
        shared = self._verdicts.get_expiring(any_tag_key)
        if shared is None:
            return _Lookup(cache_key, any_tag_key, None, exact=False)
        encoded = _for_reference(unpack_verdict(shared[0]), str(ref))
        self._verdicts.put(cache_key, pack_verdict(encoded), expires=shared[1])
        return _Lookup(cache_key, any_tag_key, Decided(encoded=encoded), exact=False)

    def _count_lookup(self, lookup: _Lookup) -> None:
        self.metrics.cache_lookup("verdict", lookup.exact)
        if lookup.any_tag_key is not None:
            self.metrics.cache_lookup("verdict_digest", lookup.decided is not None)

    def _answer_from_caches(self, key: Key) -> Decided | None:
        """What `_verify_image` would answer for `key` when the caches hold all it needs (the tag's digest,
        the manifest, the verdict), or a denial its name alone decides: answered on the spot, without a
        task, a deadline or a memory account, and counted as `_verify_image` counts. Else None."""
        if self._workload_of(key) is not None:  # its credentials are read asynchronously
            return None
        found = self._policies(key)
        if isinstance(found, Decided):
            return found
        digest = self.registry.cached_digest(key.reference)
        if digest is None:
            return None
        lookup = self._cached_verdict(key, digest, "", self._verifier_names(*found))
        if lookup.decided is None:
            return None  # `_verify_image` looks again and counts
        if key.reference.digest is None:
            self.metrics.cache_lookup("tag", True)
        self.metrics.cache_lookup("content", True)
        self._count_lookup(lookup)
        return lookup.decided

    async def _verify_image(self, key: Key) -> Outcome:
        ref = key.reference
        found = self._policies(key)
        if isinstance(found, Decided):
            return found
        policy, namespace_policy = found
        identity = ""
        notes = ""
        workload = self._workload_of(key)
        if workload is not None:
            try:
                credentials = await workload.credentials(key)
            except Undecided as e:
                return UndecidedKey(e.reason, safe_text(f"workload pull secrets: {e.message}"))
            WORKLOAD.set(credentials)  # this verification's task (and the tasks it starts) only
            identity = credentials.identity
            if credentials.notes:
                notes = safe_text(" (workload pull secrets: " + "; ".join(credentials.notes) + ")", 1000)
        try:
            # Nothing is sent to a host the egress policy refuses: the registry client checks the key's
            # registry before every request (then the addresses a name resolves to, every redirect and
            # token realm) and raises EgressRefused, a definite error (`egress_refused`).
            async with trace.acquiring(self._slots, "slots"):
                manifest = await self.registry.resolve(ref)
        except NotFound as e:
            return Decided(denial_value(key, "", "manifest_not_found", str(e)))
        except Undecided as e:
            return UndecidedKey(e.reason, e.message + notes)
        except RegistryError as e:
            return Decided(denial_value(key, "", _definite_reason(e), str(e)))
        names = self._verifier_names(policy, namespace_policy)
        policies = (policy,) if namespace_policy is None else (policy, namespace_policy)
        lookup = self._cached_verdict(key, manifest.digest, identity, names)
        self._count_lookup(lookup)
        if lookup.decided is not None:
            return lookup.decided
        subject = Subject(
            reference=ref,
            digest=manifest.digest,
            media_type=manifest.media_type,
            size=manifest.size,
            manifest=manifest.data,
            namespace=key.namespace,
        )
        deadline = DEADLINE.get() or asyncio.get_running_loop().time() + self.config.server.background_timeout
        # One Context, and so one memo, per image verification: never shared across images or requests.
        context = Context(registry=ImageReader(self.registry), deadline=deadline, memo=Memo(), cpu=self.cpu)
        async with trace.acquiring(self._slots, "slots"):
            outcomes = await asyncio.gather(*(self._run_named(name, subject, context) for name in names))
        decision = combine_all(policies, outcomes)
        if not isinstance(decision, Decision):
            return UndecidedKey(decision.reason, f"{ref.name}@{manifest.digest} {decision.message}{notes}")
        value = verdict_value(key, manifest.digest, policy, outcomes, decision.allowed, namespace_policy)
        try:  # reports were checked; this guards the rest of the value (the key's own text)
            encoded = encode_value(value)
        except (TypeError, ValueError) as e:
            log.error("verdict for %s is not serialisable: %s", safe_text(key.reference, 300), e)
            return UndecidedKey("internal_error", "the verdict could not be serialised (logged)")
        packed = pack_verdict(encoded)
        self._verdicts.put(lookup.cache_key, packed)
        if lookup.any_tag_key is not None:
            self._verdicts.put(lookup.any_tag_key, packed)
        return Decided(value, encoded=encoded)

    async def _run_named(self, name: str, subject: Subject, context: Context) -> VerifierOutcome:
        verifier = self.verifiers.get(name)
        if verifier is None:  # a configuration that names a verifier it does not define: fail closed
            return self._outcome(name, "unknown", None, _verifier_error(name, "is not configured"))
        return await self._run(verifier, subject, context)

    async def _run(self, verifier: Verifier, subject: Subject, context: Context) -> VerifierOutcome:
        """One verifier's outcome; whatever it does, only this verifier's outcome is affected.

        A report is checked (and copied) as plain JSON before anything builds a verdict from it: a report
        that is not serialisable is this verifier's `verifier_error`, never the batch's HTTP 500.
        """
        name, kind = verifier.name, verifier.type
        try:
            with trace.span("verifier", kind, name):
                report: object = await verifier.verify(subject, context)
        except Undecided as e:
            return self._outcome(name, kind, None, _plain_undecided(name, e))
        except RegistryError as e:
            report = Report.fail(_definite_reason(e), safe_text(e))
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # we are being cancelled (deadline, shutdown): not the verifier's doing
            return self._outcome(name, kind, None, _verifier_error(name, "raised CancelledError"))
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # a plugin bug: fail closed, never cache it, say so in the logs
            log.error("verifier %s (%s) raised", name, kind, exc_info=e)
            return self._outcome(
                name, kind, None, _verifier_error(name, f"raised {type(e).__name__}: {safe_text(e, 500)}")
            )
        try:
            checked = check_report(report)
        except InvalidReport as e:  # never passed, never cached: this verifier is undecided (a bug)
            log.error("verifier %s (%s) returned an invalid report: %s", name, kind, e)
            return self._outcome(name, kind, None, _verifier_error(name, f"returned an invalid report: {e}"))
        return self._outcome(name, kind, checked, None)

    def _outcome(
        self, name: str, kind: str, report: Report | None, undecided: Undecided | None
    ) -> VerifierOutcome:
        result = "undecided" if report is None else ("passed" if report.passed else "failed")
        self.metrics.verifier_result(name, kind, result)
        return VerifierOutcome(name, kind, report, undecided)

    # --- mutate ----------------------------------------------------------------------------------------

    async def mutate(self, raw_keys: Sequence[str], budget: float) -> dict[str, Outcome]:
        """Tag -> digest: each value is the complete replacement reference (`name@digest`)."""
        results: dict[str, Outcome] = {}
        tasks: dict[str, asyncio.Task[Outcome]] = {}
        for raw in dict.fromkeys(raw_keys):
            try:
                ref = parse_reference(raw)
            except ReferenceError as e:
                results[raw] = Invalid(str(e))
                continue
            if ref.digest is not None:
                results[raw] = Decided(raw)  # already pinned: never rewrite what the user pinned
                continue
            pin = str(ref)
            if pin not in self._pins and self._overloaded():
                results[raw] = OVERLOADED
                continue
            tasks[raw] = self._pins.task(pin, functools.partial(self._bounded, self._pin, ref, pin))
        await self._wait(tasks, budget, results)
        return results

    @property
    def in_flight(self) -> int:
        """Verifications and pins running or waiting, in the background too."""
        return len(self._verifications) + len(self._pins)

    def _overloaded(self) -> bool:
        return self.in_flight >= self.config.server.max_in_flight_verifications

    async def _pin(self, ref: ImageReference) -> Outcome:
        with trace.span("image", "pin", ref):
            return await self._pin_image(ref)

    async def _pin_image(self, ref: ImageReference) -> Outcome:
        # As for verification: an image no policy covers is refused without contacting its registry
        # (Gatekeeper's mutation keys carry no namespace, so any policy's scopes count); a registry the
        # egress policy refuses is refused by the client before anything is sent.
        if not covers(self.config.policies, ref):
            return Invalid(f"cannot pin {ref}: no policy scope matches {ref.name}")
        try:
            async with trace.acquiring(self._slots, "slots"):
                manifest = await self.registry.resolve(ref)
        except NotFound as e:
            return Invalid(f"cannot pin {ref}: {e}")
        except Undecided as e:
            return UndecidedKey(e.reason, e.message)
        except (IntegrityError, TooLarge, InvalidContent, EgressRefused) as e:
            return Invalid(f"cannot pin {ref}: {e}")
        return Decided(ref.pinned(manifest.digest))
