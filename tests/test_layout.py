"""The house rules of the layout: what production code may import, and who reads the environment."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from settings import STANDIN_PORT_RANGE, STANDIN_PORTS
from tenants.registry import load_registry

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = (
    "booking",
    "clients",
    "dashboard",
    "ingestion",
    "orchestration",
    "tenants",
    "warehouse",
)
TOP_LEVEL = ("definitions.py", "settings.py")
# The demo starts the stand-ins and their traffic: it is the one entry point that knows them.
MAY_IMPORT_SANDBOX = {"orchestration/demo.py"}
# Modules that read the environment: the settings modules and the command-line entry points.
MAY_READ_ENVIRONMENT = {
    "settings.py",
    "tenants/settings.py",
    "booking/config.py",
    "booking/api.py",  # a flag its own entry point sets for the workers it starts
    "orchestration/demo.py",
    "orchestration/pipeline.py",
    "deploy/healthcheck.py",  # the image's HEALTHCHECK command: the ports its role was given
}
# Beyond production, these read the environment only through ``settings`` too.
SUPPORT = ("testing", "sandbox", "benchmarks", "deploy")


def _modules() -> list[Path]:
    files = [ROOT / name for name in TOP_LEVEL]
    for package in PRODUCTION:
        files += sorted((ROOT / package).rglob("*.py"))
    return files


def _imported(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_production_never_imports_the_stand_ins_tests_testing_or_benchmarks() -> None:
    offenders = {}
    for path in _modules():
        name = str(path.relative_to(ROOT))
        forbidden = {"tests", "testing", "benchmarks"} | (
            set() if name in MAY_IMPORT_SANDBOX else {"sandbox"}
        )
        found = _imported(ast.parse(path.read_text(), name)) & forbidden
        if found:
            offenders[name] = sorted(found)
    assert offenders == {}


def test_only_settings_and_entry_points_read_the_environment() -> None:
    readers = set()
    support = [path for package in SUPPORT for path in sorted((ROOT / package).rglob("*.py"))]
    for path in _modules() + support:
        name = str(path.relative_to(ROOT))
        if path.name == "__main__.py" or name in MAY_READ_ENVIRONMENT:
            continue
        for node in ast.walk(ast.parse(path.read_text(), name)):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
                readers.add(name)
    assert readers == set()


def test_benchmarks_and_the_shared_setup_never_import_the_tests() -> None:
    offenders = {}
    for package in ("benchmarks", "testing"):
        for path in sorted((ROOT / package).rglob("*.py")):
            name = str(path.relative_to(ROOT))
            if "tests" in _imported(ast.parse(path.read_text(), name)):
                offenders[name] = "tests"
    assert offenders == {}


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None, url
    return port


def test_the_stand_in_ports_written_outside_python_are_the_settings_ports() -> None:
    """Compose, the Dockerfile and the tenant YAMLs cannot import ``settings.STANDIN_PORTS``:
    their copies must say the same."""
    registry = load_registry()
    url_variables = {t.api.base_url_env: t.id for t in registry.values()}
    url_variables["DUFFEL_BASE_URL"] = "duffel"
    assert set(url_variables.values()) == set(STANDIN_PORTS)
    for tenant in registry.values():
        assert _port(tenant.api.base_url) == STANDIN_PORTS[tenant.id], tenant.id
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    for variable, value in compose["x-tenant-apis"].items():
        default = re.fullmatch(r"\$\{\w+:-(?P<url>[^}]+)\}", value)
        assert default is not None, variable
        assert _port(default["url"]) == STANDIN_PORTS[url_variables[variable]], variable
    assert compose["services"]["sandbox"]["ports"] == [
        f"127.0.0.1:{STANDIN_PORT_RANGE}:{STANDIN_PORT_RANGE}"
    ]
    exposed = re.search(r"^EXPOSE (.+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert exposed is not None
    assert set(STANDIN_PORTS.values()) <= {int(p) for p in exposed[1].split()}
