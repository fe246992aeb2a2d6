"""The Kubernetes API as raw JSON: the only module that imports the `kubernetes` client.

`KubeApi` loads the in-cluster configuration (the pod's service account) or a kubeconfig, and makes
requests through `ApiClient.param_serialize` / `call_api`, reading the body itself (the client's REST
layer never preloads it): no model deserialization, every response bounded in bytes and in time, TLS
always verified (a kubeconfig that disables verification, or a plain-HTTP server, is refused).

The client is synchronous: `get` and `patch_status` run in a thread (`asyncio.to_thread`); `request` (a
list page) and `watch` (a plain iterator) are called from the informer threads (`provider.kube.informer`).
The `kubernetes` package is imported when a `KubeApi` is made, not before (it costs ~13 MiB).

    api = await KubeApi.connect(kubeconfig=None)        # in-cluster
    obj = await api.get("/api/v1/namespaces/ns/secrets/x")            # None when it does not exist
    page = api.request("GET", "/apis/countersign.dev/v1alpha1/verifiers", {"limit": "500"})  # a thread
    for event in api.watch(path, page["metadata"]["resourceVersion"], 300): ...
    await api.patch_status(path + "/name", {"status": {...}})
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = [
    "MAX_EVENT_BYTES",
    "MAX_RESPONSE_BYTES",
    "REQUEST_TIMEOUT",
    "KubeApi",
    "KubeApiError",
    "default_namespace",
    "resource_path",
]

REQUEST_TIMEOUT = 10.0  # seconds for one get, list page or patch, connection included
CONNECT_TIMEOUT = 5.0
MAX_RESPONSE_BYTES = 32 * 1024 * 1024  # one get or list page
MAX_EVENT_BYTES = 4 * 1024 * 1024  # one watch event (one line)
_CHUNK = 64 * 1024
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class KubeApiError(Exception):
    """A request that failed: `status` is the HTTP status (0 when no response came: connection, TLS,
    timeout, or a response that was too large or not JSON); `reason` says what happened."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status or 'no response'}: {reason}" if status else reason)
        self.status = status
        self.reason = reason

    @property
    def gone(self) -> bool:
        """410 Gone: the resourceVersion a watch or list continued from is too old (relist)."""
        return self.status == 410


def resource_path(
    group: str,
    version: str,
    plural: str,
    *,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """The API path of a collection or an object: group "" is the core API (`/api/v1`)."""
    parts = ["/api", version] if not group else ["/apis", group, version]
    if namespace is not None:
        parts += ["namespaces", quote(namespace, safe="")]
    parts.append(plural)
    if name is not None:
        parts.append(quote(name, safe=""))
        if subresource is not None:
            parts.append(subresource)
    return "/".join(parts)


def default_namespace() -> str:
    """The provider's namespace: POD_NAMESPACE (the chart sets it from the downward API), else the service
    account mount's; "" when neither says."""
    namespace = os.environ.get("POD_NAMESPACE", "").strip()
    if namespace:
        return namespace
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text("utf-8").strip()
    except OSError:
        return ""


class KubeApi:
    """Raw-JSON requests to the API server with the pod's service account or a kubeconfig's credentials.

    Constructing one reads the credentials (blocking: small files); `connect` does it in a thread. `close`
    releases the connections and ends the watches under way.
    """

    def __init__(
        self,
        *,
        kubeconfig: Path | None = None,
        timeout: float = REQUEST_TIMEOUT,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        max_event_bytes: int = MAX_EVENT_BYTES,
    ) -> None:
        client: Any = importlib.import_module("kubernetes.client")
        config: Any = importlib.import_module("kubernetes.config")
        configuration = client.Configuration()
        try:
            if kubeconfig is not None:
                config.load_kube_config(
                    config_file=str(kubeconfig), client_configuration=configuration, persist_config=False
                )
            else:
                config.load_incluster_config(client_configuration=configuration)
        except Exception as e:  # ConfigException, OSError, YAML errors: all mean "no credentials"
            where = f"kubeconfig {kubeconfig}" if kubeconfig is not None else "in-cluster configuration"
            raise KubeApiError(0, f"cannot load the {where}: {e}") from e
        host = str(configuration.host)
        if not host.startswith("https://"):
            raise KubeApiError(0, f"the API server {host} is not HTTPS; refusing to send credentials to it")
        if not configuration.verify_ssl:
            raise KubeApiError(0, f"TLS verification of {host} is off (insecure-skip-tls-verify): refused")
        configuration.retries = False  # the informers back off themselves; a request fails fast
        self.host = host
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.max_event_bytes = max_event_bytes
        self._client: Any = client.ApiClient(configuration)
        self._lock = threading.Lock()
        self._watches: set[Any] = set()  # open watch responses, shut down by close()
        self._closed = False

    @classmethod
    async def connect(
        cls, *, kubeconfig: Path | None = None, request_timeout: float = REQUEST_TIMEOUT
    ) -> KubeApi:
        """A `KubeApi`, its credentials read in a thread."""
        return await asyncio.to_thread(lambda: cls(kubeconfig=kubeconfig, timeout=request_timeout))

    # --- async requests -------------------------------------------------------------------------------

    async def get(self, path: str) -> dict[str, Any] | None:
        """The object at `path`, or None when it does not exist (404)."""
        try:
            return await asyncio.to_thread(self.request, "GET", path)
        except KubeApiError as e:
            if e.status == 404:
                return None
            raise

    async def patch_status(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch `body` (`{"status": {...}}`) onto the status subresource of the object at `path`."""
        status_path = path if path.endswith("/status") else path + "/status"
        return await asyncio.to_thread(
            self.request, "PATCH", status_path, None, body, "application/merge-patch+json"
        )

    # --- sync requests (threads) ----------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        body: object = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        """One request, its JSON object answer (blocking). A status other than 2xx raises `KubeApiError`."""
        response = self._send(method, path, params, body, content_type, (CONNECT_TIMEOUT, self.timeout))
        deadline = time.monotonic() + self.timeout
        try:
            data = self._read_all(response, deadline)
        finally:
            response.release_conn()
        status = int(response.status)
        if not 200 <= status <= 299:
            raise KubeApiError(status, _status_message(data, response))
        return _json_object(data, f"{method} {path}")

    def watch(
        self,
        path: str,
        resource_version: str,
        timeout_seconds: int,
        params: Mapping[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The watch events (`{"type": ADDED|MODIFIED|DELETED|BOOKMARK, "object": {...}}`) on the collection
        at `path` after `resource_version`, until the server ends the watch (after about
        `timeout_seconds`); `params` adds selectors. An ERROR event raises `KubeApiError` with its Status
        code (410: relist). Every line is bounded by `max_event_bytes`; a stalled stream times out
        (`timeout_seconds` plus a margin).
        """
        params = {
            **(params or {}),
            "watch": "1",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(timeout_seconds),
            "allowWatchBookmarks": "true",
        }
        read_timeout = timeout_seconds + self.timeout
        response = self._send("GET", path, params, None, None, (CONNECT_TIMEOUT, read_timeout))
        with self._lock:
            if self._closed:
                response.release_conn()
                raise KubeApiError(0, "closed")
            self._watches.add(response)
        try:
            status = int(response.status)
            if not 200 <= status <= 299:
                data = self._read_all(response, time.monotonic() + self.timeout)
                raise KubeApiError(status, _status_message(data, response))
            for line in self._lines(response, time.monotonic() + read_timeout):
                event = _json_object(line, f"watch {path}")
                if event.get("type") == "ERROR":
                    obj = event.get("object")
                    code = obj.get("code") if isinstance(obj, dict) else None
                    message = obj.get("message") if isinstance(obj, dict) else None
                    raise KubeApiError(code if isinstance(code, int) else 0, str(message or "watch error"))
                yield event
        finally:
            with self._lock:
                self._watches.discard(response)
            response.release_conn()

    def close(self) -> None:
        """Release the connections; watches under way end (their iterators raise `KubeApiError`)."""
        with self._lock:
            self._closed = True
            watches = list(self._watches)
        for response in watches:
            try:
                response.shutdown()
            except Exception:  # already closed
                pass
        self._client.close()

    # --- the plumbing ----------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: object,
        content_type: str | None,
        timeout: tuple[float, float],
    ) -> Any:
        if self._closed:
            raise KubeApiError(0, "closed")
        headers = {"Accept": "application/json"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        try:
            request = self._client.param_serialize(
                method,
                path,
                query_params=list((params or {}).items()),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            return self._client.call_api(*request, _request_timeout=timeout).response
        except Exception as e:  # urllib3 errors (connection, TLS, timeout), ApiException(status=0)
            raise KubeApiError(0, f"{method} {path}: {type(e).__name__}: {e}") from e

    def _read_all(self, response: Any, deadline: float) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    return b"".join(chunks)
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise KubeApiError(0, f"response larger than {self.max_response_bytes} bytes")
                if time.monotonic() > deadline:
                    raise KubeApiError(0, f"response not read within {self.timeout:g}s")
                chunks.append(chunk)
        except KubeApiError:
            raise
        except Exception as e:
            raise KubeApiError(0, f"reading the response: {type(e).__name__}: {e}") from e

    def _lines(self, response: Any, deadline: float) -> Iterator[bytes]:
        buffer = b""
        while True:
            try:
                chunk = response.read1(_CHUNK) if hasattr(response, "read1") else response.read(_CHUNK)
            except Exception as e:
                raise KubeApiError(0, f"watch stream: {type(e).__name__}: {e}") from e
            if not chunk:
                if buffer.strip():
                    yield buffer
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    yield line
            if len(buffer) > self.max_event_bytes:
                raise KubeApiError(0, f"watch event larger than {self.max_event_bytes} bytes")
            if time.monotonic() > deadline:
                raise KubeApiError(0, "watch stream did not end in time")


def _status_message(data: bytes, response: Any) -> str:
    """The `message` of a Kubernetes Status body, else the HTTP reason."""
    try:
        status = json.loads(data)
    except ValueError:
        status = None
    if isinstance(status, dict) and isinstance(status.get("message"), str):
        return str(status["message"])[:1000]
    return str(getattr(response, "reason", "") or "error")


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as e:
        raise KubeApiError(0, f"{what}: the answer is not JSON: {e}") from e
    if not isinstance(value, dict):
        raise KubeApiError(0, f"{what}: the answer is not a JSON object")
    return value
