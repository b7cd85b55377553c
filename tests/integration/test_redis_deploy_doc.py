"""docs/deploy.md, tested as far as this machine allows: its manifest's trackd arguments."""

from __future__ import annotations

import re
from pathlib import Path

from trackd import cli, config

DOC = Path(__file__).parents[2] / "docs" / "deploy.md"


def manifest_args() -> list[str]:
    """The `args:` list of the Deployment's container."""
    text = DOC.read_text()
    block = text.split("          args:\n", 1)[1]
    args = []
    for line in block.splitlines():
        match = re.fullmatch(r"            - (\S+)", line)
        if match is None:
            break
        args.append(match.group(1))
    return args


def test_the_manifest_runs_trackd_serve_with_valid_settings() -> None:
    args = manifest_args()
    assert args[0] == "serve"
    # Kubernetes expands $(VAR) from the container's env before trackd sees it.
    args = [arg.replace("$(OPTIMIZELY_SDK_KEY)", "abc123") for arg in args]
    parsed = cli.build_parser().parse_args(args)
    settings = config.settings_from(vars(parsed), environ={})
    assert settings.activation_store == "redis://redis:6379/0"
    assert settings.workers == 2
    assert settings.listen == "0.0.0.0:50051"
    assert settings.http_listen == "0.0.0.0:8080"  # what the image EXPOSEs
    assert settings.event_endpoint == "optimizely"  # the Event API host of the SDK key's region
    assert settings.grace_period < 20  # within terminationGracePeriodSeconds


def test_the_manifest_opens_every_port_trackd_listens_on_and_probes_readyz() -> None:
    """Each --*listen port is a containerPort and a Service port (metrics is scraped from the
    pod, not through the Service), and readiness is the HTTP port's /readyz."""
    text = DOC.read_text()
    container_ports = dict(re.findall(r"- \{name: (\w+), containerPort: (\d+)\}", text))
    assert container_ports == {"grpc": "50051", "http": "8080", "metrics": "9090"}
    service_ports = dict(re.findall(r"- name: (\w+)[^\n]*\n\s+port: (\d+)", text))
    assert service_ports == {"grpc": "50051", "http": "8080"}
    probes = dict(re.findall(r"(\w+Probe):.*\n\s+httpGet: \{path: (/\w+), port: http\}", text))
    assert probes == {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}


def test_the_doc_names_the_tests_that_back_it() -> None:
    text = DOC.read_text()
    here = Path(__file__).parents[1]
    for name in re.findall(r"`(tests/[\w/]+\.py)`", text):
        assert (here.parent / name).is_file(), name
