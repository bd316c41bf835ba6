"""The container files: Dockerfile, .dockerignore, docker-compose.yml, config/prometheus.yml,
and the Grafana dashboard with its provisioning files.

They are checked as files, against each other and against the project (pyproject.toml, the
settings' defaults, the metrics the proxy serves). No Docker engine is needed, and none is
on this project's machines: the image is never built here. ``docker-compose config``
validates the compose file where docker-compose or ``docker compose`` exists (it needs no
engine); elsewhere that one test is skipped and says why.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from prometheus_client import generate_latest

from daxproxy.core.config import Settings
from daxproxy.service.metrics import Metrics
from daxproxy.workers.supervisor import WorkerPool
from daxproxy.workers.totals import MetricTotals

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "config" / "grafana" / "dashboards" / "daxproxy.json"
DATASOURCES = ROOT / "config" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = ROOT / "config" / "grafana" / "provisioning" / "dashboards" / "daxproxy.yml"
PROMETHEUS = ROOT / "config" / "prometheus.yml"

# The metrics the dashboard reads, as the proxy's GET /metrics names them: counters with
# their _total, histograms by their base name (the dashboard reads their _bucket, _sum and
# _count series). Check this list against the real /metrics when the metrics change.
HISTOGRAMS = frozenset(
    {"daxproxy_request_duration_seconds", "daxproxy_upstream_request_duration_seconds"}
)
DASHBOARD_METRICS = HISTOGRAMS | {
    "daxproxy_requests_total",
    "daxproxy_request_errors_total",
    "daxproxy_throttled_requests_total",
    "daxproxy_upstream_failures_total",
    "daxproxy_item_cache_hits_total",
    "daxproxy_item_cache_misses_total",
    "daxproxy_query_cache_hits_total",
    "daxproxy_query_cache_misses_total",
    "daxproxy_scan_cache_hits_total",
    "daxproxy_scan_cache_misses_total",
    "daxproxy_cache_bytes",
    "daxproxy_cache_max_bytes",
    "daxproxy_cache_entries",
    "daxproxy_cache_memory_utilization_ratio",
    "daxproxy_cache_evictions_total",
    "daxproxy_cache_evicted_bytes_total",
    "daxproxy_requests_in_flight",
    "daxproxy_client_connections",
    "daxproxy_build_info",
    "daxproxy_workers",
    "daxproxy_worker_restarts_total",
}
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
METRIC_TOKEN = re.compile(r"daxproxy_[a-z_]+")
SERVICES = {"dynamodb-local", "daxproxy", "prometheus", "grafana"}


# --- reading the files -----------------------------------------------------------------------


@cache
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


@cache
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def panels() -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])


def expressions() -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and template variables."""
    found = [t["expr"] for p in panels() for t in p.get("targets", [])]
    for variable in dashboard()["templating"]["list"]:
        if variable.get("type") == "query":
            query = variable["query"]
            found.append(query if isinstance(query, str) else query["query"])
    return found


def metric_name(token: str) -> str:
    """A series name as the exposition names its family: a histogram's _bucket, _sum and
    _count are the histogram's."""
    for suffix in HISTOGRAM_SERIES:
        base = token.removesuffix(suffix)
        if base != token and base in HISTOGRAMS:
            return base
    return token


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def container_ports(name: str) -> dict[int, int]:
    """A service's published ports: container port -> host port."""
    ports = {}
    for spec in service(name).get("ports", []):
        *_, host, inside = str(spec).split(":")
        ports[int(inside.split("/")[0])] = int(host)
    return ports


def mounts(name: str) -> dict[str, Path]:
    """A service's bind mounts: path in the container -> path in the repository."""
    found = {}
    for spec in service(name).get("volumes", []):
        source, target, *_ = spec.split(":")
        found[target] = (ROOT / source).resolve()
    return found


# --- the dashboard ---------------------------------------------------------------------------


def test_dashboard_is_json_with_panels_on_the_grid() -> None:
    board = dashboard()
    assert board["uid"] and board["title"]
    assert board.get("id") is None, "a provisioned dashboard has no database id"
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels():
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]


def test_dashboard_reads_only_the_metrics_the_proxy_serves() -> None:
    used = set()
    for expr in expressions():
        names = {metric_name(token) for token in METRIC_TOKEN.findall(expr)}
        unknown = names - DASHBOARD_METRICS
        assert not unknown, f"unknown metrics in {expr!r}: {unknown}"
        used |= names
    assert used == DASHBOARD_METRICS, f"metrics not on the dashboard: {DASHBOARD_METRICS - used}"


def test_the_proxy_serves_every_metric_of_the_dashboard() -> None:
    """The list above against the real exposition (GET /metrics renders this registry,
    and with workers the supervisor adds its own series)."""
    text = generate_latest(Metrics().registry).decode()
    supervisor = WorkerPool(Settings(), None, 2, "/nonexistent")
    text += MetricTotals().exposition(supervisor.own_metrics()).decode()
    kinds = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    assert set(kinds) >= DASHBOARD_METRICS, DASHBOARD_METRICS - set(kinds)
    assert {name for name, kind in kinds.items() if kind == "histogram"} >= HISTOGRAMS


def test_counters_are_read_as_rates_and_gauges_as_they_are() -> None:
    rated = re.compile(r"rate\((daxproxy_[a-z_]+)\{[^}]*\}\[\$__rate_interval\]\)")
    for expr in expressions():
        if expr.startswith("label_values("):
            continue
        tokens = METRIC_TOKEN.findall(expr)
        counters = [t for t in tokens if t.endswith(("_total", *HISTOGRAM_SERIES))]
        assert sorted(counters) == sorted(rated.findall(expr)), expr
        gauges = set(tokens) - set(counters)
        assert not gauges & set(rated.findall(expr)), expr


def test_latency_percentiles_by_cache_outcome_come_from_the_histograms() -> None:
    quantile = re.compile(r"histogram_quantile\(([0-9.]+), sum by \(([^)]*)\) \(rate\((\w+)\{")
    seen: dict[str, set[str]] = {}
    for expr in expressions():
        for q, by, series in quantile.findall(expr):
            assert "le" in [label.strip() for label in by.split(",")], expr
            assert series.endswith("_bucket") and metric_name(series) in HISTOGRAMS, expr
            outcome = re.search(r'cache="(\w+)"', expr)
            if series == "daxproxy_request_duration_seconds_bucket" and outcome:
                seen.setdefault(outcome.group(1), set()).add(q)
    assert seen == {outcome: {"0.5", "0.9", "0.99"} for outcome in ("hit", "miss", "bypass")}
    assert any("histogram_quantile" in e and "daxproxy_upstream" in e for e in expressions())


def test_every_panel_uses_the_provisioned_datasource() -> None:
    (source,) = load_yaml(DATASOURCES)["datasources"]
    for panel in panels():
        if panel["type"] == "row":
            continue
        for ref in [panel["datasource"], *(t["datasource"] for t in panel["targets"])]:
            assert ref == {"type": "prometheus", "uid": source["uid"]}, panel["title"]
    for variable in dashboard()["templating"]["list"]:
        assert variable["datasource"]["uid"] == source["uid"], variable["name"]


# --- Grafana's provisioning --------------------------------------------------------------------


def test_the_datasource_is_the_compose_prometheus() -> None:
    (source,) = load_yaml(DATASOURCES)["datasources"]
    assert source["type"] == "prometheus" and source["uid"]
    match = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", source["url"])
    assert match, source["url"]
    assert match.group(1) == "prometheus" in compose()["services"]
    assert int(match.group(2)) in container_ports("prometheus")
    # $__rate_interval is four of these: Prometheus' scrape interval for daxproxy.
    assert source["jsonData"]["timeInterval"] == scrape_job()["scrape_interval"]


def test_grafana_is_provisioned_with_the_files_and_the_dashboard() -> None:
    grafana = mounts("grafana")
    assert grafana["/etc/grafana/provisioning/datasources"] == DATASOURCES.parent
    assert grafana["/etc/grafana/provisioning/dashboards"] == PROVIDERS.parent
    (provider,) = load_yaml(PROVIDERS)["providers"]
    assert provider["type"] == "file"
    assert grafana[provider["options"]["path"]] == DASHBOARD.parent
    env = service("grafana")["environment"]
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


# --- Prometheus ------------------------------------------------------------------------------


def scrape_job() -> dict[str, Any]:
    (job,) = [j for j in load_yaml(PROMETHEUS)["scrape_configs"] if j["job_name"] == "daxproxy"]
    return job


def test_prometheus_scrapes_the_compose_proxy_every_5s() -> None:
    job = scrape_job()
    (static,) = job["static_configs"]
    assert static["targets"] == [f"daxproxy:{Settings().port}"]
    assert Settings().port in container_ports("daxproxy")
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job["scrape_interval"] == "5s"
    assert mounts("prometheus")["/etc/prometheus/prometheus.yml"] == PROMETHEUS


# --- docker-compose.yml ----------------------------------------------------------------------


def test_compose_runs_the_proxy_in_front_of_dynamodb_local() -> None:
    assert set(compose()["services"]) == SERVICES
    proxy, local = service("daxproxy"), service("dynamodb-local")
    assert proxy["build"]["context"] == "."
    command = proxy["command"]
    assert command[command.index("--upstream") + 1] == "http://dynamodb-local:8000"
    assert proxy["depends_on"]["dynamodb-local"]["condition"] == "service_healthy"
    assert local["image"].startswith("amazon/dynamodb-local:")
    assert local["command"] == ["-jar", "DynamoDBLocal.jar", "-sharedDb", "-inMemory"]
    assert local["healthcheck"]["test"]
    env = proxy["environment"]
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        # DynamoDB Local 3.x refuses an access key that is not alphanumeric.
        assert env[name].isalnum(), name


def test_compose_publishes_the_proxy_prometheus_and_grafana() -> None:
    assert container_ports("daxproxy") == {8111: 8111}
    assert container_ports("prometheus") == {9090: 9090}
    assert container_ports("grafana") == {3000: 3000}
    for name in SERVICES:
        for inside, source in mounts(name).items():
            assert source.exists(), f"{name}: {source} (mounted on {inside}) does not exist"


def compose_command() -> list[str] | None:
    """docker-compose (v1, Debian's package), else the docker CLI's compose plugin."""
    if found := shutil.which("docker-compose"):
        return [found]
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, timeout=30, check=False
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    return None


def test_compose_file_validates() -> None:
    command = compose_command()
    if command is None:
        pytest.skip(
            "neither docker-compose nor `docker compose` is installed, so docker-compose.yml "
            "was not validated (Debian: apt-get install docker-compose; no engine needed)"
        )
    done = subprocess.run(
        [*command, "--file", str(ROOT / "docker-compose.yml"), "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert set(yaml.safe_load(done.stdout)["services"]) == SERVICES


# --- the Dockerfile ----------------------------------------------------------------------------


@cache
def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, (KEYWORD, arguments), continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("#") or (not line.strip() and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).strip().partition(" ")
        instructions.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, args in dockerfile():
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, args))
    return found


def final(keyword: str) -> list[str]:
    return [args for k, args in stages()[-1] if k == keyword]


def build_args() -> dict[str, str]:
    """ARG defaults, the ones before the first FROM included."""
    found = {}
    for keyword, args in dockerfile():
        if keyword == "ARG":
            name, _, default = args.partition("=")
            found[name] = default.strip('"')
    return found


def healthcheck_command() -> list[str]:
    (check,) = final("HEALTHCHECK")
    match = re.fullmatch(r"((?:--[a-z-]+=\S+ )*)CMD (\[.*\])", check)
    assert match, f"HEALTHCHECK should be CMD in exec form: {check}"
    return json.loads(match.group(2))


def test_image_is_a_slim_python_that_pyproject_allows() -> None:
    requires = SpecifierSet(pyproject()["project"]["requires-python"])
    for keyword, args in dockerfile():
        if keyword != "FROM":
            continue
        image = next(word for word in args.split() if not word.startswith("--"))
        image = re.sub(r"\$\{(\w+)\}", lambda m: build_args()[m.group(1)], image)
        match = re.fullmatch(r"python:(\d+\.\d+)(?:\.\d+)?-slim(?:-\w+)?", image)
        assert match, f"not a slim Python base image: {image}"
        assert requires.contains(match.group(1) + ".0"), (image, str(requires))
    assert len(stages()) >= 2, "a builder stage and a runtime stage"
    assert any(k == "COPY" and "--from=" in a for k, a in stages()[-1]), "the venv from the builder"


def test_image_installs_the_project_as_pyproject_describes_it() -> None:
    project, hatch = pyproject()["project"], pyproject()["tool"]["hatch"]
    copied = [
        source
        for keyword, args in dockerfile()
        if keyword == "COPY" and "--from=" not in args
        for source in args.split()[:-1]
    ]
    # What hatchling reads for the metadata (the dependency layer), then the packages.
    needed = {"pyproject.toml", project["readme"], hatch["version"]["path"]}
    needed |= set(hatch["build"]["targets"]["wheel"]["packages"])
    assert needed <= set(copied), needed - set(copied)
    extras = set(project["optional-dependencies"])
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    named = {e for group in re.findall(r"EXTRAS=\"?([\w,-]*)", text) for e in group.split(",")}
    named |= set(service("daxproxy")["build"]["args"]["EXTRAS"].split(","))
    assert named - {""} <= extras, named - {""} - extras
    assert "embedded" in named, "the build argument for moto's server is documented"
    (entrypoint,) = final("ENTRYPOINT")
    assert json.loads(entrypoint)[0] in project["scripts"]


def test_image_runs_unprivileged_on_every_interface_of_port_8111() -> None:
    (user,) = final("USER")
    assert user.split(":")[0] not in {"root", "0"}
    assert final("EXPOSE") == [str(Settings().port)]
    assert final("STOPSIGNAL") == ["SIGTERM"]
    env = " ".join(final("ENV"))
    command = [arg for line in final("ENTRYPOINT") + final("CMD") for arg in json.loads(line)]
    host_in_command = "--host" in command and command[command.index("--host") + 1] == "0.0.0.0"
    assert re.search(r"\bDAXPROXY_HOST=0\.0\.0\.0\b", env) or host_in_command
    # One worker per CPU the container may use, in the image and in the compose stack.
    assert re.search(r"\bDAXPROXY_WORKERS=auto\b", env)
    assert service("daxproxy")["environment"]["DAXPROXY_WORKERS"] == "auto"
    check = healthcheck_command()
    assert "/healthz" in " ".join(check)
    assert check[0] == "python", "the slim image has neither curl nor wget"


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Unhealthy(_Health):
    status = 503


def run_healthcheck(port: int) -> int:
    _python, *args = healthcheck_command()
    env = {**os.environ, "DAXPROXY_PORT": str(port), "http_proxy": "http://127.0.0.1:9"}
    env["HTTP_PROXY"] = env["http_proxy"]
    done = subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, timeout=30, check=False
    )
    return done.returncode


@pytest.mark.parametrize(("handler", "healthy"), [(_Health, True), (_Unhealthy, False)])
def test_healthcheck_command_asks_healthz(handler: type[_Health], healthy: bool) -> None:
    """The HEALTHCHECK's Python one-liner, run for real against a stand-in: it passes on a
    200 from /healthz (an HTTP proxy in the environment notwithstanding), fails otherwise."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        assert (run_healthcheck(server.server_address[1]) == 0) is healthy
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert run_healthcheck(server.server_address[1]) != 0, "nothing listens any more"


# --- .dockerignore -----------------------------------------------------------------------------


def _pattern(text: str) -> re.Pattern[str]:
    """One .dockerignore pattern (Go's filepath.Match, plus ``**``) as a regular expression."""
    out, i = "", 0
    while i < len(text):
        if text.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif text.startswith("**", i):
            out, i = out + ".*", i + 2
        elif text[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif text[i] == "?":
            out, i = out + "[^/]", i + 1
        elif text[i] == "[":
            end = text.index("]", i)
            members = text[i + 1 : end]
            members = "^" + members[1:] if members.startswith("!") else members
            out, i = out + "[" + members + "]", end + 1
        else:
            out, i = out + re.escape(text[i]), i + 1
    return re.compile(out)


@cache
def ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for text in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = text.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        rules.append((keep, _pattern(line.removeprefix("!").strip("/"))))
    return rules


def in_context(path: str) -> bool:
    """Whether the build context holds the file: the last rule matching it, or a folder it is
    in, decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    kept = True
    for keep, rule in ignore_rules():
        if any(rule.fullmatch(prefix) for prefix in prefixes):
            kept = keep
    return kept


def test_build_context_is_what_the_dockerfile_copies() -> None:
    for keyword, args in dockerfile():
        if keyword != "COPY" or "--from=" in args:
            continue
        for source in args.split()[:-1]:
            path = ROOT / source
            assert path.exists(), source
            files = [path] if path.is_file() else list(path.rglob("*.py"))
            for file in files:
                if "__pycache__" not in file.parts:
                    assert in_context(file.relative_to(ROOT).as_posix()), file
    for path in (
        ".git/HEAD",
        ".venv/bin/python",
        ".venv-awscli/bin/python",
        "tests/conftest.py",
        "tests/js/node_modules/x.js",
        "bench/results/run.json",
        "daxproxy/__pycache__/cli.cpython-311.pyc",
        ".env",
    ):
        assert not in_context(path), path
