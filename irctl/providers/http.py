"""HTTP for notifications: one urllib3 pool, a timeout on every request, retries with backoff.

Retries (urllib3's `Retry`) cover connection failures, read timeouts and
429/5xx answers, with exponential backoff capped at `backoff_max` so that a
dead endpoint costs a bounded, predictable time. POSTs are retried too: for
an incident notice a duplicate is better than silence (callers that must not
duplicate pass `retry_reads=False`).

URLs can carry secrets (a Slack webhook URL *is* the credential), so nothing
here ever puts a URL in an error: callers give each request a `label`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

import urllib3
from urllib3.exceptions import HTTPError, MaxRetryError
from urllib3.util.retry import Retry

from irctl.errors import ProviderError, one_line

if TYPE_CHECKING:
    from irctl.inventory import Inventory
    from irctl.settings import Settings


class _NoUrls(logging.Filter):
    """urllib3 logs requests and retries with their path, which for Slack is the credential."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


for _name in ("urllib3.connectionpool", "urllib3.util.retry", "urllib3.poolmanager"):
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, _NoUrls) for f in _logger.filters):
        _logger.addFilter(_NoUrls())

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "irctl (incident response)"


@dataclass(frozen=True)
class HttpResponse:
    status: int
    data: Any  # parsed JSON body, or None when the body is not JSON
    text: str  # the body, cut to one bounded line
    attempts: int
    elapsed_ms: int


class HttpProvider:
    """Sends JSON over HTTP(S). Raises `ProviderError` (one line, no URL) when it cannot."""

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.5,
        backoff_max: float = 8.0,
    ) -> None:
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.pool = urllib3.PoolManager(headers={"User-Agent": USER_AGENT})

    @classmethod
    def create(cls, inventory: Inventory, settings: Settings) -> Self:
        return cls(timeout=inventory.notify.timeout, retries=inventory.notify.retries)

    def close(self) -> None:
        self.pool.clear()

    def _retry(self, retry_reads: bool) -> _CountingRetry:
        return _CountingRetry(
            total=self.retries,
            connect=self.retries,
            read=self.retries if retry_reads else 0,
            status=self.retries,
            other=0,
            redirect=0,
            allowed_methods=None,  # None: retry any verb, POST included
            status_forcelist=RETRY_STATUSES,
            backoff_factor=self.backoff,
            backoff_max=self.backoff_max,
            raise_on_status=False,  # the last answer is returned and judged below
            raise_on_redirect=False,
            respect_retry_after_header=True,
            **_retry_after_cap(self.backoff_max),
        )

    def request(
        self,
        method: str,
        url: str,
        *,
        label: str,
        json_body: Any = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        retry_reads: bool = True,
    ) -> HttpResponse:
        """Send one request (retried as configured); a non-2xx final answer is a ProviderError.

        `body` sends exact bytes (for signed payloads); otherwise `json_body` is encoded.
        """
        if not url.lower().startswith(("https://", "http://")):
            raise ProviderError(
                f"{label}: the URL must start with https:// (or http://)",
                "fix the URL in the inventory or its environment variable",
            )
        all_headers = {"Content-Type": "application/json", "Accept": "application/json"}
        all_headers.update(headers or {})
        if body is None and json_body is not None:
            body = encode_json(json_body)
        started = time.monotonic()
        retry = self._retry(retry_reads)
        try:
            response = self.pool.request(
                method,
                url,
                body=body,
                headers=all_headers,
                timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
                retries=retry,
                redirect=False,
            )
        except MaxRetryError as exc:
            attempts = max(1, retry.failures[0])
            raise ProviderError(
                f"{label}: {_reason(exc.reason)} after {attempts} attempt(s)",
                "check that the endpoint is reachable; the step carried on without it",
            ) from None
        except (HTTPError, OSError) as exc:
            raise ProviderError(
                f"{label}: {_reason(exc)} after {max(1, retry.failures[0])} attempt(s)",
                "check that the endpoint is reachable; the step carried on without it",
            ) from None
        elapsed_ms = int((time.monotonic() - started) * 1000)
        history = response.retries.history if response.retries else ()
        attempts = len(history) + 1
        raw = response.data or b""
        text = one_line(raw.decode("utf-8", "replace"), 300)
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        if not 200 <= response.status < 300:
            raise ProviderError(
                f"{label}: HTTP {response.status} after {attempts} attempt(s): {text or 'no body'}",
                "check the endpoint's credentials and configuration in the inventory",
            )
        return HttpResponse(response.status, data, text, attempts, elapsed_ms)


def encode_json(value: Any) -> bytes:
    """The exact bytes sent for a JSON body (also what a signature covers and a plan shows)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _retry_after_cap(seconds: float) -> dict[str, Any]:
    # A server asking for minutes of patience must not hold up incident work
    # (the cap exists from urllib3 2.4; older versions honour Retry-After as sent).
    if hasattr(Retry, "DEFAULT_RETRY_AFTER_MAX"):
        return {"retry_after_max": max(1, int(seconds))}
    return {}


class _CountingRetry(Retry):
    """urllib3's Retry, remembering how many attempts failed (MaxRetryError does not say)."""

    failures: list[int]

    def __init__(self, *args: Any, failures: list[int] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failures = failures if failures is not None else [0]

    def new(self, **kw: Any) -> Self:
        fresh = super().new(**kw)
        fresh.failures = self.failures
        fresh.failures[0] = len(fresh.history)
        return fresh


def _reason(exc: object) -> str:
    """What went wrong, without the URL urllib3 puts in its own messages."""
    name = type(exc).__name__
    if "Timeout" in name:
        return "timed out"
    if "NewConnection" in name or "ConnectionRefused" in name:
        return "connection refused or unreachable"
    if "NameResolution" in name:
        return "host name did not resolve"
    if "SSL" in name:
        return "TLS handshake failed"
    if "Protocol" in name or "RemoteDisconnected" in name:
        return "connection dropped by the server"
    if "ResponseError" in name:
        return "too many error answers"
    return f"request failed ({name})"
