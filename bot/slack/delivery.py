"""The outbox's delivery worker: sends due messages to Slack in the background, with backoff.

``OutboxWorker(outbox, client)`` runs one thread that claims due messages from ``bot.outbox``,
sends each (a Web API method through the matching ``WebClient`` method, or a ``response_url``
through slack_sdk's ``WebhookClient``), and reports Slack's answer back:

- success (and, for reactions, ``already_reacted`` / ``no_reaction``): delivered, with its ts;
- a transient failure (HTTP 5xx or 429, a Slack ``ratelimited`` / ``internal_error``, a refused or
  dropped connection, a timeout): tried again with backoff, a 429's Retry-After honoured;
- anything else (``channel_not_found``, ``invalid_blocks``, ``msg_too_long``, a 4xx from a
  response_url...): failed at once, the error recorded.

While Slack is unreachable, one message is tried every ``PROBE_SECONDS`` whatever the backoff,
and the first success after an outage makes the backlog due at once (not what waits out a 429's
Retry-After), so the outbox drains within seconds of Slack's return, not at the next backoff.

The worker's ``WebClient`` has no retry handlers of its own (``build_delivery_client``): the
outbox does the retrying, so a send never sleeps through a long outage while others wait. The
listeners keep their own client for calls that must happen at once (``views.open`` within a
trigger_id's 3 seconds).
"""

from __future__ import annotations

import http.client
import logging
import re
import socket
import sqlite3
import threading
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.webhook import WebhookClient

from bot.config import Config
from bot.outbox import RATE_LIMITED, RESPONSE_URL, Delivery, Outbox

logger = logging.getLogger(__name__)

# Slack errors a later try can fix; every other Slack error fails the message at once.
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
# Answers that mean "already done": the message counts as delivered.
ALREADY_DONE = {"reactions.add": {"already_reacted"}, "reactions.remove": {"no_reaction"}}
_CODE = re.compile(r"[a-z][a-z0-9_]{1,60}")  # a Slack error code (safe to record: never message text)
IDLE_POLL_SECONDS = 30.0
# While Slack is down, every message backs off on its own (up to outbox.backoff_max_seconds);
# one message probes at least this often, and once one gets through the others follow at once.
PROBE_SECONDS = 5.0
BATCH = 10


@dataclass(frozen=True)
class Outcome:
    """How one send went."""

    delivered: bool
    result: dict[str, Any] | None = None
    error: str | None = None
    permanent: bool = False
    retry_after: float | None = None


def build_delivery_client(config: Config, token: str | None) -> WebClient:
    """A ``WebClient`` for the worker: the app's API URL, a short timeout and no built-in retries."""
    return WebClient(
        token=token,
        base_url=config.slack.api_url.rstrip("/") + "/",
        timeout=int(max(1, round(config.outbox.request_timeout_seconds))),
        retry_handlers=[],
    )


class OutboxWorker:
    """Delivers the outbox in a background thread; ``wake()`` after an enqueue, ``stop()`` to end.

    Args:
        outbox: The outbox to deliver.
        client: A Web API client without retry handlers (``build_delivery_client``).
        timeout: Seconds for one response_url POST (Web API calls use the client's timeout).
        idle_poll: The longest sleep when nothing is due (a safety net; enqueues wake it at once).
    """

    def __init__(
        self,
        outbox: Outbox,
        client: WebClient,
        *,
        timeout: float | None = None,
        idle_poll: float = IDLE_POLL_SECONDS,
    ) -> None:
        self.outbox = outbox
        self.client = client
        self.timeout = timeout if timeout is not None else outbox.settings.request_timeout_seconds
        self.idle_poll = idle_poll
        self.on_delivered: list[Callable[[Delivery, dict[str, Any]], None]] = []
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_success = 0.0
        self._last_transient = 0.0
        self._last_try = 0.0
        self._rate_limited = False

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> OutboxWorker:
        """Start the background thread (once); enqueues on the outbox wake it."""
        if self._thread is None or not self._thread.is_alive():
            self._stopping.clear()
            self.outbox.add_listener(self.wake)
            self._thread = threading.Thread(target=self._run, name="trbot-outbox", daemon=True)
            self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        """Look for due messages now (call after an enqueue)."""
        self._wake.set()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the thread after the send in progress (messages not sent stay queued)."""
        self._stopping.set()
        self._wake.set()
        self.outbox.remove_listener(self.wake)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def drain(self, timeout: float) -> int:
        """Deliver in the calling thread until nothing is left to deliver or ``timeout`` has passed.

        Returns:
            How many messages are still pending (0: all delivered or failed).
        """
        deadline = time.monotonic() + timeout
        while True:
            delivered = self.deliver_due()
            outstanding = self.outbox.outstanding()
            left = deadline - time.monotonic()
            if outstanding == 0 or left <= 0:
                return outstanding
            if not delivered:
                due = self.outbox.seconds_until_due()
                time.sleep(max(0.01, min(left, 0.5 if due is None else due, 0.5)))

    @property
    def slack_reachable(self) -> bool:
        """False while the last send failed transiently (Slack down, slow or rate-limiting)."""
        return self._last_transient <= self._last_success

    # -- delivering --------------------------------------------------------------------------
    def deliver_due(self, batch: int = BATCH) -> int:
        """Send the messages due now (up to ``batch``); returns how many were tried."""
        claimed = self.outbox.claim(batch)
        for index, delivery in enumerate(claimed):
            if self._stopping.is_set() and threading.current_thread() is self._thread:
                for rest in claimed[index:]:
                    self.outbox.release(rest.id)
                break
            self._deliver(delivery)
        return len(claimed)

    def _deliver(self, delivery: Delivery) -> None:
        self._last_try = time.monotonic()
        outcome = send(self.client, delivery, self.timeout)
        if outcome.delivered:
            was_down = not self.slack_reachable
            self._last_success = time.monotonic()
            for callback in list(self.on_delivered):  # before the row says delivered (tests wait on it)
                try:
                    callback(delivery, outcome.result or {})
                except Exception:  # a hook's failure must not undo or repeat the delivery
                    logger.exception("after delivering %s", delivery.describe())
            self.outbox.mark_delivered(delivery.id, outcome.result)
            if was_down:  # Slack is back: the backlog need not wait out its backoff
                woken = self.outbox.make_due(spare_rate_limited=True)
                if woken:
                    logger.info("Slack answers again: delivering %d queued message(s) now", woken)
            return
        if not outcome.permanent:
            self._last_transient = time.monotonic()
            self._rate_limited = (outcome.error or "").startswith(RATE_LIMITED)
        status = self.outbox.record_failure(
            delivery.id,
            outcome.error or "unknown error",
            permanent=outcome.permanent,
            retry_after=outcome.retry_after,
        )
        if status == "pending":
            logger.info(
                "%s not delivered (attempt %d: %s); will retry",
                delivery.describe(),
                delivery.attempts,
                outcome.error,
            )

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                if self.deliver_due():
                    continue
                due = self.outbox.seconds_until_due()
                probe = self._probe_in()
                if due is not None and probe is not None and probe <= 0 < due:
                    self.outbox.make_due(limit=1, spare_rate_limited=True)
                    continue
                if due is not None and probe is not None:
                    due = min(due, probe)
            except sqlite3.Error:  # e.g. the disk is full; the messages stay queued
                logger.exception("the outbox could not be read; trying again shortly")
                due = 1.0
            self._wake.wait(self.idle_poll if due is None else max(0.01, min(due, self.idle_poll)))
            self._wake.clear()

    def _probe_in(self) -> float | None:
        """Seconds until a probe is due while Slack is down (None: it is up, or rate-limiting us)."""
        if self.slack_reachable or self._rate_limited:
            return None
        return self._last_try + PROBE_SECONDS - time.monotonic()


# -- one send --------------------------------------------------------------------------------


def send(client: WebClient, delivery: Delivery, timeout: float) -> Outcome:
    """Send one message and classify Slack's answer (never raises for a failed send)."""
    try:
        if delivery.method == RESPONSE_URL:
            return _send_to_response_url(delivery.payload, timeout)
        return _call(client, delivery.method, delivery.payload)
    except SlackApiError as exc:
        return _classify_api_error(delivery.method, exc)
    except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as exc:
        return Outcome(False, error=f"connection error: {_reason(exc)}")
    except SlackClientError as exc:  # e.g. a body that is not JSON (a proxy's error page)
        return Outcome(False, error=f"bad answer from Slack: {type(exc).__name__}")
    except ValueError as exc:  # slack_sdk could not parse the answer
        return Outcome(False, error=f"bad answer from Slack: {type(exc).__name__}")
    except Exception as exc:  # a payload the client refuses (a bug): retrying cannot help
        logger.exception("%s could not be sent", delivery.describe())
        return Outcome(False, error=f"{type(exc).__name__}", permanent=True)


def _call(client: WebClient, method: str, payload: dict[str, Any]) -> Outcome:
    function = getattr(client, method.replace(".", "_"), None)
    response = function(**payload) if callable(function) else client.api_call(method, json=payload)
    data = response.data if isinstance(response.data, dict) else {}
    result = dict(data)
    channel = data.get("channel")
    if isinstance(channel, dict):
        result["channel"] = channel.get("id")
    return Outcome(True, result=result)


def _classify_api_error(method: str, exc: SlackApiError) -> Outcome:
    response = exc.response
    status = getattr(response, "status_code", 200) or 200
    data = response.data if isinstance(getattr(response, "data", None), dict) else {}
    error = str(data.get("error") or "")
    error = error if _CODE.fullmatch(error) else ""
    if error and error in ALREADY_DONE.get(method, ()):
        return Outcome(True, result={})
    if status == 429 or error in ("ratelimited", "rate_limited"):
        return Outcome(False, error=f"{RATE_LIMITED} (HTTP {status})", retry_after=_retry_after(response))
    if status >= 500:
        return Outcome(False, error=f"HTTP {status}" + (f" {error}" if error else ""))
    if error in TRANSIENT_ERRORS:
        return Outcome(False, error=error)
    if status != 200 and not error:
        return Outcome(False, error=f"HTTP {status}", permanent=400 <= status < 500)
    return Outcome(False, error=error or "unknown_error", permanent=True)


def _send_to_response_url(payload: dict[str, Any], timeout: float) -> Outcome:
    webhook = WebhookClient(payload["url"], timeout=int(max(1, round(timeout))), retry_handlers=[])
    response = webhook.send_dict(payload["message"])
    status = response.status_code
    if status == 200:
        return Outcome(True, result={})
    body = (response.body or "").strip()
    error = f"response_url answered HTTP {status}" + (f" {body}" if _CODE.fullmatch(body) else "")
    if status == 429:
        return Outcome(False, error=f"{RATE_LIMITED} ({error})", retry_after=_retry_after(response))
    if status >= 500:
        return Outcome(False, error=error)
    return Outcome(False, error=error, permanent=True)  # expired_url, used_url, invalid_payload...


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None) or {}
    for name, value in dict(headers).items():
        if str(name).lower() == "retry-after":
            value = value[0] if isinstance(value, list | tuple) and value else value
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None
    return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        return _reason(exc.reason)
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return type(exc).__name__
