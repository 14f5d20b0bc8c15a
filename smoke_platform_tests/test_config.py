"""One settings tree: `smoke config` shows every setting with its source, secrets masked,
and the docs' configuration page is generated from the tree."""

import inspect
import re
import subprocess
import sys

import pytest

from smoke_platform.config import MASK, settings_tree, variables
from smoke_platform_tests.conftest import REPO


def test_the_docs_configuration_page_is_generated_from_the_tree():
    """The page holds the marker the docs hook replaces, and what replaces it lists every
    variable of the tree exactly once, with its description."""
    from smoke_platform.config import reference_markdown

    page = (REPO / "docs" / "configuration.md").read_text()
    assert "<!-- settings-reference -->" in page
    table = reference_markdown()
    rows = re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", table, re.M)
    assert sorted(rows) == sorted(variables())
    assert len(rows) == len(set(rows))


def test_values_and_sources_follow_the_environment(monkeypatch):
    monkeypatch.setenv("SMOKE_ROWS", "123")
    monkeypatch.setenv("SMOKE_RATE_LIMIT_PER_S", "7.5")
    rows = {s.variable: s for section in settings_tree().values() for s in section}
    assert (rows["SMOKE_ROWS"].value, rows["SMOKE_ROWS"].source) == (123, "environment")
    assert (rows["SMOKE_RATE_LIMIT_PER_S"].value, rows["SMOKE_RATE_LIMIT_PER_S"].source) == (
        7.5,
        "environment",
    )
    assert (rows["SMOKE_SEED"].value, rows["SMOKE_SEED"].source) == (0, "default")


def test_smoke_config_masks_secrets(monkeypatch):
    env = {
        "SMOKE_API_KEY": "key-that-must-not-print",
        "SMOKE_WEBHOOK_URL": "https://hooks.example/T0/secret-path",
        "SMOKE_KAFKA_SASL_PASSWORD": "scram-password-that-must-not-print",
        "SMOKE_KAFKA_SASL_USERNAME": "worker",
    }
    import os

    done = subprocess.run(
        [sys.executable, "-m", "smoke_platform.cli", "config"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "must-not-print" not in done.stdout and "secret-path" not in done.stdout
    assert re.search(rf"SMOKE_API_KEY\s+= {re.escape(MASK)}\s+\(environment\)", done.stdout)
    shown = rf"SMOKE_KAFKA_SASL_PASSWORD\s+= {re.escape(MASK)}\s+\(environment\)"
    assert re.search(shown, done.stdout), done.stdout
    assert "worker" in done.stdout  # a user name is no secret
    assert "[service]" in done.stdout and "[kafka]" in done.stdout and "[alerts]" in done.stdout


def _settings_classes():
    """Every pydantic-settings class the platform's packages define."""
    import importlib
    import pkgutil

    from pydantic_settings import BaseSettings

    import bentos
    import smoke_platform
    import streaming

    found = {}
    for package in (smoke_platform, streaming, bentos):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if ".defs" in info.name or info.name.endswith(("service", "__main__")):
                continue  # import-time work of frameworks; they define no settings classes
            module = importlib.import_module(info.name)
            for obj in vars(module).values():
                if (
                    isinstance(obj, type)
                    and issubclass(obj, BaseSettings)
                    and obj is not BaseSettings
                ):
                    found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def test_no_setting_is_declared_twice_and_every_one_says_what_it_is_for():
    """Each SMOKE_* variable is a field of exactly one class (StreamSettings is a union
    of sections, declaring nothing of its own), every section is in the tree, and every
    setting has a description (the generated configuration page prints it)."""
    from smoke_platform.core.settings import StreamSettings, sections, variable

    declared: dict[str, list[str]] = {}
    for name, cls in _settings_classes().items():
        own = inspect.get_annotations(cls)
        for field in own:
            if field == "model_config":
                continue
            declared.setdefault(variable(cls, field), []).append(name)
    twice = {var: where for var, where in declared.items() if len(where) > 1}
    assert not twice
    assert not {f for f in inspect.get_annotations(StreamSettings) if f != "model_config"}
    in_tree = {variable(cls, f) for cls in sections().values() for f in cls.model_fields}
    smoke = {v for v in declared if v.startswith("SMOKE_")}
    assert smoke == in_tree, smoke ^ in_tree
    missing = [
        variable(cls, f)
        for cls in sections().values()
        for f, info in cls.model_fields.items()
        if not (info.description or "").strip()
    ]
    assert not missing, f"settings without a description: {missing}"


def test_the_code_names_no_smoke_variable_the_tree_does_not_know():
    """`SMOKE_X` written anywhere in the code (a child's environment, a message) is a
    variable of the tree: none is read or passed on that the tree does not declare."""
    from smoke_platform.core.settings import sections, variable

    known = {variable(cls, f) for cls in sections().values() for f in cls.model_fields}
    unknown = {}
    for folder in ("smoke_platform", "streaming", "bentos"):
        for path in (REPO / folder).rglob("*.py"):
            for name in re.findall(r"\bSMOKE_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()):
                if name not in known:
                    unknown.setdefault(name, str(path.relative_to(REPO)))
    assert not unknown, unknown


def test_a_childs_environment_gives_it_the_same_settings():
    from pydantic import SecretStr

    from smoke_platform.core.settings import StreamSettings, environment

    settings = StreamSettings(topic="t-1", api_key=SecretStr("k1,k2"), batch_size=7)
    env = environment(settings)
    assert env["SMOKE_API_KEY"] == "k1,k2" and "SMOKE_RATE_LIMIT_BURST" not in env
    import os

    saved = dict(os.environ)
    try:
        os.environ.update(env)
        again = StreamSettings()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert again == settings


def test_an_incomplete_kafka_connection_is_named_and_its_password_never_printed():
    import os

    from smoke_platform.errors import EXIT_CONFIG

    env = {
        "SMOKE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "SMOKE_KAFKA_SASL_PASSWORD": "pw-that-must-not-print",
        "SMOKE_KAFKA_SSL_CA_FILE": "no/such/ca.pem",
    }
    done = subprocess.run(
        [sys.executable, "-m", "smoke_platform.cli", "produce", "--count", "1"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout + done.stderr
    assert done.returncode == EXIT_CONFIG, out  # a wrong setting: never restarted
    assert "SMOKE_KAFKA_SASL_USERNAME" in out and "must-not-print" not in out, out


def test_a_certificate_needs_its_key_and_every_pem_file_must_exist(tmp_path):
    import pydantic

    from smoke_platform.core.settings import KafkaSettings, ServiceSettings

    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(pydantic.ValidationError, match="SMOKE_SERVICE_SSL_KEY_FILE"):
        ServiceSettings(service_ssl_cert_file=str(cert))
    with pytest.raises(pydantic.ValidationError, match=r"SMOKE_KAFKA_SSL_CA_FILE='nope\.pem'"):
        KafkaSettings(kafka_ssl_ca_file="nope.pem")
    tls = ServiceSettings(service_ssl_cert_file=str(cert), service_ssl_key_file=str(cert))
    assert tls.ssl() == {"enabled": True, "certfile": str(cert), "keyfile": str(cert)}
    assert ServiceSettings(service_ca_file=str(cert)).verify() == str(cert)
    assert ServiceSettings().verify() is True
