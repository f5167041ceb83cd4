"""The one secrets resolver (both engines and the runtime) and the masking rule it feeds."""

from __future__ import annotations

import pytest

from odibi_dagster.engines.secrets import Redactor, SecretNotFoundError, SecretResolver, is_secret_ref


def test_lookup_order_store_then_env_then_upper_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODIBI_T_PW", "from-env")
    monkeypatch.setenv("odibi_t_lower", "lower-env")
    assert SecretResolver({"ODIBI_T_PW": "from-store"}).get("ODIBI_T_PW") == "from-store"
    assert SecretResolver().get("ODIBI_T_PW") == "from-env"
    assert SecretResolver().get("odibi_t_pw") == "from-env"  # ODIBI's get_secret("db_pass") -> $DB_PASS
    assert SecretResolver().get("odibi_t_lower") == "lower-env"

    def strict(name: str) -> str:
        raise KeyError(name)  # a store that raises for unknown names falls back to the env

    assert SecretResolver(strict).get("ODIBI_T_PW") == "from-env"


def test_resolve_at_any_depth_and_name_the_param(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODIBI_T_TOKEN", "tok-12345")
    resolver = SecretResolver()
    params = {"headers": {"Authorization": {"secret": "ODIBI_T_TOKEN"}}, "ids": [1, {"secret": "ODIBI_T_TOKEN"}]}
    assert resolver.resolve(params) == {"headers": {"Authorization": "tok-12345"}, "ids": [1, "tok-12345"]}
    assert is_secret_ref({"secret": "X"}) and not is_secret_ref({"secret": "X", "other": 1})
    with pytest.raises(SecretNotFoundError) as err:
        resolver.resolve({"password": {"secret": "ODIBI_T_MISSING"}}, "connection 'db'")
    assert (err.value.key, err.value.where) == ("ODIBI_T_MISSING", "connection 'db'.password")
    assert isinstance(err.value, KeyError) and "ODIBI_T_MISSING" in str(err.value)


def test_values_handed_out_and_credential_params_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODIBI_T_PW", "hunter2-pw")
    redactor = Redactor()
    resolver = SecretResolver(redactor=redactor)
    out = resolver.resolve_params({"user": "ann", "password": "plain-pw-1", "key": {"secret": "ODIBI_T_PW"}})
    assert out == {"user": "ann", "password": "plain-pw-1", "key": "hunter2-pw"}
    text = "failed with hunter2-pw and plain-pw-1 at jdbc:postgresql://h/db?password=url-pw"
    assert resolver.redact(text) == "failed with *** and *** at jdbc:postgresql://h/db?password=***"
    assert redactor.redact_text("hunter2-pw") == "***"  # the caller's redactor learnt them too
