"""``layotto-conformance``: black-box conformance of a runtime over gRPC.

    layotto-conformance --target 127.0.0.1:34904 [--config FILE]
    layotto-conformance --serve RUNNER_CONFIG    # starts `layotto serve` itself

The runner config lists the components the suite must exercise and, optionally,
the features each must declare; features not listed are read from the target's
GetMetadata. The run fails on any failed case, on a listed component the target
does not have, and on any applicable case that produced no result.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import yaml

from layotto.conformance.cases import ALL_CASES
from layotto.conformance.coverage import rpc_coverage
from layotto.conformance.model import CaseResult, Outcome
from layotto.conformance.report import summary, write_coverage, write_json, write_matrix
from layotto.conformance.runner import RUNTIME_BLOCKS, RUNTIME_COMPONENT, Component, discover, missing_runs, run_suite
from layotto.conformance.spawn import ServeFailed, serve


@dataclass
class RunnerConfig:
    components: dict[tuple[str, str], frozenset[str] | None] = field(default_factory=dict)
    apis: tuple[str, ...] = ("layotto", "dapr")
    runtime: Path | None = None
    env: dict[str, str] = field(default_factory=dict)  # set for the runtime --serve starts


def load_config(path: Path) -> RunnerConfig:
    raw: Any = yaml.safe_load(path.read_text()) or {}
    config = RunnerConfig()
    for block, components in (raw.get("components") or {}).items():
        for name, body in (components or {}).items():
            features = (body or {}).get("features")
            config.components[(block, name)] = frozenset(features) if features is not None else None
    if raw.get("apis"):
        config.apis = tuple(raw["apis"])
    if raw.get("runtime"):
        config.runtime = (path.parent / raw["runtime"]).resolve()
    config.env = {str(k): str(v) for k, v in (raw.get("env") or {}).items()}
    return config


async def check_target(address: str, config: RunnerConfig, only: set[str] | None) -> tuple[list[CaseResult], list[str]]:
    problems: list[str] = []
    async with grpc.aio.insecure_channel(address) as channel:
        discovered = await discover(channel)
        wanted = config.components or dict.fromkeys(discovered)
        components = []
        for (block, name), pinned in wanted.items():
            declared = discovered.get((block, name))
            if declared is None and discovered:
                problems.append(f"listed component {block}/{name} is not reported by the target")
            if declared is None and pinned is None:
                continue
            if declared is not None and pinned is not None and declared != pinned:
                problems.append(f"{block}/{name} declares {sorted(declared)}, the config expects {sorted(pinned)}")
            components.append(Component(block, name, pinned if pinned is not None else declared or frozenset()))
        cases = [c for c in ALL_CASES if only is None or c.id in only]
        blocks = {c.block for c in cases}
        components += [Component(b, RUNTIME_COMPONENT, frozenset()) for b in RUNTIME_BLOCKS if b in blocks]
        results = await run_suite(channel, components, cases, config.apis, config.runtime)
    problems += [f"did not run: {m}" for m in missing_runs(results, components, cases, config.apis)]
    ran_components = {(r.block, r.component) for r in results if r.outcome is not Outcome.SKIP}
    selected_blocks = {c.block for c in cases}
    problems += [
        f"listed component {b}/{n} ran no case"
        for (b, n) in wanted
        if (b, n) not in ran_components and b in selected_blocks
    ]
    return results, problems


async def _main(args: argparse.Namespace) -> int:
    config = load_config(Path(args.config)) if args.config else RunnerConfig()
    only = set(args.case) if args.case else None
    if args.serve:
        config = load_config(Path(args.serve))
        if config.runtime is None:
            sys.stderr.write(f"{args.serve}: --serve needs a 'runtime:' entry naming the runtime config\n")
            return 2
        try:
            async with serve(config.runtime, config.env) as address:
                results, problems = await check_target(address, config, only)
        except ServeFailed as error:
            sys.stderr.write(f"layotto-conformance: {error}\n")
            return 1
        target = f"layotto serve -c {config.runtime.name}"
    else:
        results, problems = await check_target(args.target, config, only)
        target = args.target
    coverage = rpc_coverage(ALL_CASES, results)
    write_matrix(sys.stdout, results)
    write_coverage(sys.stdout, coverage)
    for problem in problems:
        sys.stdout.write(f"problem: {problem}\n")
    if args.report:
        write_json(Path(args.report), target, results, coverage, problems)
    counts = summary(results)
    failed = counts["fail"] + len(problems)
    sys.stdout.write(f"\n{counts['pass']} passed, {failed} failed, {counts['skip']} skipped\n")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="layotto-conformance", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--target", help="HOST:PORT of a running runtime")
    where.add_argument("--serve", metavar="RUNNER_CONFIG", help="start `layotto serve` with the config's runtime")
    parser.add_argument("--config", help="runner config: components (and features) to exercise")
    parser.add_argument("--report", help="write the results as JSON to this file")
    parser.add_argument("--case", action="append", help="run only this case id (repeatable)")
    return asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
