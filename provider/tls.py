"""The server's TLS: a TLS 1.3-only context, and its certificate reloaded without a restart.

`make_server_ssl_context` builds the context from `server.tls` (a client CA makes a client certificate
mandatory: mutual TLS, as Gatekeeper does with its webhook certificate). `CertificateReloader` re-reads the
certificate, key and client CA when their files change and hands each new connection the current context.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

from provider.config import TLSConfig
from provider.watch import file_digest

__all__ = ["CertificateReloader", "make_server_ssl_context"]

log = logging.getLogger(__name__)


def make_server_ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """A TLS 1.3-only server context; a client CA makes a client certificate mandatory."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    if tls.client_ca_file is not None:
        ctx.load_verify_locations(cafile=str(tls.client_ca_file))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class CertificateReloader:
    """Swaps in a new server context when the certificate, key or client CA files change.

    The listening socket keeps one context whose SNI callback hands every new connection the current
    context, so a rotation (cert-manager, Gatekeeper's own rotator) needs no restart. A broken new pair is
    logged and the previous one stays in service.
    """

    def __init__(self, tls: TLSConfig) -> None:
        self.tls = tls
        self.current = make_server_ssl_context(tls)
        self._fingerprint = self._files_fingerprint()
        self.reloads = 0
        self.listening = make_server_ssl_context(tls)
        self.listening.sni_callback = self._select

    def _select(self, sslobj: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        sslobj.context = self.current
        return None

    def _files(self) -> list[Path]:
        files = [self.tls.cert_file, self.tls.key_file]
        if self.tls.client_ca_file is not None:
            files.append(self.tls.client_ca_file)
        return files

    def _files_fingerprint(self) -> str:
        return file_digest(*self._files())

    def check(self) -> bool:
        """Reload when the files changed; True when a new context is now in service."""
        fingerprint = self._files_fingerprint()
        if fingerprint == self._fingerprint:
            return False
        try:
            ctx = make_server_ssl_context(self.tls)
        except (OSError, ssl.SSLError) as e:
            log.warning("TLS files changed but cannot be loaded (keeping the previous ones): %s", e)
            return False
        self.current = ctx
        self._fingerprint = fingerprint
        self.reloads += 1
        log.info("TLS certificate reloaded")
        return True

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.tls.reload_interval)
            await asyncio.to_thread(self.check)
