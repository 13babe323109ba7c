"""Settings precedence: default < config file < KBSEARCH_* environment < explicit arguments."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbsearch import ConfigError, Settings


def test_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "kbsearch.toml"
    cfg.write_text('[search]\ncandidates = 30\nlimit = 7\n[index]\npath = "from-file"\n', encoding="utf-8")
    assert Settings.load(config_file=None, env={}).search.candidates == 40
    s = Settings.load(config_file=cfg, env={})
    assert (s.search.candidates, s.search.limit, s.index.path) == (30, 7, Path("from-file"))
    s = Settings.load(config_file=cfg, env={"KBSEARCH_SEARCH_CANDIDATES": "25", "KBSEARCH_INDEX": "from-env"})
    assert (s.search.candidates, s.search.limit, s.index.path) == (25, 7, Path("from-env"))
    s = Settings.load(config_file=cfg, env={"KBSEARCH_SEARCH_CANDIDATES": "25"}, **{"search.candidates": 12},
                      index_path="from-flag")
    assert (s.search.candidates, s.index.path) == (12, Path("from-flag"))


def test_config_file_from_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "other.toml"
    cfg.write_text("[rerank]\nweight_tfidf = 0.7\n", encoding="utf-8")
    assert Settings.load(env={"KBSEARCH_CONFIG": str(cfg)}).rerank.weight_tfidf == 0.7


@pytest.mark.parametrize(
    "text, message",
    [
        ("[search]\ncandidates = 'many'\n", "search.candidates"),
        ("[search]\ncandidatez = 3\n", "unknown setting search.candidatez"),
        ("[nonsense]\nx = 1\n", "unknown settings section"),
        ("[search\n", "invalid TOML"),
        ("[index]\nwriter_timeout = true\n", "index.writer_timeout"),
    ],
    ids=["bad-type", "unknown-key", "unknown-section", "bad-toml", "bool-for-float"],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "kbsearch.toml"
    cfg.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        Settings.load(config_file=cfg, env={})


def test_bad_environment_value_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="KBSEARCH_SEARCH_LIMIT"):
        Settings.load(config_file=None, env={"KBSEARCH_SEARCH_LIMIT": "ten"})


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        Settings.load(config_file=tmp_path / "nope.toml", env={})


def test_misspelt_environment_setting_is_an_error_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"KBSEARCH_SEARCH_CANDIDATE: unknown setting search\.candidate "
                                          r"\(did you mean KBSEARCH_SEARCH_CANDIDATES\?\)"):
        Settings.load(config_file=None, env={"KBSEARCH_SEARCH_CANDIDATE": "60"})


def test_secrets_named_by_env_settings_are_not_mistaken_for_settings(tmp_path: Path) -> None:
    cfg = tmp_path / "kbsearch.toml"
    cfg.write_text('[[groups]]\nname = "maint"\nchannels = [{type = "webhook", url_env = "KBSEARCH_PEERS_HOOK"}]\n',
                   encoding="utf-8")
    env = {"KBSEARCH_WEB_SECRET": "x" * 20, "KBSEARCH_PEERS_HOOK": "http://127.0.0.1:9/h",
           "KBSEARCH_SMTP_PASSWORD": "pw", "KBSEARCH_SEARCH_LIMIT": "7"}
    assert Settings.load(config_file=cfg, env=env).search.limit == 7


@pytest.mark.parametrize("name,value,needle", [
    ("KBSEARCH_DEFLECT_TARGET_PRECISION", "-1", "must not be negative"),
    ("KBSEARCH_DEFLECT_TARGET_PRECISION", "1.5", "between 0 and 1"),
    ("KBSEARCH_SEARCH_CANDIDATES", "-5", "must not be negative"),
    ("KBSEARCH_DEFLECT_DENSE_CANDIDATES", "-3", "must not be negative"),
    ("KBSEARCH_SEARCH_MAX_DF_RATIO", "nan", "finite"),
    ("KBSEARCH_DEFLECT_PARALLEL_FIT_PHRASINGS", "-2", "must not be negative"),
])
def test_numbers_out_of_range_are_refused_with_the_setting_named(name: str, value: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as exc:
        Settings.load(env={name: value})
    assert name in str(exc.value)


def test_minus_one_means_never_where_the_setting_says_so() -> None:
    assert Settings.load(env={"KBSEARCH_DEFLECT_PARALLEL_FIT_PHRASINGS": "-1"}).deflect.parallel_fit_phrasings == -1



def test_store_url_from_the_file_without_a_password_the_environment_with_one(tmp_path: Path) -> None:
    """``[store] url`` may name the database; its password comes only from the environment."""
    cfg = tmp_path / "kbsearch.toml"
    cfg.write_text('[store]\nurl = "postgresql://kb@db.internal:5432/kbsearch"\npool_size = 4\n', encoding="utf-8")
    s = Settings.load(config_file=cfg, env={})
    assert (s.store.url, s.store.pool_size, s.peers.store) == ("postgresql://kb@db.internal:5432/kbsearch", 4, "auto")
    s = Settings.load(config_file=cfg, env={"KBSEARCH_DATABASE_URL": "postgresql://kb:pw@db2/kbsearch"})
    assert s.store.url == "postgresql://kb:pw@db2/kbsearch"  # the environment wins over the file
    assert Settings.load(env={"KBSEARCH_STORE_URL": "postgresql://kb@db3/x"}).store.url == "postgresql://kb@db3/x"
    for url in ("postgresql://kb:hunter2@db/kbsearch", "postgresql://db/kbsearch?password=hunter2"):
        cfg.write_text(f'[store]\nurl = "{url}"\n', encoding="utf-8")
        with pytest.raises(ConfigError, match="must not hold a password") as caught:
            Settings.load(config_file=cfg, env={})
        assert "hunter2" not in str(caught.value)
    with pytest.raises(ConfigError, match="name different databases"):
        Settings.load(env={"KBSEARCH_DATABASE_URL": "postgresql://a/x", "KBSEARCH_STORE_URL": "postgresql://b/x"})


def test_peers_store_chooses_between_the_embedded_file_and_the_url(tmp_path: Path) -> None:
    from kbsearch.peers._open import uses_postgresql

    url = {"KBSEARCH_DATABASE_URL": "postgresql://kb@db/kbsearch"}
    assert not uses_postgresql(Settings.load(env={}))  # the default: SQLite, no server
    assert uses_postgresql(Settings.load(env=url))
    assert not uses_postgresql(Settings.load(env={**url, "KBSEARCH_PEERS_STORE": "sqlite"}))
    with pytest.raises(ConfigError, match="store.url"):
        uses_postgresql(Settings.load(env={"KBSEARCH_PEERS_STORE": "postgresql"}))
    with pytest.raises(ConfigError, match="not available"):
        uses_postgresql(Settings.load(env={"KBSEARCH_PEERS_STORE": "mongo"}))
