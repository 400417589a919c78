"""Settings: one object from INOPSIO_* variables and an optional TOML file; bad values name their variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inopsio.settings import QuotaLimits, Settings, SettingsError, load_settings


def test_defaults_apply_when_nothing_is_set() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert settings.port == 8000
    assert settings.plugins is None
    assert settings.quotas == QuotaLimits()


def test_port_is_read_from_the_environment_as_an_integer() -> None:
    assert load_settings({"INOPSIO_PORT": "9123"}).port == 9123


def test_variables_without_the_prefix_are_ignored() -> None:
    assert load_settings({"PORT": "1", "HOME": "/root", "INOPSIOPORT": "2"}).port == 8000


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("sample", ["sample"]),
        ("sample,crm", ["sample", "crm"]),
        (" sample , crm ,", ["sample", "crm"]),
        ("none", []),
        ("NONE", []),
        ("", None),
        ("all", None),
        ("*", None),
    ],
)
def test_plugins_is_a_comma_list_none_for_no_plugin_and_empty_for_every_installed_one(
    raw: str, expected: list[str] | None
) -> None:
    assert load_settings({"INOPSIO_PLUGINS": raw}).plugins == expected


def test_nested_quota_is_set_with_a_double_underscore() -> None:
    settings = load_settings({"INOPSIO_QUOTAS__USERS": "50", "INOPSIO_QUOTAS__UPLOAD_BYTES": "1024"})
    assert settings.quotas.users == 50
    assert settings.quotas.upload_bytes == 1024
    assert settings.quotas.api_calls_per_minute == QuotaLimits().api_calls_per_minute


def test_empty_quota_means_unlimited() -> None:
    assert load_settings({"INOPSIO_QUOTAS__USERS": ""}).quotas.users is None


def test_booleans_and_literals_are_parsed_from_strings() -> None:
    settings = load_settings(
        {"INOPSIO_TRACE_HOOKS": "true", "INOPSIO_ENVIRONMENT": "test", "INOPSIO_LOG_LEVEL": "DEBUG"}
    )
    assert settings.trace_hooks is True
    assert settings.environment == "test"
    assert settings.log_level == "DEBUG"


def test_data_dir_expands_the_home_directory() -> None:
    settings = load_settings({"INOPSIO_DATA_DIR": "~/inopsio-data"})
    assert settings.data_dir == Path("~/inopsio-data").expanduser()


def test_toml_file_named_by_inopsio_config_is_read(tmp_path: Path) -> None:
    config = tmp_path / "inopsio.toml"
    config.write_text('port = 9001\nbase_domain = "example.com"\n\n[quotas]\nusers = 7\nstorage_bytes = 100\n')
    settings = load_settings({"INOPSIO_CONFIG": str(config)})
    assert settings.port == 9001
    assert settings.base_domain == "example.com"
    assert settings.quotas.users == 7
    assert settings.quotas.storage_bytes == 100


def test_environment_overrides_the_toml_file_key_by_key(tmp_path: Path) -> None:
    config = tmp_path / "inopsio.toml"
    config.write_text('port = 9001\nbase_domain = "example.com"\n\n[quotas]\nusers = 7\nstorage_bytes = 100\n')
    settings = load_settings({"INOPSIO_CONFIG": str(config), "INOPSIO_PORT": "9002", "INOPSIO_QUOTAS__USERS": "8"})
    assert settings.port == 9002
    assert settings.quotas.users == 8
    # What the environment does not mention still comes from the file.
    assert settings.base_domain == "example.com"
    assert settings.quotas.storage_bytes == 100


def test_bad_value_in_the_toml_file_names_the_setting_and_the_file(tmp_path: Path) -> None:
    config = tmp_path / "inopsio.toml"
    config.write_text('port = "eighty"\n')
    with pytest.raises(SettingsError) as excinfo:
        load_settings({"INOPSIO_CONFIG": str(config)})
    assert "INOPSIO_PORT" in str(excinfo.value)
    assert str(config) in str(excinfo.value)


def test_unreadable_toml_file_is_refused_naming_inopsio_config(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="INOPSIO_CONFIG"):
        load_settings({"INOPSIO_CONFIG": str(tmp_path / "missing.toml")})


def test_invalid_toml_is_refused_naming_inopsio_config(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("port = = 1\n")
    with pytest.raises(SettingsError, match=r"INOPSIO_CONFIG.*not valid TOML"):
        load_settings({"INOPSIO_CONFIG": str(config)})


@pytest.mark.parametrize(
    ("environ", "variable", "problem"),
    [
        ({"INOPSIO_PORT": "abc"}, "INOPSIO_PORT", "int"),
        ({"INOPSIO_PORT": "70000"}, "INOPSIO_PORT", "between 1 and 65535"),
        ({"INOPSIO_PORT": "0"}, "INOPSIO_PORT", "between 1 and 65535"),
        ({"INOPSIO_PORT": ""}, "INOPSIO_PORT", "int"),
        ({"INOPSIO_FOO": "1"}, "INOPSIO_FOO", "unknown setting"),
        ({"INOPSIO_QUOTAS__NOPE": "1"}, "INOPSIO_QUOTAS__NOPE", "unknown quota"),
        ({"INOPSIO_QUOTAS__USERS__MORE": "1"}, "INOPSIO_QUOTAS__USERS__MORE", "unknown setting"),
        ({"INOPSIO_QUOTAS__USERS": "many"}, "INOPSIO_QUOTAS__USERS", "int"),
        ({"INOPSIO_QUOTAS__USERS": "-1"}, "INOPSIO_QUOTAS__USERS", ">= 0"),
        ({"INOPSIO_DEFAULT_CURRENCY": "euro"}, "INOPSIO_DEFAULT_CURRENCY", "ISO 4217"),
        ({"INOPSIO_DEFAULT_CURRENCY": "eur"}, "INOPSIO_DEFAULT_CURRENCY", "ISO 4217"),
        ({"INOPSIO_ENVIRONMENT": "prod"}, "INOPSIO_ENVIRONMENT", "prod"),
        ({"INOPSIO_WEB_WORKERS": "0"}, "INOPSIO_WEB_WORKERS", "at least 1"),
        ({"INOPSIO_DATABASE_URL": "mysql://db/x"}, "INOPSIO_DATABASE_URL", "postgresql://"),
        ({"INOPSIO_REDIS_URL": "http://cache"}, "INOPSIO_REDIS_URL", "redis://"),
        ({"INOPSIO_DATABASE_APP_ROLE": "App-Role"}, "INOPSIO_DATABASE_APP_ROLE", "identifier"),
    ],
)
def test_bad_value_stops_with_the_variable_name_and_the_problem(
    environ: dict[str, str], variable: str, problem: str
) -> None:
    with pytest.raises(SettingsError) as excinfo:
        load_settings(environ)
    message = str(excinfo.value)
    assert message.startswith(variable), message
    assert problem in message


@given(st.integers(min_value=-(2**31), max_value=2**31))
def test_any_integer_port_is_accepted_exactly_when_it_is_a_tcp_port(port: int) -> None:
    if 1 <= port <= 65535:
        assert load_settings({"INOPSIO_PORT": str(port)}).port == port
    else:
        with pytest.raises(SettingsError, match=r"^INOPSIO_PORT \(environment\): port must be between 1 and 65535"):
            load_settings({"INOPSIO_PORT": str(port)})


@given(
    st.sampled_from(sorted(QuotaLimits.__struct_fields__)),
    st.one_of(st.none(), st.integers(min_value=-(10**12), max_value=10**12)),
)
def test_any_quota_value_is_a_limit_when_non_negative_unlimited_when_empty_and_refused_when_negative(
    quota: str, value: int | None
) -> None:
    variable = f"INOPSIO_QUOTAS__{quota.upper()}"
    raw = "" if value is None else str(value)
    if value is not None and value < 0:
        with pytest.raises(SettingsError, match=rf"^{variable} "):
            load_settings({variable: raw})
    else:
        assert getattr(load_settings({variable: raw}).quotas, quota) == value


_plugin_name = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True).filter(lambda n: n not in ("none", "all"))


@given(st.lists(_plugin_name, min_size=1, max_size=6))
def test_any_comma_list_of_plugin_names_is_read_in_order(names: list[str]) -> None:
    assert load_settings({"INOPSIO_PLUGINS": " , ".join(names)}).plugins == names


def test_keyword_overrides_win_over_the_environment() -> None:
    assert load_settings({"INOPSIO_PORT": "9000"}, port=9100).port == 9100
