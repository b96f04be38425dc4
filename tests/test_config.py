"""Settings from app.yml and the environment (bot/config.py)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from bot.config import (
    AnswerSettings,
    ChannelSettings,
    Config,
    ConfigError,
    PathSettings,
    config_from_dict,
    load_config,
)
from indexer.chunking import ChunkingOptions
from indexer.search import RetrievalOptions

REPO = Path(__file__).resolve().parent.parent


def settings_file(folder: Path, text: str, name: str = "app.yml") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def without_paths(config: Config) -> Config:
    return dataclasses.replace(config, paths=PathSettings())


# --- Loading --------------------------------------------------------------------------------------


def test_defaults_load_when_there_is_no_settings_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    config = load_config(env={})

    assert without_paths(config) == Config()
    assert config.paths.index_db == Path.cwd() / "var" / "index.db"


def test_config_from_an_empty_dict_is_all_defaults():
    config = config_from_dict({})

    assert config == Config()
    assert config.chunking == ChunkingOptions() and config.retrieval == RetrievalOptions()
    assert config.answer == AnswerSettings() and config.slack.channels == {}


def test_the_repository_app_yml_loads_and_matches_the_defaults():
    config = load_config(REPO / "app.yml", env={})

    assert without_paths(config) == Config()  # app.yml: "a missing key takes the default shown here"
    assert config.paths.guidance_dir == REPO / "knowledge" / "guidance"


def test_an_empty_settings_file_means_defaults(tmp_path):
    assert without_paths(load_config(settings_file(tmp_path, "# nothing yet\n"), env={})) == Config()


def test_an_empty_section_means_that_sections_defaults(tmp_path):
    path = settings_file(tmp_path, "answer:\nslack:\n  channels:\n")

    config = load_config(path, env={})

    assert config.answer == AnswerSettings() and config.slack.channels == {}


def test_values_from_the_file_are_used(tmp_path):
    path = settings_file(
        tmp_path,
        "institution:\n  name: Test University\n"
        "answer:\n  min_similarity: 0.4\n  top_passages: 2\n"
        "retrieval:\n  fusion: rrf\n  rrf_k: 10\n",
    )

    config = load_config(path, env={})

    assert config.institution.name == "Test University"
    assert (config.answer.min_similarity, config.answer.top_passages) == (0.4, 2)
    assert (config.retrieval.fusion, config.retrieval.rrf_k) == ("rrf", 10)


def test_a_whole_number_is_accepted_for_a_decimal_setting_and_stored_as_float():
    config = config_from_dict({"answer": {"high_confidence": 1}})

    assert config.answer.high_confidence == 1.0 and isinstance(config.answer.high_confidence, float)


def test_a_missing_named_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="settings file not found") as raised:
        load_config(tmp_path / "nope.yml", env={})

    assert "nope.yml" in str(raised.value)


def test_a_missing_file_named_by_trbot_config_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="settings file not found"):
        load_config(env={"TRBOT_CONFIG": str(tmp_path / "nope.yml")})


def test_trbot_config_names_the_settings_file(tmp_path):
    path = settings_file(tmp_path, "answer:\n  top_passages: 7\n", name="other.yml")

    assert load_config(env={"TRBOT_CONFIG": str(path)}).answer.top_passages == 7


def test_invalid_yaml_is_an_error_naming_the_file(tmp_path):
    path = settings_file(tmp_path, "answer:\n  min_similarity: [0.3\n")

    with pytest.raises(ConfigError, match="not valid YAML") as raised:
        load_config(path, env={})

    assert str(path) in str(raised.value)


def test_a_file_whose_top_level_is_not_a_mapping_is_an_error(tmp_path):
    path = settings_file(tmp_path, "- answer\n- slack\n")

    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(path, env={})


def test_relative_paths_are_resolved_against_the_settings_files_folder(tmp_path):
    folder = tmp_path / "deploy"
    path = settings_file(folder, f"paths:\n  guidance_dir: docs/guidance\n  index_db: {tmp_path}/abs.db\n")

    paths = load_config(path, env={}).paths

    assert paths.guidance_dir == folder.resolve() / "docs" / "guidance"
    assert paths.index_db == tmp_path / "abs.db"
    assert paths.state_db == folder.resolve() / "var" / "trbot.db"


def test_channels_are_parsed_into_channel_settings(tmp_path):
    path = settings_file(
        tmp_path,
        "slack:\n  channels:\n"
        "    C0123: {mode: all, visibility: private}\n"
        "    C0456: {mode: mention}\n"
        "    C0789:\n",
    )

    channels = load_config(path, env={}).slack.channels

    assert channels == {
        "C0123": ChannelSettings(mode="all", visibility="private"),
        "C0456": ChannelSettings(mode="mention", visibility="public"),
        "C0789": ChannelSettings(),
    }


# --- Errors naming the key ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"retrieval": {"fusoin": "rrf"}}, "retrieval.fusoin"),
        ({"retreival": {"fusion": "rrf"}}, "retreival"),
        ({"slack": {"channels": {"C1": {"moode": "all"}}}}, "slack.channels.C1.moode"),
    ],
)
def test_an_unknown_setting_is_an_error_naming_the_full_key(data, key):
    with pytest.raises(ConfigError, match=f"unknown setting '{key}'"):
        config_from_dict(data)


@pytest.mark.parametrize(
    ("data", "key", "problem"),
    [
        ({"chunking": {"max_words": "180"}}, "chunking.max_words", "expected a whole number"),
        ({"chunking": {"max_words": True}}, "chunking.max_words", "expected a whole number"),
        ({"chunking": {"max_words": 180.5}}, "chunking.max_words", "expected a whole number"),
        ({"retrieval": {"rrf_k": -1}}, "retrieval.rrf_k", "must not be negative"),
        ({"answer": {"min_similarity": "high"}}, "answer.min_similarity", "expected a number"),
        ({"answer": {"min_similarity": False}}, "answer.min_similarity", "expected a number"),
        ({"institution": {"name": ["a", "b"]}}, "institution.name", "expected text"),
        ({"institution": {"email": 42}}, "institution.email", "expected text"),
        ({"paths": {"index_db": ""}}, "paths.index_db", "expected a file or folder path"),
        ({"paths": {"index_db": 7}}, "paths.index_db", "expected a file or folder path"),
        ({"slack": {"channels": ["C1"]}}, "slack.channels", "expected a mapping"),
    ],
)
def test_a_value_of_the_wrong_type_is_an_error_naming_the_key(data, key, problem):
    with pytest.raises(ConfigError, match=f"setting '{key}': {problem}"):
        config_from_dict(data)


def test_a_section_that_is_not_a_mapping_is_an_error_naming_it():
    with pytest.raises(ConfigError, match="setting answer: expected a mapping"):
        config_from_dict({"answer": 5})


def test_a_top_level_that_is_not_a_mapping_is_an_error():
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        config_from_dict(["answer"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"retrieval": {"fusion": "rff"}}, "retrieval.fusion"),
        ({"slack": {"transport": "websocket"}}, "slack.transport"),
        ({"slack": {"default_mode": "sometimes"}}, "slack.default_mode"),
        ({"slack": {"default_visibility": "secret"}}, "slack.default_visibility"),
        ({"slack": {"channels": {"C1": {"mode": "sometimes"}}}}, "slack.channels.C1.mode"),
        ({"slack": {"channels": {"C1": {"visibility": "secret"}}}}, "slack.channels.C1.visibility"),
    ],
)
def test_a_value_outside_its_choices_is_an_error_naming_the_key(data, key):
    with pytest.raises(ConfigError, match=f"setting '{key}': '.*' is not one of "):
        config_from_dict(data)


def test_the_choices_are_listed_in_the_error():
    with pytest.raises(ConfigError, match="is not one of socket, http"):
        config_from_dict({"slack": {"transport": "websocket"}})


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"chunking": {"max_words": 10}}, "chunking.max_words"),
        ({"chunking": {"max_words": 100, "overlap_words": 60}}, "chunking.overlap_words"),
        ({"retrieval": {"candidates": 0}}, "retrieval.candidates"),
        ({"retrieval": {"per_doc": 0}}, "retrieval.per_doc"),
        ({"retrieval": {"bm25_weight": 0.0, "dense_weight": 0.0}}, "retrieval.bm25_weight"),
        ({"retrieval": {"sentence_weight": -0.5}}, "retrieval.sentence_weight"),
        ({"retrieval": {"document_bm25_weight": -1}}, "retrieval.document_bm25_weight"),
    ],
)
def test_the_records_own_checks_surface_as_config_errors_naming_the_key(data, key):
    with pytest.raises(ConfigError, match=f"^setting '{key}': "):
        config_from_dict(data)


def test_the_documented_mode_off_can_be_written_unquoted(tmp_path):
    path = settings_file(tmp_path, "slack:\n  default_mode: off\n  channels:\n    C1: {mode: off}\n")

    slack = load_config(path, env={}).slack

    assert slack.default_mode == "off" and slack.channels["C1"].mode == "off"


# --- Environment overrides ------------------------------------------------------------------------


def test_an_environment_variable_overrides_a_decimal_setting(tmp_path):
    path = settings_file(tmp_path, "answer:\n  min_similarity: 0.4\n")

    config = load_config(path, env={"TRBOT_ANSWER_MIN_SIMILARITY": "0.5"})

    assert config.answer.min_similarity == 0.5 and isinstance(config.answer.min_similarity, float)


def test_an_environment_variable_overrides_a_path_and_relative_ones_resolve_like_the_file(tmp_path):
    path = settings_file(tmp_path / "conf", "")

    absolute = load_config(path, env={"TRBOT_PATHS_INDEX_DB": "/srv/trbot/index.db"})
    relative = load_config(path, env={"TRBOT_PATHS_INDEX_DB": "data/index.db"})

    assert absolute.paths.index_db == Path("/srv/trbot/index.db")
    assert relative.paths.index_db == (tmp_path / "conf").resolve() / "data" / "index.db"


def test_environment_overrides_work_without_a_settings_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    config = load_config(env={"TRBOT_RETRIEVAL_FUSION": "rrf", "TRBOT_CHUNKING_MAX_WORDS": "120"})

    assert (config.retrieval.fusion, config.chunking.max_words) == ("rrf", 120)


def test_slack_api_url_overrides_the_slack_api_url_setting(tmp_path):
    path = settings_file(tmp_path, "slack:\n  api_url: https://slack.com/api/\n")

    config = load_config(path, env={"SLACK_API_URL": "http://localhost:8888/"})

    assert config.slack.api_url == "http://localhost:8888/"


def test_other_environment_variables_are_ignored(tmp_path):
    path = settings_file(tmp_path, "")

    config = load_config(path, env={"HOME": "/root", "SLACK_BOT_TOKEN": "xoxb-1", "TRBOTX": "1"})

    assert without_paths(config) == Config()


@pytest.mark.parametrize("name", ["TRBOT_NOPE_X", "TRBOT_ANSWER", "TRBOT_"])
def test_an_unknown_environment_section_is_an_error_naming_the_variable(tmp_path, name):
    with pytest.raises(ConfigError, match=f"unknown setting {name} "):
        load_config(settings_file(tmp_path, ""), env={name: "1"})


def test_an_unknown_environment_key_is_an_error_naming_the_setting(tmp_path):
    with pytest.raises(ConfigError, match="unknown setting 'answer.nope'"):
        load_config(settings_file(tmp_path, ""), env={"TRBOT_ANSWER_NOPE": "1"})


def test_an_environment_value_of_the_wrong_type_is_an_error_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match="setting 'chunking.max_words': expected a whole number"):
        load_config(settings_file(tmp_path, ""), env={"TRBOT_CHUNKING_MAX_WORDS": "many"})


def test_an_environment_override_applies_to_an_empty_section_in_the_file(tmp_path):
    path = settings_file(tmp_path, "answer:\n")

    assert load_config(path, env={"TRBOT_ANSWER_MIN_SIMILARITY": "0.5"}).answer.min_similarity == 0.5


@pytest.mark.parametrize(
    ("name", "value"),
    [("TRBOT_INSTITUTION_SLACK_CHANNEL", "#research-security-help"), ("TRBOT_INSTITUTION_NAME", "Yes")],
)
def test_an_environment_value_for_a_text_setting_is_taken_as_it_is(tmp_path, name, value):
    config = load_config(settings_file(tmp_path, ""), env={name: value})

    field = name.removeprefix("TRBOT_INSTITUTION_").lower()
    assert getattr(config.institution, field) == value


def test_list_settings_read_yaml_lists_and_comma_separated_environment_text():
    import dataclasses

    from bot.config import _convert

    assert _convert(tuple[str, ...], ["U1", "U2"], "cases.team_users") == ("U1", "U2")
    assert _convert(tuple[str, ...], None, "cases.team_users") == ()
    from bot.config import _EnvText

    assert _convert(tuple[str, ...], _EnvText("U1, U2"), "cases.team_users") == ("U1", "U2")
    with pytest.raises(ConfigError, match="cases.team_users"):
        _convert(tuple[str, ...], "U1", "cases.team_users")
    with pytest.raises(ConfigError, match=r"cases.team_users\[1\]"):
        _convert(tuple[str, ...], ["U1", 5], "cases.team_users")
    assert dataclasses.is_dataclass(load_config_defaults().cases)


def load_config_defaults():
    from bot.config import config_from_dict

    return config_from_dict({})


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"answer": {"top_passages": 0}}, "answer.top_passages"),
        ({"answer": {"min_similarity": -1}}, "answer.min_similarity"),
        ({"answer": {"max_question_chars": 0}}, "answer.max_question_chars"),
        ({"answer": {"min_similarity": 0.6, "high_confidence": 0.5}}, "answer.high_confidence"),
        ({"embedding": {"batch_size": 0}}, "embedding.batch_size"),
        ({"slack": {"http_port": 99999}}, "slack.http_port"),
        ({"slack": {"api_url": "notaurl"}}, "slack.api_url"),
        ({"slack": {"api_url": "ftp://slack.example/api/"}}, "slack.api_url"),
    ],
)
def test_out_of_range_settings_are_refused_naming_the_key(data, key):
    with pytest.raises(ConfigError, match=rf"setting '{re.escape(key)}'"):
        config_from_dict(data)


def test_nan_is_refused_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match="answer.min_similarity.*finite"):
        load_config(settings_file(tmp_path, "answer:\n  min_similarity: .nan\n"), env={})


def test_a_channel_set_to_bare_off_is_mode_off_not_the_default(tmp_path):
    config = load_config(settings_file(tmp_path, "slack:\n  channels: {C0123: off, C0456: all}\n"), env={})

    assert config.slack.channels["C0123"].mode == "off"
    assert config.slack.channels["C0456"].mode == "all"


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("slack", "http_max_body_bytes", 10, "at least 1024"),
        ("slack", "http_threads", 0, "at least 1"),
        ("slack", "http_read_timeout", 0.1, "between 0.5 and 3600"),
        ("slack", "http_host", "bad host", "IP address or host name"),
        ("retention", "feedback_days", 0, "more than 0"),
        ("retention", "dm_days", 50000, "at most 36500"),
    ],
)
def test_http_and_retention_settings_are_range_checked(section, key, value, expected):
    with pytest.raises(ConfigError, match=f"{section}.{key}.*{expected}"):
        config_from_dict({section: {key: value}})


def test_the_settings_file_in_use_is_recorded(tmp_path):
    settings = tmp_path / "app.yml"
    settings.write_text("retention:\n  thread_days: 10\n")
    config = load_config(settings, env={})
    assert config.source == settings.resolve() and config.retention.thread_days == 10
    assert load_config(env={"TRBOT_CONFIG": str(settings)}).source == settings.resolve()
    with pytest.raises(ConfigError, match="unknown setting 'source'"):
        config_from_dict({"source": "x"})


def test_the_scifact_benchmark_settings_load_and_weigh_sentences_and_documents():
    config = load_config(REPO / "eval" / "scifact.yml", env={})
    assert config.chunking.max_words == 80
    assert config.retrieval.sentence_weight > 0 and config.retrieval.document_bm25_weight > 0
    assert config.embedding == Config().embedding
