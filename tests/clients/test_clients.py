"""Every language's client against one real trackd: same decisions, attribution, errors, producers.

The protocol each `clients/<lang>/e2e.sh` follows is in docs/dev/clients-e2e.md. Run with
`make test-clients`; a missing toolchain skips loudly here and fails under CI=true.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clients.ack_proxy import AckDroppingProxy
from tests.support.daemon import Process, spawn
from tests.support.oracle import sdk_client

ROOT = Path(__file__).resolve().parents[2]
# tests/data/datafile.json with two flags added (e2e_checkout: feature test "checkout_test" on
# iPhone users, variables of every type; e2e_banner: a rollout), so Decide is exercised live.
DATAFILE = ROOT / "tests" / "data" / "clients_datafile.json"
MISSING_TOOLCHAIN = 77
USERS = [f"user-{n}" for n in range(200)]
DECIDE_USERS = USERS[:50]
PRODUCERS = {"python", "go", "java"}
LANGUAGES = ["python", "go", "java", "node", "ruby", "cpp"]


def device_of(n: int) -> str:
    return "iPhone" if n % 3 else "Android"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    data_dir = tmp_path_factory.mktemp("clients")
    with spawn(data_dir, "--datafile", str(DATAFILE), "--event-flush-interval", "0.2") as process:
        yield process


@pytest.fixture(scope="module")
def reference() -> dict[str, str | None]:
    return sdk_variations()


@pytest.fixture(scope="module")
def flag_reference() -> dict[str, list[Any]]:
    return sdk_flag_decisions()


def sdk_variations() -> dict[str, str | None]:
    """What optimizely-sdk decides for the same users: the Python reference."""
    sdk = sdk_client(DATAFILE.read_text())
    return {
        user: sdk.get_variation("ab_iphone", user, {"device": device_of(n)})
        for n, user in enumerate(USERS)
    }


def sdk_flag_decisions() -> dict[str, list[Any]]:
    """What optimizely-sdk decides for e2e_checkout: [enabled, variation, rule key, rule type]."""
    from optimizely.decision.optimizely_decide_option import OptimizelyDecideOption

    sdk = sdk_client(DATAFILE.read_text())
    out: dict[str, list[Any]] = {}
    for n, user in enumerate(DECIDE_USERS):
        context = sdk.create_user_context(user, {"device": device_of(n)})
        d = context.decide("e2e_checkout", [OptimizelyDecideOption.DISABLE_DECISION_EVENT])
        rule_type = "feature-test" if d.rule_key == "checkout_test" else "rollout"
        out[user] = [d.enabled, d.variation_key, d.rule_key, rule_type]
    return out


TREATMENT_VARIABLES = {
    "show_banner": True,
    "max_items": 7,
    "discount": 1.25,
    "title": "Fast checkout",
    "layout": {"columns": 2, "tags": ["a"]},
}


def check_decide(report: dict[str, Any], reference: dict[str, list[Any]]) -> None:
    """The `decide` part of an e2e report (docs/dev/clients-e2e.md)."""
    assert report["decisions"] == reference, "flag decisions differ from optimizely-sdk's"
    assert {tuple(d[:3]) for d in reference.values()} >= {
        (True, "treatment", "checkout_test"),
        (False, "control", "checkout_test"),
        (False, "off", "checkout_everyone_else"),
    }  # a real mix: both variations of the feature test, and the rollout
    assert report["all"] == ["e2e_checkout", "e2e_banner"]
    assert report["variables"] == TREATMENT_VARIABLES
    assert isinstance(report["variables"]["max_items"], int)
    assert report["type_error"] is True
    assert report["unknown_flag_error"] is True
    # get after set; remove, remove again, remove_all after setting a flag and a rule
    assert report["forced"] == ["treatment", True, False, 2]
    assert report["attributed"] == ["checkout_test"]
    # DISABLE_DECISION_EVENT recorded none; the plain decide into the A/B test recorded one.
    assert report["impressions"] == [False, True]


def run_step(language: str, step: str, env: dict[str, str], timeout: float) -> str:
    script = ROOT / "clients" / language / f"{step}.sh"
    if not script.exists():
        pytest.fail(f"clients/{language}/{step}.sh is missing")
    result = subprocess.run(
        ["bash", str(script)],
        cwd=script.parent,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode == MISSING_TOOLCHAIN:
        message = f"{language}: toolchain missing: {result.stderr.strip()[-500:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI installs every toolchain: see .ci/run)")
        print(f"\n*** SKIPPING {message} ***")
        pytest.skip(message)
    assert result.returncode == 0, (
        f"{language} {step} failed ({result.returncode}):\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout


@pytest.mark.timeout(1500 + 600 + 60)  # its two steps carry their own timeouts
@pytest.mark.parametrize("language", LANGUAGES)
def test_client_end_to_end(
    language: str,
    daemon: Process,
    reference: dict[str, str | None],
    flag_reference: dict[str, list[Any]],
) -> None:
    run_id = uuid.uuid4().hex[:8]
    env = {"TRACKD_ADDRESS": f"127.0.0.1:{daemon.port}", "E2E_RUN_ID": run_id}
    run_step(language, "build", env, timeout=1500)
    # The producer goes through a proxy that loses acknowledgements of stored batches and
    # breaks its first stream: its resends must be counted once.
    proxy = AckDroppingProxy(daemon.port).start()
    env["TRACKD_PRODUCER_ADDRESS"] = f"127.0.0.1:{proxy.port}"
    try:
        output = run_step(language, "e2e", env, timeout=600)
    finally:
        proxy.close()
    report: dict[str, Any] = json.loads(output.strip().splitlines()[-1])

    assert report["language"] == language
    assert report["variations"] == reference, "decisions differ from the Python reference"
    assert sum(v is not None for v in reference.values()) > 50  # a real mix, not all null
    assert report["attributed"] == ["ab_running"]
    assert report["not_found"] is True
    check_decide(report["decide"], flag_reference)
    if language in PRODUCERS:
        producer = report["producer"]
        assert producer["sent"] == 10_000
        assert producer["acked"] == 10_000
        assert producer["batches"] >= 1
        # The proxy lost acknowledgements of stored batches; the producer resent them with
        # the same (producer_id, sequence) and trackd answered duplicate: each event once.
        print(f"\n{language} producer: {producer}; proxy lost {proxy.dropped} acknowledgement(s)")
        assert proxy.dropped >= 1 and proxy.connections >= 2, vars(proxy)
        assert producer["duplicates"] >= proxy.dropped, (producer, vars(proxy))
        stored = stored_events(daemon, f"p-{language}-{run_id}-")
        assert len(stored) == 10_000
        assert {user: len(uuids) for user, uuids in stored.items() if len(uuids) != 1} == {}
    else:
        assert report["producer"] is None


def stored_events(daemon: Process, prefix: str) -> dict[str, set[str]]:
    """The event uuids trackd delivered to its events file, per visitor whose id has prefix.

    Delivery to the file is at least once (the same uuid may be written again after a
    failed round); a batch stored twice would give a visitor two different uuids.
    """
    events = daemon.log_path.parent / "events.jsonl"
    found: dict[str, set[str]] = collections.defaultdict(set)

    def read() -> int:
        found.clear()
        for line in events.read_text().splitlines() if events.exists() else []:
            for visitor in json.loads(line)["visitors"]:
                if visitor["visitor_id"].startswith(prefix):
                    for snapshot in visitor["snapshots"]:
                        found[visitor["visitor_id"]].update(e["uuid"] for e in snapshot["events"])
        return len(found)

    deadline = time.monotonic() + 60
    while read() < 10_000 and time.monotonic() < deadline:
        time.sleep(0.2)  # the dispatcher delivers every --event-flush-interval
    time.sleep(1.0)  # and anything stored twice would follow in the next rounds
    read()
    return dict(found)


def languages_with_own_tests() -> set[str]:
    """Clients proven live by a module of their own, tests/clients/test_<lang>_client.py (those
    needing more than this protocol: the browser's pages and Chromium)."""
    return {
        path.name.removeprefix("test_").removesuffix("_client.py")
        for path in Path(__file__).parent.glob("test_*_client.py")
    }


def clients_table() -> dict[str, str]:
    """README.md's clients table: the path of each client -> its status cell."""
    text = (ROOT / "README.md").read_text()
    table = text.split("<!-- clients:start -->")[1].split("<!-- clients:end -->")[0]
    rows = [line.split("|")[1:-1] for line in table.strip().splitlines()[2:]]
    return {cells[1].split("(")[1].split("/")[1]: cells[3].strip() for cells in rows}


def test_the_clients_table_claims_tested_only_for_what_this_module_runs() -> None:
    """C#'s gRPC client has never compiled here: the table says so, and only the languages run
    here (over gRPC by this module, over HTTP by test_http_json_clients.py) say tested."""
    from tests.clients.test_http_json_clients import HTTP_CLIENTS  # it imports this module

    table = clients_table()
    assert set(table) == {path.name for path in (ROOT / "clients").iterdir() if path.is_dir()} - {
        "testdata"
    }
    tested = {lang for lang, status in table.items() if status.startswith("tested")}
    assert tested == set(LANGUAGES) | set(HTTP_CLIENTS.values()) | languages_with_own_tests()
    assert "never compiled here" in table["csharp"]
    assert "never been compiled" in (ROOT / "clients" / "csharp" / "README.md").read_text()
    assert "csharp" not in LANGUAGES
