"""Settings: app.yml, overridden by environment variables, loaded once and passed in.

Every setting has a default here and a comment in app.yml. ``load_config`` is called
only by the adapters' entry points (CLI, ``trbot serve``); nothing reads it at import.

Environment overrides: ``TRBOT_<SECTION>_<KEY>`` (for example ``TRBOT_ANSWER_MIN_SIMILARITY=0.5``);
``SLACK_API_URL`` overrides ``slack.api_url``; ``TRBOT_CONFIG`` names the settings file.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from bot.records import Contact
from indexer.chunking import ChunkingOptions
from indexer.search import RetrievalOptions

DEFAULT_CONFIG_FILE = "app.yml"
ENV_PREFIX = "TRBOT_"


class ConfigError(Exception):
    """A setting is missing, unknown or malformed; the message names the key."""


@dataclass(frozen=True)
class InstitutionSettings:
    name: str = "Example University"
    team_name: str = "Research Security Team"
    email: str = "research-security@example.ac.uk"
    slack_channel: str = "#research-security-help"
    url: str = "https://www.example.ac.uk/research-security"

    def contact(self) -> Contact:
        """Whom researchers should ask, as the record the core and renderers use."""
        return Contact(self.team_name, self.email, self.slack_channel, self.url, self.name)


@dataclass(frozen=True)
class PathSettings:
    guidance_dir: Path = Path("knowledge/guidance")
    index_db: Path = Path("var/index.db")
    state_db: Path = Path("var/trbot.db")
    off_topic: Path = Path("knowledge/off-topic.yaml")
    referrals: Path = Path("knowledge/referrals.yaml")
    triggers: Path = Path("knowledge/triggers.yml")
    watchlist_db: Path = Path("var/watchlists.db")
    watchlists_dir: Path = Path("knowledge/watchlists")
    screening_rules: Path = Path("knowledge/screening-rules.yml")


@dataclass(frozen=True)
class EmbeddingSettings:
    model: str = "bundled:all-MiniLM-L6-v2"
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size: must be at least 1, got {self.batch_size}")


@dataclass(frozen=True)
class AnswerSettings:
    top_passages: int = 5
    min_similarity: float = 0.35
    high_confidence: float = 0.55
    off_topic_margin: float = 0.05
    highlight_sentences: int = 2
    max_question_chars: int = 1000
    followup_max_words: int = 12
    candidate_passages: int = 12
    max_quoted_chars: int = 1700
    min_coverage: float = 0.45
    max_review_age_days: int = 365

    def __post_init__(self) -> None:
        _check_at_least(self, ("top_passages", "highlight_sentences", "max_question_chars"), 1)
        _check_at_least(self, ("candidate_passages", "max_review_age_days"), 1)
        if self.top_passages > 10:
            raise ValueError(f"top_passages: must be at most 10, got {self.top_passages}")
        if self.max_quoted_chars < 200:
            raise ValueError(f"max_quoted_chars: must be at least 200, got {self.max_quoted_chars}")
        if not 0.0 <= self.min_coverage <= 1.0:  # NaN fails this too
            raise ValueError(f"min_coverage: must be between 0 and 1, got {self.min_coverage}")
        for name in ("min_similarity", "high_confidence"):
            value = getattr(self, name)
            if not -1.0 < value <= 1.0:  # NaN fails this too
                raise ValueError(f"{name}: must be a cosine similarity above -1 and at most 1, got {value}")
        if self.high_confidence < self.min_similarity:
            raise ValueError(
                f"high_confidence: must not be below min_similarity ({self.min_similarity}), "
                f"got {self.high_confidence}"
            )
        if not 0.0 <= self.off_topic_margin <= 1.0:
            raise ValueError(f"off_topic_margin: must be between 0 and 1, got {self.off_topic_margin}")


def _check_at_least(settings: Any, names: tuple[str, ...], minimum: int) -> None:
    for name in names:
        value = getattr(settings, name)
        if value < minimum:
            raise ValueError(f"{name}: must be at least {minimum}, got {value}")


@dataclass(frozen=True)
class ChannelSettings:
    mode: str = "mention"
    visibility: str = "public"


@dataclass(frozen=True)
class SlackSettings:
    transport: str = "socket"
    app_name: str = "Trusted Research"
    api_url: str = "https://slack.com/api/"
    http_port: int = 3000
    http_host: str = "127.0.0.1"  # loopback: a TLS proxy in front; 0.0.0.0 in a container
    http_max_body_bytes: int = 1_048_576
    http_threads: int = 8
    http_backlog: int = 1024
    http_max_connections: int = 500
    http_idle_timeout: float = 10.0
    http_read_timeout: float = 10.0
    command: str = "/trusted-research"
    default_mode: str = "mention"
    default_visibility: str = "public"
    progress_reaction: str = "hourglass_flowing_sand"
    max_retries: int = 3
    channels: dict[str, ChannelSettings] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.http_port <= 65535:
            raise ValueError(f"http_port: must be a TCP port from 1 to 65535, got {self.http_port}")
        if not self.http_host.strip() or any(c.isspace() or c in "/[]" for c in self.http_host):
            raise ValueError(f"http_host: must be an IP address or host name, got {self.http_host!r}")
        if self.http_max_body_bytes < 1024:
            raise ValueError(f"http_max_body_bytes: must be at least 1024, got {self.http_max_body_bytes}")
        _check_at_least(self, ("http_threads", "http_backlog", "http_max_connections"), 1)
        for name in ("http_idle_timeout", "http_read_timeout"):
            if not 0.5 <= getattr(self, name) <= 3600:
                raise ValueError(f"{name}: must be between 0.5 and 3600 seconds, got {getattr(self, name)}")
        parts = urlsplit(self.api_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"api_url: must be an http:// or https:// URL, got {self.api_url!r}")
        if not self.command.startswith("/") or len(self.command) < 2 or " " in self.command:
            raise ValueError(
                f"command: must be a slash command such as /trusted-research, got {self.command!r}"
            )


@dataclass(frozen=True)
class TriggerSettings:
    """Escalation triggers (``bot.triggers``); the rules themselves are in ``paths.triggers``."""

    # cosine similarity at which a semantic rule that sets no threshold of its own matches
    semantic_threshold: float = 0.55

    def __post_init__(self) -> None:
        if not 0 < self.semantic_threshold <= 1:
            raise ValueError(
                f"semantic_threshold: must be above 0 and at most 1, got {self.semantic_threshold}"
            )


@dataclass(frozen=True)
class CaseSettings:
    """Tracked cases for the research-security team (``bot.cases``).

    Off by default so that ``trbot ask`` and a first ``trbot serve`` need no team channel; once
    enabled, ``trbot serve`` refuses to start without ``channel`` and a team
    (``bot.cases.check_settings``).
    """

    enabled: bool = False
    channel: str = ""  # the team's private channel id (C… or G…), where case cards go
    team_users: tuple[str, ...] = ()  # Slack user ids who may see and work cases
    team_usergroup: str = ""  # optional user group id (S…) whose members also count
    usergroup_refresh_minutes: float = 10.0
    reference_prefix: str = "RS"
    command: str = "/trcase"
    remind_high_after_hours: float = 4.0  # 0: no reminders for that severity
    remind_medium_after_hours: float = 48.0
    rejoin_window_hours: float = 168.0  # the same person's same concern within this joins the open case
    prescreen_red: str = "open"  # what a red pre-screening does: open a case, offer one, or off
    prescreen_amber: str = "offer"

    def __post_init__(self) -> None:
        _check_case_settings(self)


@dataclass(frozen=True)
class OutboxSettings:
    """Durable delivery of every message to Slack (``bot.outbox``, ``bot.slack.delivery``)."""

    give_up_after_hours: float = 24.0  # a message still failing this long after it was queued is failed
    response_url_give_up_after_minutes: float = 25.0  # Slack's response_urls expire after 30 minutes
    backoff_initial_seconds: float = 1.0  # the wait after the first failed try; doubles with each try
    backoff_max_seconds: float = 300.0  # the longest wait between two tries
    backoff_jitter: float = 0.5  # each wait is shortened by a random part up to this fraction
    request_timeout_seconds: float = 10.0  # one delivery call to Slack
    lease_seconds: float = 30.0  # a message being sent is retried after this if the sender died
    start_drain_seconds: float = (
        15.0  # `trbot serve` delivers what is queued for up to this before taking events
    )
    stop_drain_seconds: float = 10.0  # and for up to this when it stops
    keep_days: float = 30.0  # delivered and failed messages (not tied to a case) are deleted after this

    def __post_init__(self) -> None:
        for name in (
            "give_up_after_hours",
            "response_url_give_up_after_minutes",
            "backoff_initial_seconds",
            "backoff_max_seconds",
            "request_timeout_seconds",
            "lease_seconds",
            "keep_days",
        ):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name}: must be a number above 0, got {value}")
        for name in ("start_drain_seconds", "stop_drain_seconds"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"{name}: must be 0 or more, got {getattr(self, name)}")
        if not 0 <= self.backoff_jitter < 1:
            raise ValueError(
                f"backoff_jitter: must be from 0 up to (not including) 1, got {self.backoff_jitter}"
            )
        if self.backoff_max_seconds < self.backoff_initial_seconds:
            raise ValueError("backoff_max_seconds: must not be below backoff_initial_seconds")
        if self.response_url_give_up_after_minutes >= 30:
            raise ValueError("response_url_give_up_after_minutes: must be under 30 (Slack expires them then)")
        if self.lease_seconds <= self.request_timeout_seconds:
            raise ValueError("lease_seconds: must be longer than request_timeout_seconds")


@dataclass(frozen=True)
class ScreeningSettings:
    """Partner pre-screening and the watchlists behind it (``bot.screening``, ``bot.watchlists``)."""

    # bot.screening (the rules are in paths.screening_rules)
    command: str = "/prescreen"
    max_matches: int = 5
    area_similarity: float = 0.45
    dm_routing: bool = True
    # bot.watchlists (the lists are in paths.watchlist_db; the starter list in paths.watchlists_dir)
    match_threshold: float = 0.86
    possible_threshold: float = 0.72
    max_list_age_days: int = 30
    starter_list: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.possible_threshold <= self.match_threshold <= 1.0:  # NaN fails this too
            raise ValueError(
                "match_threshold: need 0 < possible_threshold <= match_threshold <= 1, got "
                f"{self.possible_threshold} and {self.match_threshold}"
            )
        if self.max_list_age_days < 1:
            raise ValueError(f"max_list_age_days: must be at least 1, got {self.max_list_age_days}")
        if not self.command.startswith("/") or len(self.command) < 2 or " " in self.command:
            raise ValueError(f"command: must be a slash command such as /prescreen, got {self.command!r}")
        if not 1 <= self.max_matches <= 20:
            raise ValueError(f"max_matches: must be between 1 and 20, got {self.max_matches}")
        if not 0.0 < self.area_similarity <= 1.0:  # NaN fails this too
            raise ValueError(f"area_similarity: must be above 0 and at most 1, got {self.area_similarity}")


@dataclass(frozen=True)
class RetentionSettings:
    """How long the bot keeps what people wrote (``bot.state``); pruned daily by ``trbot serve``."""

    feedback_days: float = 365.0  # feedback clicks, with the question and the reason given
    thread_days: float = 30.0  # a channel thread's question (for follow-ups) and the answers behind buttons
    dm_days: float = 7.0  # the same for direct messages

    def __post_init__(self) -> None:
        for name in ("feedback_days", "thread_days", "dm_days"):
            if not 0 < getattr(self, name) <= 36500:
                raise ValueError(
                    f"{name}: must be more than 0 and at most 36500 days, got {getattr(self, name)}"
                )


@dataclass(frozen=True)
class Config:
    institution: InstitutionSettings = field(default_factory=InstitutionSettings)
    paths: PathSettings = field(default_factory=PathSettings)
    embedding: EmbeddingSettings = field(default_factory=EmbeddingSettings)
    chunking: ChunkingOptions = field(default_factory=ChunkingOptions)
    retrieval: RetrievalOptions = field(default_factory=RetrievalOptions)
    answer: AnswerSettings = field(default_factory=AnswerSettings)
    slack: SlackSettings = field(default_factory=SlackSettings)
    triggers: TriggerSettings = field(default_factory=TriggerSettings)
    cases: CaseSettings = field(default_factory=CaseSettings)
    outbox: OutboxSettings = field(default_factory=OutboxSettings)
    screening: ScreeningSettings = field(default_factory=ScreeningSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    # The settings file these came from (None: no file, all defaults); not a setting itself.
    source: Path | None = field(default=None, compare=False, metadata={"internal": True})


_CHOICES: dict[str, tuple[str, ...]] = {
    "retrieval.fusion": ("rrf", "weighted", "zscore", "relative"),
    "slack.transport": ("socket", "http"),
    "slack.default_mode": ("off", "mention", "all"),
    "slack.default_visibility": ("public", "private"),
    "mode": ("off", "mention", "all"),
    "visibility": ("public", "private"),
    "cases.prescreen_red": ("open", "offer", "off"),
    "cases.prescreen_amber": ("open", "offer", "off"),
}


_CASE_CHANNEL = re.compile(r"[CG][A-Z0-9]{2,}")
_CASE_USER = re.compile(r"[UW][A-Z0-9]{2,}")
_CASE_USERGROUP = re.compile(r"S[A-Z0-9]{2,}")
_CASE_PREFIX = re.compile(r"[A-Z][A-Z0-9]{0,9}")


def _check_case_settings(cases: CaseSettings) -> None:
    if cases.channel and not _CASE_CHANNEL.fullmatch(cases.channel):
        got = cases.channel
        raise ValueError(f"channel: expected a channel id like C0123456789 (not a #name), got {got!r}")
    for user in cases.team_users:
        if not _CASE_USER.fullmatch(user):
            raise ValueError(f"team_users: expected Slack user ids like U0123456789, got {user!r}")
    if cases.team_usergroup and not _CASE_USERGROUP.fullmatch(cases.team_usergroup):
        got = cases.team_usergroup
        raise ValueError(f"team_usergroup: expected a user group id like S0123456789, got {got!r}")
    if not _CASE_PREFIX.fullmatch(cases.reference_prefix):
        raise ValueError("reference_prefix: 1 to 10 capital letters or digits, starting with a letter")
    if not cases.command.startswith("/") or len(cases.command) < 2 or " " in cases.command:
        raise ValueError(f"command: expected a slash command like /trcase, got {cases.command!r}")
    for name in ("remind_high_after_hours", "remind_medium_after_hours", "rejoin_window_hours"):
        if not math.isfinite(getattr(cases, name)) or getattr(cases, name) < 0:
            raise ValueError(f"{name}: must be 0 or more hours, got {getattr(cases, name)}")
    if not math.isfinite(cases.usergroup_refresh_minutes) or cases.usergroup_refresh_minutes <= 0:
        raise ValueError("usergroup_refresh_minutes: must be more than 0")
    for name in ("prescreen_red", "prescreen_amber"):
        if getattr(cases, name) not in ("open", "offer", "off"):
            raise ValueError(f"{name}: {getattr(cases, name)!r} is not one of open, offer, off")


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load settings from a YAML file and the environment.

    Args:
        path: The settings file. Defaults to ``$TRBOT_CONFIG`` or ``./app.yml``; a missing
            default file means "all defaults", a missing named file is an error.
        env: Environment variables (defaults to ``os.environ``).

    Returns:
        The validated ``Config``, with relative paths resolved against the file's folder.

    Raises:
        ConfigError: naming the key (or file) at fault.
    """
    env = os.environ if env is None else env
    named = path or env.get("TRBOT_CONFIG")
    file = Path(named) if named else Path(DEFAULT_CONFIG_FILE)
    data = _read_yaml(file, required=bool(named))
    data = _apply_env(data, env)
    config = config_from_dict(data)
    config = dataclasses.replace(config, source=file.resolve() if file.exists() else None)
    return _resolve_paths(config, file.resolve().parent)


def settings_file(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> tuple[Path, str]:
    """Which settings file ``load_config`` reads, and why: "--config", "TRBOT_CONFIG" or "default"."""
    env = os.environ if env is None else env
    if path:
        return Path(path).resolve(), "--config"
    if env.get("TRBOT_CONFIG"):
        return Path(env["TRBOT_CONFIG"]).resolve(), "TRBOT_CONFIG"
    return Path(DEFAULT_CONFIG_FILE).resolve(), "default"


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """Build a ``Config`` from a plain dict (as parsed from YAML); unknown keys are errors."""
    if not isinstance(data, Mapping):
        raise ConfigError("settings: the top level must be a mapping of sections")
    return _build(Config, data, "")


def read_data_file(path: Path, what: str) -> Any:
    """The parsed YAML of an institution data file (off-topic examples, referrals), or None if
    the file is missing.

    Raises:
        ConfigError: the file cannot be read or is not YAML; the message names it and ``what``.
    """
    if not path.exists():
        return None
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({_first_line(exc)})") from exc


def _read_yaml(file: Path, required: bool) -> dict[str, Any]:
    if not file.exists():
        if required:
            raise ConfigError(f"settings file not found: {file}")
        return {}
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML ({_first_line(exc)})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot be read ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: the top level must be a mapping of sections")
    return data


class _EnvText(str):
    """A value from the environment: text, parsed as YAML only where the setting is not text."""


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    merged = {key: dict(value) if isinstance(value, dict) else value for key, value in data.items()}
    sections = {f.name for f in dataclasses.fields(Config) if not f.metadata.get("internal")}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name == "TRBOT_CONFIG":
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("_")
        if section not in sections or not key:
            raise ConfigError(f"environment: unknown setting {name} (expected TRBOT_<SECTION>_<KEY>)")
        if merged.get(section) is None:
            merged[section] = {}  # an empty section in the file ("answer:" with every key commented out)
        if not isinstance(merged[section], dict):
            raise ConfigError(f"setting '{section}': expected a mapping, so {name} cannot be applied")
        merged[section][key] = _EnvText(raw)
    if env.get("SLACK_API_URL"):
        merged.setdefault("slack", {})["api_url"] = env["SLACK_API_URL"]
    return merged


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"setting {prefix.rstrip('.') or 'settings'}: expected a mapping")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown setting '{prefix}{unknown[0]}' (known in this section: {', '.join(sorted(known))})"
        )
    values = {name: _convert(hints[name], value, f"{prefix}{name}") for name, value in data.items()}
    try:
        return cls(**values)
    except ValueError as exc:  # the records' own checks say "<field>: <problem>"
        name, _, problem = str(exc).partition(": ")
        raise ConfigError(f"setting '{prefix}{name}': {problem}") from exc


def _convert(hint: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value if value is not None else {}, f"{key}.")
    origin = typing.get_origin(hint)
    if origin is tuple:
        return _convert_tuple(typing.get_args(hint)[0], value, key)
    if origin is dict:
        return _convert_channels(typing.get_args(hint)[1], value, key)
    if origin in (types.UnionType, typing.Union):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return _convert_scalar(hint, value, key)


def _convert_tuple(item_hint: Any, value: Any, key: str) -> tuple[Any, ...]:
    """A list setting (YAML list, or comma-separated text from the environment)."""
    if value is None:
        return ()
    if isinstance(value, _EnvText):
        value = [part.strip() for part in str(value).split(",") if part.strip()]
    if not isinstance(value, list | tuple):
        raise ConfigError(f"setting '{key}': expected a list, got {value!r}")
    return tuple(_convert_scalar(item_hint, item, f"{key}[{n}]") for n, item in enumerate(value))


def _convert_channels(item_cls: type, value: Any, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"setting '{key}': expected a mapping of channel id to settings")
    return {
        str(name): _build(item_cls, _channel_spec(spec), f"{key}.{name}.") for name, spec in value.items()
    }


def _channel_spec(spec: Any) -> Any:
    """A channel's settings; a bare mode (``C1: off``, read by YAML as false) means ``{mode: off}``."""
    if spec is None:
        return {}
    if spec is False:
        return {"mode": "off"}
    if isinstance(spec, str):
        return {"mode": spec}
    return spec


def _convert_scalar(hint: Any, value: Any, key: str) -> Any:
    if isinstance(value, _EnvText):
        value = str(value) if hint in (str, Path) else _parse_env_number(value)
    if value is False and "off" in _choices_for(key):
        value = "off"  # YAML reads an unquoted off as false
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"setting '{key}': expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"setting '{key}': expected a whole number, got {value!r}")
        if value < 0:
            raise ConfigError(f"setting '{key}': must not be negative, got {value}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"setting '{key}': expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"setting '{key}': expected a finite number, got {value!r}")
        return float(value)
    if hint is Path:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"setting '{key}': expected a file or folder path, got {value!r}")
        return Path(value)
    if not isinstance(value, str):
        raise ConfigError(f"setting '{key}': expected text, got {value!r}")
    _check_choice(key, value)
    return value


def _parse_env_number(raw: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _choices_for(key: str) -> tuple[str, ...]:
    return _CHOICES.get(key) or _CHOICES.get(key.rsplit(".", 1)[-1] if ".channels." in key else "", ())


def _check_choice(key: str, value: str) -> None:
    choices = _choices_for(key)
    if choices and value not in choices:
        raise ConfigError(f"setting '{key}': {value!r} is not one of {', '.join(choices)}")


def _resolve_paths(config: Config, base: Path) -> Config:
    paths = config.paths
    resolved = {f.name: _absolute(getattr(paths, f.name), base) for f in dataclasses.fields(PathSettings)}
    return dataclasses.replace(config, paths=PathSettings(**resolved))


def _absolute(path: Path, base: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else base / path


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
