"""The suite must pass a correct runtime and fail a wrong one: both are checked here."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from layotto.conformance.cases import ALL_CASES
from layotto.conformance.cli import RunnerConfig, check_target, load_config
from layotto.conformance.coverage import rpc_coverage
from layotto.conformance.model import Outcome
from layotto.conformance.runner import RUNTIME_BLOCKS
from layotto.server import Runtime, RuntimeConfig
from layotto.server.components.base import Feature
from layotto.server.components.registry import registry_for
from layotto.server.components.state import SetRequest
from layotto.server.components.state.inmemory import InMemoryStateStore
from layotto.server.config import ComponentConfig


class PlainStore(InMemoryStateStore):
    """Declares no optional feature: transactions, TTL and first-write must be refused."""

    spec = dataclasses.replace(InMemoryStateStore.spec, type="test-plain", features=frozenset({Feature.ETAG}))


class EtagIgnoringStore(InMemoryStateStore):
    """Declares ETAG but ignores etags on write: a broken store the suite must catch."""

    spec = dataclasses.replace(InMemoryStateStore.spec, type="test-etag-ignoring")

    async def set(self, request: SetRequest) -> None:
        await super().set(dataclasses.replace(request, etag=None))


@pytest.fixture
async def address(tmp_path: Path) -> AsyncIterator[str]:
    for cls in (PlainStore, EtagIgnoringStore):
        registry_for("state").register(cls)
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        components={
            "state": {
                "good": ComponentConfig("in-memory"),
                "plain": ComponentConfig("test-plain"),
                "broken": ComponentConfig("test-etag-ignoring"),
            }
        },
    )
    async with Runtime(config) as rt:
        yield f"127.0.0.1:{rt.grpc_port}"


def outcomes(results: list, component: str) -> dict[str, Outcome]:  # type: ignore[type-arg]
    return {r.case: r.outcome for r in results if r.component == component and r.api == "layotto"}


async def test_correct_store_passes_every_applicable_case(address: str) -> None:
    results, problems = await check_target(address, RunnerConfig(components={("state", "good"): None}), None)
    assert problems == []
    good = outcomes(results, "good")
    assert good["etag"] is Outcome.PASS and good["ttl"] is Outcome.PASS and good["transaction-atomic"] is Outcome.PASS
    assert {c for c, o in good.items() if o is Outcome.SKIP} == {"no-transactions", "no-ttl", "no-etag"}
    assert all(o is not Outcome.FAIL for o in good.values())


async def test_undeclared_features_are_checked_absent(address: str) -> None:
    results, problems = await check_target(address, RunnerConfig(components={("state", "plain"): None}), None)
    plain = outcomes(results, "plain")
    assert plain["no-transactions"] is Outcome.PASS and plain["no-ttl"] is Outcome.PASS
    assert plain["transaction-order"] is Outcome.SKIP and plain["ttl"] is Outcome.SKIP
    assert problems == []


async def test_a_store_that_ignores_etags_fails(address: str) -> None:
    results, _ = await check_target(address, RunnerConfig(components={("state", "broken"): None}), None)
    broken = outcomes(results, "broken")
    assert broken["etag"] is Outcome.FAIL
    assert broken["no-lost-update"] is Outcome.FAIL
    assert broken["set-get"] is Outcome.PASS


async def test_missing_component_and_wrong_features_are_problems(address: str) -> None:
    config = RunnerConfig(components={("state", "absent"): None, ("state", "good"): frozenset({"ETAG"})})
    _, problems = await check_target(address, config, {"get-missing"})
    assert any("state/absent is not reported by the target" in p for p in problems)
    assert any("state/absent ran no case" in p for p in problems)
    assert any("good declares" in p and "the config expects ['ETAG']" in p for p in problems)


def test_coverage_lists_every_runtime_rpc_and_excludes_app_callbacks() -> None:
    coverage = rpc_coverage(ALL_CASES, [])
    assert "spec.proto.runtime.v1.Runtime/TryLock" in coverage
    assert "dapr.proto.runtime.v1.Dapr/GetState" in coverage
    assert not any(r.startswith("spec.proto.runtime.v1.AppCallback/") for r in coverage)
    assert all(cases == [] for cases in coverage.values())  # nothing ran, nothing is covered


async def test_cli_prints_matrix_writes_report_and_fails_on_a_missing_component(address: str, tmp_path: Path) -> None:
    config, report = tmp_path / "runner.yaml", tmp_path / "report.json"
    config.write_text("apis: [layotto]\ncomponents:\n  state:\n    good: {}\n    ghost: {features: [ETAG]}\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "layotto.conformance",
        "--target",
        address,
        "--config",
        str(config),
        "--report",
        str(report),
        "--case",
        "get-missing",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    assert process.returncode == 1
    text = out.decode()
    assert "get-missing  pass         FAIL" in text
    assert "problem: listed component state/ghost is not reported by the target" in text
    body = json.loads(report.read_text())
    assert body["summary"]["pass"] >= 1
    assert body["coverage"]["spec.proto.runtime.v1.Runtime/GetState"]["covered"] is True
    assert body["coverage"]["spec.proto.runtime.v1.Runtime/TryLock"]["covered"] is False


async def test_invocation_cases_run_once_per_target_on_both_apis(address: str) -> None:
    only = {"invoke-empty-id", "invoke-empty-method", "invoke-unknown-verb", "invoke-unknown-app"}
    results, problems = await check_target(address, RunnerConfig(), only)
    assert problems == []
    ran = {(r.api, r.block, r.component, r.case): r.outcome for r in results}
    assert ran == {
        (api, "invocation", "runtime", case): Outcome.PASS for api in ("layotto", "dapr") for case in only
    }, [r for r in results if r.outcome is not Outcome.PASS]


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_every_case_runs_in_a_ci_run() -> None:
    """Each case applies to a component of the embedded or the backends run (whose runs fail when an
    applicable case produced no result), so no case is left out of CI unnoticed; the cases checking
    a feature's absence run here, on PlainStore (every store of those runs declares the features)."""
    runs = [load_config(CONFIGS / name) for name in ("embedded.yaml", "backends.yaml")]
    never = [
        case.id
        for case in ALL_CASES
        if not case.requires_absent
        and not any(
            case.block == block
            and api in case.apis
            and (case.block in RUNTIME_BLOCKS or case.skip_reason(features or frozenset()) is None)
            for run in runs
            for (block, _), features in [*run.components.items(), *(((b, ""), None) for b in RUNTIME_BLOCKS)]
            for api in run.apis
        )
    ]
    assert never == []


def test_the_runtime_configs_declare_every_listed_component() -> None:
    """The cases that start runtimes of their own take the component's declaration from ``runtime:``."""
    for name in ("embedded.yaml", "backends.yaml"):
        run = load_config(CONFIGS / name)
        assert run.runtime is not None
        declared = yaml.safe_load(run.runtime.read_text())
        for block, component in run.components:
            assert component in (declared.get(block) or {}), f"{name}: {block}/{component} is not in {run.runtime}"
