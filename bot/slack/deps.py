"""What every Slack listener needs besides the payload: the settings and the core's services.

``bot.slack.app.create_app`` builds one ``BotDeps`` and puts it into bolt's context as ``deps``,
so bolt injects it into listeners like ``client`` or ``event``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from slack_sdk.http_retry import RetryHandler

from bot.config import ChannelSettings, Config
from bot.records import Answer
from bot.state import StateStore

if TYPE_CHECKING:
    from bot.cases import Escalation, Team
    from bot.outbox import Outbox
    from bot.screening import Screener
    from bot.slack.delivery import OutboxWorker
    from bot.slack.work import WorkQueue


class SupportsAnswer(Protocol):
    def answer(self, question: str, context: str | None = None) -> Answer: ...


@dataclass(frozen=True)
class BotDeps:
    """What the handlers need besides the Slack payload."""

    config: Config
    answerer: SupportsAnswer
    store: StateStore
    retry_handlers: tuple[RetryHandler, ...] = ()
    # The core is not promised to be thread-safe, and on a small CPU box parallel model calls
    # gain nothing: answers are computed one at a time.
    answer_lock: threading.Lock = field(default_factory=threading.Lock, compare=False)
    # Cases (bot.cases): the escalation service (store, outbox, renderer), who is in the
    # research-security team, and the escalation rules (bot.triggers.Triager). None: not enabled.
    cases: Escalation | None = field(default=None, compare=False)
    team: Team | None = field(default=None, compare=False)
    triager: Any = field(default=None, compare=False)
    # Delivery (bot.outbox, bot.slack.delivery): every message goes into the outbox, which the
    # worker delivers with backoff (None in unit tests: messages are then sent at once). The work
    # queue (bot.slack.work) runs answers on one thread, so listeners only parse, ack and enqueue
    # (None: answers run in the listener's thread).
    outbox: Outbox | None = field(default=None, compare=False)
    outbox_worker: OutboxWorker | None = field(default=None, compare=False)
    work: WorkQueue | None = field(default=None, compare=False)
    # Partner pre-screening (bot.screening.Screener, sharing the answerer's model). None: DMs are
    # always answered from the guidance, and /prescreen says pre-screening is not available.
    screener: Screener | None = field(default=None, compare=False)

    def answer(self, question: str, context: str | None) -> Answer:
        with self.answer_lock:
            return self.answerer.answer(question, context=context)

    def channel_settings(self, channel: str) -> ChannelSettings:
        slack = self.config.slack
        return slack.channels.get(channel) or ChannelSettings(slack.default_mode, slack.default_visibility)
