"""exec: a verifier that runs a program, in any language, which answers in versioned JSON.

For every image, Countersign starts the configured program (no shell), writes one `VerifyRequest` to its
stdin and closes it, and reads one `VerifyResponse` from its stdout. The plugin never touches the network
or a credential: the subject's manifest and, when `referrers` is configured, the referrers of the chosen
artifact types with their layer blobs are fetched by Countersign through the registry reader (every byte
checked against its digest) and handed over in the request. docs/plugins-exec.md is the protocol's
reference; this docstring is its summary.

Options:
    command: [./plugins/check-labels, --strict]   # required; argv. A program name with a `/` is a path
                                                  # (relative to the configuration file); without one it
                                                  # is looked up in /usr/local/bin:/usr/bin:/bin
    timeout: 5s              # per run; also capped by the request's deadline
    maxOutputBytes: 65536    # stdout limit (256 B to 1 MiB); more is an invalid response
    maxConcurrent: 4         # processes of this verifier at once (1 to 64); others wait within the deadline
    env: {LOG_LEVEL: debug}  # extra environment variables (PATH, LANG, HOME, TMPDIR are fixed)
    config: {...}            # any JSON-compatible mapping, handed to the plugin as `config`
    referrers:               # optional: referrers to fetch and hand over
      artifactTypes: [application/vnd.example.scan+json]
      maxCount: 8            # referrers handed over (1 to 64)
      maxBytes: 4194304      # their manifests and layer blobs together (1 B to 32 MiB)

The process: its own session and process group, stdin/stdout/stderr pipes and no other descriptor, the
environment exactly PATH=/usr/local/bin:/usr/bin:/bin, LANG=C.UTF-8, HOME and TMPDIR set to a private
temporary directory that is also its working directory (removed afterwards), plus `env`. When the program
exits, when it runs out of time, writes too much, or the verification is cancelled, its whole process group
is killed (SIGKILL) and reaped. stderr is read and discarded except its first 4 KiB, which are logged when
the run fails (never put in a report).

Outcomes: exit status 0 with a valid response is the plugin's decision (`passed` true or false, its own
`reason`, `message` and `details`) or its own undecided answer. Anything else is undecided, never passed:
plugin_timeout (no answer in time), plugin_failed (could not start, non-zero exit status, killed by a
signal), plugin_invalid_response (over-size or malformed output, wrong apiVersion or kind, a bad field, or a
response that does not echo the subject's digest), plugin_busy (no free process slot before the deadline).
Reports' details carry `plugin` (the program's file name) and, when referrers were skipped, `skipped` and
`skippedCount`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import shutil
import signal
import stat
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field, PlainValidator, ValidationError, WithJsonSchema
from pydantic_core import InitErrorDetails, PydanticCustomError

from verifiers import oci, strictjson
from verifiers.base import (
    Context,
    OptionsError,
    Report,
    Subject,
    Undecided,
    plain_json,
    resolve_option_path,
)
from verifiers.errors import RegistryError
from verifiers.oci.boundedjson import json_type
from verifiers.options import Duration, IntRange, Message, OptionsModel, check, parse_options

__all__ = [
    "API_VERSION",
    "SAFE_PATH",
    "ExecOptions",
    "ExecVerifier",
    "ReferrerOptions",
]

log = logging.getLogger(__name__)

API_VERSION = "countersign.dev/exec/v1"
REQUEST_KIND = "VerifyRequest"
RESPONSE_KIND = "VerifyResponse"
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
LANG = "C.UTF-8"

DEFAULT_TIMEOUT = 5.0
MAX_TIMEOUT = 300.0
DEFAULT_MAX_OUTPUT = 64 * 1024
MIN_OUTPUT, MAX_OUTPUT = 256, 1024 * 1024
DEFAULT_MAX_CONCURRENT, MAX_CONCURRENT = 4, 64
DEFAULT_REFERRERS, MAX_REFERRERS = 8, 64
DEFAULT_REFERRER_BYTES, MAX_REFERRER_BYTES = 4 * 1024 * 1024, 32 * 1024 * 1024
MAX_LAYERS = 16  # layers of one referrer handed over; a referrer with more is skipped
STDERR_KEPT = 4096
MAX_REASON_CHARS = 64
MAX_MESSAGE_CHARS = 2048
# `config` and a response's `details` are copied by `verifiers.base.plain_json`, with bounds of their own
# (tighter than a built-in verifier's report: both come from outside Countersign's code).
MAX_DETAILS_DEPTH = 16  # levels inside `details`
MAX_CONFIG_DEPTH = 32  # levels inside `config`
MAX_JSON_NODES = 10_000  # values and keys, in `config` and in `details`
MAX_CONFIG_BYTES = 256 * 1024
MAX_ENV_BYTES = 32 * 1024
INLINE_REQUEST_BYTES = 64 * 1024  # larger requests are encoded in a worker thread

_FIXED_ENV = ("PATH", "LANG", "HOME", "TMPDIR")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REASON = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
_RESPONSE_FIELDS = frozenset(
    {"apiVersion", "kind", "subject", "passed", "undecided", "reason", "message", "details"}
)
_RESERVED_DETAILS = frozenset({"plugin", "skipped", "skippedCount"})


# --- options ---------------------------------------------------------------------------------------------
#
# The shape of every option is checked by `ExecOptions` (strict pydantic, every problem at once with its
# path, the chart's JSON Schema generated from it); the program named by `command[0]` is checked by the
# verifier afterwards (it reads the file system). The messages are the ones this verifier has always given.


def _problem(message: str) -> PydanticCustomError:
    return PydanticCustomError("countersign", "{message}", {"message": message})


def _command(value: object) -> tuple[str, ...]:
    """`command`: a non-empty list of strings without NUL characters, the first one not empty."""
    if not isinstance(value, list) or not value:
        raise _problem("expected a non-empty list of strings (the program and its arguments)")
    check(
        "command",
        [
            ((i,), "expected a string without NUL characters")
            for i, item in enumerate(value)
            if not isinstance(item, str) or "\0" in item or (i == 0 and not item)
        ],
    )
    return tuple(value)


def _env(value: object) -> dict[str, str]:
    """`env`: variable names to strings, none of the fixed ones, at most MAX_ENV_BYTES in all."""
    if not isinstance(value, Mapping):
        raise _problem("expected a mapping of variable names to strings")
    problems: list[tuple[tuple[str | int, ...], str]] = []
    size = 0
    for key, item in value.items():
        if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
            problems.append(((), f"{key!r} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"))
        elif key in _FIXED_ENV:
            problems.append(((key,), f"{key} is set by Countersign ({', '.join(_FIXED_ENV)} are fixed)"))
        elif not isinstance(item, str) or "\0" in item:
            problems.append(((key,), "expected a string without NUL characters"))
        else:
            size += len(key) + len(item.encode("utf-8", "surrogatepass")) + 2
    if size > MAX_ENV_BYTES:
        problems.append(((), f"more than {MAX_ENV_BYTES} bytes of variables"))
    check("env", problems)
    return dict(value)


def _config_problem(where: str | None, message: str) -> Exception:
    """A `plain_json` problem inside `config`, at its own path (`config.a.b[0]`) below the field."""
    if message.endswith(" is not a JSON value"):
        message += " (quote it to pass a string)"  # a YAML date or timestamp, say
    inner = where.removeprefix("config").removeprefix(".") if where is not None else ""
    # One location component holding the rest of the path: it is printed after `config.` as it is.
    location: tuple[str | int, ...] = (inner,) if inner else ()
    return ValidationError.from_exception_data(
        "config", [InitErrorDetails(type=_problem(message), loc=location, input=None)]
    )


def _config(value: object) -> dict[str, Any]:
    """`config`: a mapping of plain JSON (`verifiers.base.plain_json`), at most MAX_CONFIG_BYTES as JSON."""
    if not isinstance(value, Mapping):
        raise _problem("expected a mapping (handed to the plugin as JSON)")
    plain: dict[str, Any] = plain_json(
        value, "config", max_depth=MAX_CONFIG_DEPTH, max_nodes=MAX_JSON_NODES, error=_config_problem
    )
    if len(json.dumps(plain, separators=(",", ":"))) > MAX_CONFIG_BYTES:
        raise _problem(f"more than {MAX_CONFIG_BYTES} bytes as JSON")
    return plain


def _artifact_types(value: object) -> tuple[str, ...]:
    """`referrers.artifactTypes`: media types, kept by essence (lower case, no parameters), once each."""
    if not isinstance(value, list) or not value:
        raise _problem("expected a non-empty list of media types")
    check(
        "artifactTypes",
        [
            ((i,), f"expected a media type such as application/example+json, got {item!r}")
            for i, item in enumerate(value)
            if not isinstance(item, str) or not _essence(item) or "/" not in item
        ],
    )
    return tuple(dict.fromkeys(_essence(t) for t in value))


def _referrers_mapping(value: object) -> object:
    if value is not None and not isinstance(value, Mapping):
        raise _problem("expected a mapping with artifactTypes, maxCount and maxBytes")
    return dict(value) if value is not None else None


def _between(low: int, high: int) -> Message:
    return Message(f"expected an integer between {low} and {high}", got=True)


class ReferrerOptions(OptionsModel):
    """`referrers`: which referrers Countersign fetches and hands to the plugin, and how much of them."""

    required_messages: ClassVar[Mapping[str, str]] = {
        "artifactTypes": "required: the artifact types to hand over"
    }
    unknown_name: ClassVar[str | None] = "option"

    artifact_types: Annotated[
        tuple[str, ...],
        PlainValidator(_artifact_types),
        WithJsonSchema({"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "/"}}),
    ] = Field(alias="artifactTypes")
    max_count: Annotated[int, IntRange(1, MAX_REFERRERS), _between(1, MAX_REFERRERS)] = Field(
        DEFAULT_REFERRERS, alias="maxCount"
    )
    max_bytes: Annotated[int, IntRange(1, MAX_REFERRER_BYTES), _between(1, MAX_REFERRER_BYTES)] = Field(
        DEFAULT_REFERRER_BYTES, alias="maxBytes"
    )


class ExecOptions(OptionsModel):
    """The exec verifier's options (the module docstring and docs/configuration.md#exec describe them)."""

    required_messages: ClassVar[Mapping[str, str]] = {
        "command": "required: the program to run and its arguments"
    }

    command: Annotated[
        tuple[str, ...],
        PlainValidator(_command),
        WithJsonSchema(
            {
                "type": "array",
                "minItems": 1,
                "items": [{"type": "string", "minLength": 1}],
                "additionalItems": {"type": "string"},
            }
        ),
    ]
    timeout: Annotated[float, Duration(above=0, maximum=MAX_TIMEOUT)] = DEFAULT_TIMEOUT
    max_output_bytes: Annotated[int, IntRange(MIN_OUTPUT, MAX_OUTPUT), _between(MIN_OUTPUT, MAX_OUTPUT)] = (
        Field(DEFAULT_MAX_OUTPUT, alias="maxOutputBytes")
    )
    max_concurrent: Annotated[int, IntRange(1, MAX_CONCURRENT), _between(1, MAX_CONCURRENT)] = Field(
        DEFAULT_MAX_CONCURRENT, alias="maxConcurrent"
    )
    env: Annotated[
        dict[str, str],
        PlainValidator(_env),
        WithJsonSchema(
            {
                "type": "object",
                "propertyNames": {"pattern": f"^{_ENV_NAME.pattern}$", "not": {"enum": list(_FIXED_ENV)}},
                "additionalProperties": {"type": "string"},
            }
        ),
    ] = Field(default_factory=dict)
    config: Annotated[dict[str, Any], PlainValidator(_config), WithJsonSchema({"type": "object"})] = Field(
        default_factory=dict
    )
    # `null` is the same as left out (no referrers), as for the other built-in verifiers' options without
    # a default value (docs/configuration.md#conventions).
    referrers: Annotated[ReferrerOptions | None, BeforeValidator(_referrers_mapping)] = None


def _program(value: str) -> Path:
    """The executable `command[0]` names: a path when it has a `/`, else a name looked up in SAFE_PATH."""
    if "/" in value:
        path = resolve_option_path(value)
    else:
        found = shutil.which(value, path=SAFE_PATH)
        if found is None:
            raise OptionsError(
                "command[0]",
                f"{value!r} is not an executable in {SAFE_PATH} (name another place with a path containing "
                "a /; relative paths are relative to the configuration file)",
            )
        path = Path(found)
    try:
        info = path.stat()
    except OSError as e:
        raise OptionsError("command[0]", f"{path}: {e.strerror or e}") from None
    if not stat.S_ISREG(info.st_mode):
        raise OptionsError("command[0]", f"{path} is not a regular file")
    if not os.access(path, os.X_OK):
        raise OptionsError("command[0]", f"{path} is not executable")
    if info.st_mode & stat.S_IWOTH:
        raise OptionsError("command[0]", f"{path} is writable by every user; refusing to run it")
    return path


def _parse(options: Mapping[str, Any]) -> tuple[ExecOptions, Path]:
    """The options and the program, or an `OptionsError` with every problem: the shape's (`ExecOptions`)
    and, once `command` itself is well-formed (whatever else is wrong), the program's."""
    try:
        parsed: ExecOptions | None = parse_options(ExecOptions, options)
        problems: list[tuple[str, str]] = []
    except OptionsError as e:
        parsed, problems = None, list(e.errors)
    program: Path | None = None
    if not any(path == "command" or path.startswith(("command[", "command.")) for path, _ in problems):
        command: Sequence[str] = parsed.command if parsed is not None else options["command"]
        try:
            program = _program(command[0])
        except OptionsError as e:
            problems = [*e.errors, *problems]  # `command` comes first, as in the model
    if problems:
        raise OptionsError.of(problems)
    assert parsed is not None and program is not None
    return parsed, program


# --- the verifier ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Referrer:
    descriptor: dict[str, Any]
    manifest: bytes
    blobs: dict[str, bytes]


@dataclass(frozen=True, slots=True)
class _Run:
    """How one run ended."""

    returncode: int | None
    stdout: bytes
    stderr: bytes
    stderr_bytes: int
    timed_out: bool
    overflow: bool


class InvalidResponse(ValueError):
    """The plugin's stdout is not a valid VerifyResponse for this request."""


class ExecVerifier:
    """Runs `command` once per image with a VerifyRequest on stdin; see the module docstring."""

    type: ClassVar[str] = "exec"

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        parsed, program = _parse(options)
        self.name = name
        self.program = program
        self.argv: tuple[str, ...] = (str(program), *parsed.command[1:])
        self.timeout = parsed.timeout
        self.max_output = parsed.max_output_bytes
        self.max_concurrent = parsed.max_concurrent
        self.env = dict(parsed.env)
        self.config = parsed.config
        self.referrers = parsed.referrers
        self._slots = asyncio.Semaphore(self.max_concurrent)

    # --- verify ---------------------------------------------------------------------------------------

    async def verify(self, subject: Subject, context: Context) -> Report:
        referrers: list[_Referrer] = []
        skipped: list[oci.Skipped] = []
        if self.referrers is not None:
            referrers, skipped = await self._collect(subject, context, self.referrers)
        try:
            async with asyncio.timeout_at(context.deadline):
                await self._slots.acquire()
        except TimeoutError:
            raise Undecided(
                "plugin_busy",
                f"plugin {self.program.name}: no free process slot (maxConcurrent {self.max_concurrent}) "
                "before the deadline",
            ) from None
        try:
            timeout = min(self.timeout, context.deadline - asyncio.get_running_loop().time())
            if timeout <= 0:
                raise Undecided("plugin_timeout", f"plugin {self.program.name}: no time left to run it")
            request = self._request(subject, referrers, skipped, timeout)
            if len(request) > INLINE_REQUEST_BYTES:
                data = await asyncio.to_thread(_encode, request)
            else:
                data = _encode(request)
            run = await self._run(data, timeout)
        finally:
            self._slots.release()
        return self._decide(run, subject, skipped, timeout)

    async def _collect(
        self, subject: Subject, context: Context, wanted: ReferrerOptions
    ) -> tuple[list[_Referrer], list[oci.Skipped]]:
        """The referrers of the wanted types, each with its manifest and every layer, within the bounds.

        A referrer that is malformed, names another subject, is not of a wanted type, cannot be read
        (a definite registry error) or does not fit in the byte budget is skipped, never fatal: junk beside
        a good referrer must not hide it. An undecided registry error propagates.
        """
        listed = await context.registry.referrers(subject)
        candidates = [
            d for d in listed if d.artifact_type and _essence(d.artifact_type) in wanted.artifact_types
        ]
        found: list[_Referrer] = []
        skipped: list[oci.Skipped] = []
        budget = wanted.max_bytes
        for index, descriptor in enumerate(candidates[: 4 * wanted.max_count]):
            if len(found) >= wanted.max_count:
                break
            try:
                if descriptor.size > budget:
                    raise _Skip(f"its manifest ({descriptor.size} bytes) does not fit in referrers.maxBytes")
                data, manifest = await oci.read_image_manifest(
                    context.registry, subject.reference, descriptor.digest
                )
                if not manifest.refers_to(subject.digest):
                    raise _Skip(f"its subject is not {subject.digest}")
                if _essence(manifest.kind) not in wanted.artifact_types:
                    raise _Skip(
                        f"its manifest says artifact type {oci.show(manifest.kind)}, not a wanted one"
                    )
                if len(manifest.layers) > MAX_LAYERS:
                    raise _Skip(f"it has {len(manifest.layers)} layers, more than {MAX_LAYERS}")
                needed = len(data) + sum(
                    layer.size for layer in {d.digest: d for d in manifest.layers}.values()
                )
                if needed > budget:
                    raise _Skip(f"it needs {needed} bytes, more than the {budget} left of referrers.maxBytes")
                blobs: dict[str, bytes] = {}
                for layer in manifest.layers:
                    if layer.digest not in blobs:
                        blobs[layer.digest] = await context.registry.blob(
                            subject.reference, layer, layer.size
                        )
            except Undecided:
                raise
            except (_Skip, oci.ContentError, RegistryError) as e:
                skipped.append(oci.Skipped(index, descriptor.digest, str(e)[:500]))
                continue
            budget -= needed
            found.append(
                _Referrer(
                    {
                        "mediaType": manifest.media_type,
                        "digest": descriptor.digest,
                        "size": len(data),
                        "artifactType": manifest.kind,
                        "annotations": dict(manifest.annotations),
                    },
                    data,
                    blobs,
                )
            )
        return found, skipped

    def _request(
        self, subject: Subject, referrers: Sequence[_Referrer], skipped: Sequence[oci.Skipped], timeout: float
    ) -> dict[str, Any]:
        ref = subject.reference
        return {
            "apiVersion": API_VERSION,
            "kind": REQUEST_KIND,
            "verifier": {"name": self.name, "type": self.type},
            "config": self.config,
            "subject": {
                "reference": str(ref),
                "registry": ref.registry,
                "repository": ref.repository,
                "tag": ref.tag,
                "digest": subject.digest,
                "mediaType": subject.media_type,
                "size": subject.size,
                "manifest": subject.manifest,
                "namespace": subject.namespace,
            },
            "referrers": [
                {"descriptor": r.descriptor, "manifest": r.manifest, "blobs": r.blobs} for r in referrers
            ],
            "skippedReferrers": [s.as_details() for s in skipped],
            "timeoutSeconds": round(timeout, 3),
        }

    async def _run(self, request: bytes, limit: float) -> _Run:
        workdir = await asyncio.to_thread(tempfile.mkdtemp, prefix="countersign-exec-")
        try:
            return await self._spawn(request, limit, workdir)
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, True)

    async def _spawn(self, request: bytes, limit: float, workdir: str) -> _Run:
        loop = asyncio.get_running_loop()
        env = {"PATH": SAFE_PATH, "LANG": LANG, "HOME": workdir, "TMPDIR": workdir, **self.env}
        protocol = _PluginProtocol(loop, self.max_output)
        try:
            transport, _ = await loop.subprocess_exec(
                lambda: protocol,
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=workdir,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as e:
            raise Undecided(
                "plugin_failed", f"plugin {self.program.name} could not be started: {e.strerror or e}"
            ) from None
        timed_out = False
        try:
            stdin = transport.get_pipe_transport(0)
            if isinstance(stdin, asyncio.WriteTransport):
                stdin.write(request)
                stdin.close()  # flushed first; a plugin that exits without reading is judged by its answer
            try:
                async with asyncio.timeout(limit):
                    await protocol.done
            except TimeoutError:
                timed_out = True
        finally:
            # The normal end too: nothing the plugin started outlives the run.
            _kill_group(protocol.pid)
            transport.close()
            if not protocol.exited.done():
                try:
                    async with asyncio.timeout(10):
                        await asyncio.shield(protocol.exited)
                except TimeoutError:
                    log.error(
                        "exec verifier %s: plugin pid %s not reaped 10s after SIGKILL",
                        self.name,
                        protocol.pid,
                    )
        return _Run(
            transport.get_returncode(),
            bytes(protocol.stdout),
            bytes(protocol.stderr),
            protocol.stderr_bytes,
            timed_out and not protocol.overflow,
            protocol.overflow,
        )

    # --- the answer -----------------------------------------------------------------------------------

    def _decide(self, run: _Run, subject: Subject, skipped: Sequence[oci.Skipped], timeout: float) -> Report:
        plugin = self.program.name
        if run.timed_out:
            failure = Undecided(
                "plugin_timeout",
                f"plugin {plugin} did not answer within {timeout:g}s (its processes were killed)",
            )
        elif run.overflow:
            failure = Undecided(
                "plugin_invalid_response",
                f"plugin {plugin} wrote more than maxOutputBytes ({self.max_output}) to stdout (killed)",
            )
        elif run.returncode is None or run.returncode != 0:
            failure = Undecided("plugin_failed", f"plugin {plugin} {_status(run.returncode)}")
        else:
            try:
                return self._report(run.stdout, subject, skipped)
            except InvalidResponse as e:
                failure = Undecided("plugin_invalid_response", f"plugin {plugin}: {e}")
        self._log_failure(failure, run)
        raise failure

    def _report(self, stdout: bytes, subject: Subject, skipped: Sequence[oci.Skipped]) -> Report:
        response = parse_response(stdout, subject.digest)
        if isinstance(response, Undecided):
            raise response
        details = {"plugin": self.program.name, **response.details, **oci.skipped_details(skipped)}
        return Report(response.passed, response.reason, response.message, details)

    def _log_failure(self, failure: Undecided, run: _Run) -> None:
        stderr = run.stderr.decode("utf-8", "replace")
        more = f" (+{run.stderr_bytes - len(run.stderr)} bytes)" if run.stderr_bytes > len(run.stderr) else ""
        log.warning(
            "exec verifier %s: %s: %s; stderr%s: %s",
            self.name,
            failure.reason,
            failure.message,
            more,
            ascii(stderr),
        )


class _Skip(Exception):
    """A referrer left out of the request; the message says why."""


# --- the process -----------------------------------------------------------------------------------------


class _PluginProtocol(asyncio.SubprocessProtocol):
    """Collects bounded stdout and stderr; `done` when the process exited and stdout ended, or overflowed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_stdout: int) -> None:
        self._max_stdout = max_stdout
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.stderr_bytes = 0
        self.overflow = False
        self.pid: int | None = None
        self._stdout_ended = False
        self.exited: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.SubprocessTransport):
            self.pid = transport.get_pid()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        chunk = data.encode() if isinstance(data, str) else data
        if fd == 1 and not self.overflow:
            self.stdout += chunk[: self._max_stdout + 1 - len(self.stdout)]
            if len(self.stdout) > self._max_stdout:
                self.overflow = True
                _kill_group(self.pid)
                self._finish()
        elif fd == 2:
            self.stderr_bytes += len(chunk)
            if len(self.stderr) < STDERR_KEPT:
                self.stderr += chunk[: STDERR_KEPT - len(self.stderr)]

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:
            self._stdout_ended = True
            if self.exited.done():
                self._finish()

    def process_exited(self) -> None:
        # The leader is gone; whatever it left in its group (a child holding stdout open) goes too.
        _kill_group(self.pid)
        if not self.exited.done():
            self.exited.set_result(None)
        if self._stdout_ended:
            self._finish()

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


def _kill_group(pid: int | None) -> None:
    """SIGKILL the process group the plugin leads (start_new_session: its id is the plugin's pid)."""
    if pid is None:
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _status(returncode: int | None) -> str:
    if returncode is None:
        return "did not exit"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with status {returncode}"


# --- the wire format -------------------------------------------------------------------------------------


def _essence(media_type: str) -> str:
    return media_type.split(";")[0].strip().lower()


def _encode(request: dict[str, Any]) -> bytes:
    """The request as compact ASCII JSON, bytes values as standard base64 (with padding)."""

    def default(value: object) -> str:
        if isinstance(value, bytes):
            return base64.b64encode(value).decode("ascii")
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")

    return json.dumps(
        request, separators=(",", ":"), ensure_ascii=True, allow_nan=False, default=default
    ).encode("ascii")


def parse_response(data: bytes, digest: str) -> Report | Undecided:
    """A plugin's stdout as its decision (a Report) or its undecided answer; InvalidResponse otherwise.

    Strict JSON (UTF-8, no duplicate keys, no NaN or Infinity), one object with exactly the fields of
    VerifyResponse v1, echoing `subject.digest` (so that an answer cannot be about another image).
    """
    try:
        doc = strictjson.loads(data, max_depth=MAX_DETAILS_DEPTH + 1)
    except ValueError as e:
        raise InvalidResponse(
            f"stdout is not a strict JSON document: {oci.show(str(e), 200)[1:-1]}"
        ) from None
    if not isinstance(doc, dict):
        raise InvalidResponse(f"the response is {json_type(doc)}, not an object")
    unknown = sorted(set(doc) - _RESPONSE_FIELDS)
    if unknown:
        raise InvalidResponse(f"unknown field {oci.show(unknown[0])} in the response")
    if doc.get("apiVersion") != API_VERSION:
        raise InvalidResponse(f"apiVersion is {oci.show(doc.get('apiVersion'))}, expected {API_VERSION!r}")
    if doc.get("kind") != RESPONSE_KIND:
        raise InvalidResponse(f"kind is {oci.show(doc.get('kind'))}, expected {RESPONSE_KIND!r}")
    echoed = doc.get("subject")
    if not isinstance(echoed, dict) or set(echoed) != {"digest"} or echoed["digest"] != digest:
        raise InvalidResponse(
            f'the response does not echo the subject: expected "subject": {{"digest": "{digest}"}}'
        )
    reason = doc.get("reason")
    if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS or not _REASON.fullmatch(reason):
        raise InvalidResponse(
            f"reason {oci.show(reason)} is not a snake_case code of at most {MAX_REASON_CHARS} characters"
        )
    message = doc.get("message")
    if not isinstance(message, str) or not message or len(message) > MAX_MESSAGE_CHARS:
        raise InvalidResponse(f"message must be a string of 1 to {MAX_MESSAGE_CHARS} characters")
    plain_json(message, "message", error=_invalid_response)
    if "undecided" in doc:
        if doc["undecided"] is not True or "passed" in doc or "details" in doc:
            raise InvalidResponse(
                'an undecided response has "undecided": true and neither passed nor details'
            )
        return Undecided(reason, message)
    passed = doc.get("passed")
    if not isinstance(passed, bool):
        raise InvalidResponse('passed must be true or false (or the response "undecided": true)')
    details = doc.get("details", {})
    if not isinstance(details, dict):
        raise InvalidResponse("details must be an object")
    reserved = sorted(_RESERVED_DETAILS & set(details))
    if reserved:
        raise InvalidResponse(f"details.{reserved[0]} is reserved for Countersign")
    plain = plain_json(
        details, "details", max_depth=MAX_DETAILS_DEPTH, max_nodes=MAX_JSON_NODES, error=_invalid_response
    )
    return Report(passed, reason, message, plain)


def _invalid_response(where: str | None, message: str) -> InvalidResponse:
    return InvalidResponse(f"{where or 'details'}: {message}")
