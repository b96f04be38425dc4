"""What every Slack listener needs besides the payload: the settings and the core's services.

``bot.slack.app.create_app`` builds one ``BotDeps`` and puts it into bolt's context as ``deps``,
so bolt injects it into listeners like ``client`` or ``event``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol

from slack_sdk.http_retry import RetryHandler

from bot.config import ChannelSettings, Config
from bot.records import Answer
from bot.state import StateStore


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

    def answer(self, question: str, context: str | None) -> Answer:
        with self.answer_lock:
            return self.answerer.answer(question, context=context)

    def channel_settings(self, channel: str) -> ChannelSettings:
        slack = self.config.slack
        return slack.channels.get(channel) or ChannelSettings(slack.default_mode, slack.default_visibility)
