import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import Env
from tests.settings_env import PRODUCTION_ENV, run_with_settings


def test_typed_values_are_parsed():
    env = Env({"FLAG": "yes", "COUNT": "7", "RATIO": "0.5", "HOSTS": "a, b,,c", "LATENCY": "100-500"})

    assert env.bool("FLAG", default=False) is True
    assert env.int("COUNT", 1) == 7
    assert env.float("RATIO", 0.0, maximum=1.0) == 0.5
    assert env.list("HOSTS", default=[]) == ["a", "b", "c"]
    assert env.millisecond_range("LATENCY", default="0") == (100, 500)


def test_defaults_apply_to_missing_and_blank_values():
    env = Env({"BLANK": "  "})

    assert env.int("BLANK", 3) == 3
    assert env.str("MISSING", default="x") == "x"
    assert env.millisecond_range("MISSING", default="250") == (250, 250)


@pytest.mark.parametrize(
    ("read", "message"),
    [
        (lambda env: env.bool("V", default=False), "V must be a boolean"),
        (lambda env: env.int("V", 1), "V must be an integer"),
        (lambda env: env.float("V", 0.0), "V must be a number"),
        (lambda env: env.millisecond_range("V", default="0"), "V must be N or LOW-HIGH"),
        (lambda env: env.choice("V", "a", {"a", "b"}), "V must be one of"),
    ],
)
def test_bad_values_fail_with_a_message_naming_the_variable(read, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        read(Env({"V": "nonsense"}))


def test_out_of_range_values_are_refused():
    with pytest.raises(ImproperlyConfigured, match=r"between 0\.0 and 1\.0"):
        Env({"V": "2"}).float("V", 0.0, maximum=1.0)
    for not_finite in ("nan", "inf", "-inf", "NaN"):  # float() reads them; no bound comparison refuses nan
        with pytest.raises(ImproperlyConfigured, match="V must be a finite number"):
            Env({"V": not_finite}).float("V", 0.0, maximum=1.0)
    with pytest.raises(ImproperlyConfigured, match="LOW must not exceed HIGH"):
        Env({"V": "500-100"}).millisecond_range("V", default="0")


def _check_production(extra_env):
    return run_with_settings("config.settings.production", {**PRODUCTION_ENV, **extra_env})


def test_production_refuses_an_insecure_secret_key():
    result = _check_production({"DJANGO_SECRET_KEY": "", "ALLOWED_HOSTS": "api.example.com"})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_production_starts_with_a_real_secret_and_hosts():
    result = _check_production({"DJANGO_SECRET_KEY": "k" * 10 + "abcdefghij" * 5, "ALLOWED_HOSTS": "api.example.com"})
    assert result.returncode == 0, result.stderr


def test_a_bad_setting_stops_start_up_with_its_name():
    result = _check_production({"DJANGO_SECRET_KEY": "x" * 60 + "abcdef", "ALLOWED_HOSTS": "h", "MAX_ATTEMPTS": "lots"})
    assert result.returncode != 0
    assert "MAX_ATTEMPTS must be an integer" in result.stderr


def test_a_provider_that_cannot_be_imported_stops_start_up():
    result = _check_production(
        {"DJANGO_SECRET_KEY": "x" * 60 + "abcdef", "ALLOWED_HOSTS": "h", "SMS_PROVIDER": "providers.nope.Missing"}
    )
    assert result.returncode != 0
    assert "Provider 'providers.nope.Missing' cannot be imported" in result.stderr


def test_a_lease_no_longer_than_the_provider_timeout_stops_start_up():
    result = _check_production(
        {
            "DJANGO_SECRET_KEY": "x" * 60 + "abcdef",
            "ALLOWED_HOSTS": "h",
            "PROVIDER_TIMEOUT_SECONDS": "10",
            "OUTBOX_LEASE_SECONDS": "10",
        }
    )
    assert result.returncode != 0
    assert "OUTBOX_LEASE_SECONDS (10) must be longer than PROVIDER_TIMEOUT_SECONDS (10)" in result.stderr


def test_a_mock_memory_wait_that_could_outlast_a_sends_lease_stops_start_up():
    env = {"DJANGO_SECRET_KEY": "x" * 60 + "abcdef", "ALLOWED_HOSTS": "h", "PROVIDER_TIMEOUT_SECONDS": "4"}
    assert _check_production({**env, "MOCK_PROVIDER_REDIS_TIMEOUT_SECONDS": "1"}).returncode == 0

    result = _check_production({**env, "MOCK_PROVIDER_REDIS_TIMEOUT_SECONDS": "1.5"})

    assert result.returncode != 0
    assert "MOCK_PROVIDER_REDIS_TIMEOUT_SECONDS (1.5) must be at most a quarter of PROVIDER_TIMEOUT_SECONDS (4)" in (
        result.stderr
    )


def test_production_settings_pass_the_deployment_checklist():
    result = run_with_settings(
        "config.settings.production", PRODUCTION_ENV, "manage.py", "check", "--deploy", "--fail-level", "WARNING"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"DJANGO_DEBUG": "true"}, "DJANGO_DEBUG must be off in production"),
        ({"REDIS_URL": ""}, "REDIS_URL must be set in production"),
    ],
)
def test_production_refuses_debug_and_per_process_rate_limits(extra, message):
    result = _check_production({"DJANGO_SECRET_KEY": "x" * 60 + "abcdef", "ALLOWED_HOSTS": "h", **extra})

    assert result.returncode != 0
    assert message in result.stderr


def test_production_accepts_per_process_rate_limits_when_told_so():
    result = _check_production(
        {
            "DJANGO_SECRET_KEY": "x" * 60 + "abcdef",
            "ALLOWED_HOSTS": "h",
            "REDIS_URL": "",
            "RATE_LIMIT_ALLOW_LOCAL_MEMORY": "true",
        }
    )

    assert result.returncode == 0, result.stderr
