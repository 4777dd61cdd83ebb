"""The matrix printed for people and the JSON written for machines."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from layotto.conformance.model import CaseResult, Outcome

_MARK = {Outcome.PASS: "pass", Outcome.FAIL: "FAIL", Outcome.SKIP: "skip"}


def write_matrix(out: TextIO, results: Sequence[CaseResult]) -> None:
    """A table per building block: cases as rows, api:component as columns."""
    for block in dict.fromkeys(r.block for r in results):
        rows = [r for r in results if r.block == block]
        columns = list(dict.fromkeys(f"{r.api}:{r.component}" for r in rows))
        cases = list(dict.fromkeys(r.case for r in rows))
        cell = {(r.case, f"{r.api}:{r.component}"): _MARK[r.outcome] for r in rows}
        width = max(len(c) for c in cases) + 2
        out.write(f"\n{block}\n")
        out.write("".ljust(width) + " ".join(c.ljust(max(len(c), 4)) for c in columns) + "\n")
        for case in cases:
            marks = (cell.get((case, c), "-").ljust(max(len(c), 4)) for c in columns)
            out.write(case.ljust(width) + " ".join(marks) + "\n")
    failures = [r for r in results if r.outcome is Outcome.FAIL]
    if failures:
        out.write("\nfailures:\n")
        for r in failures:
            out.write(f"  {r.api}:{r.block}/{r.component} {r.case}: {r.detail}\n")


def write_coverage(out: TextIO, coverage: dict[str, list[str]]) -> None:
    covered = [rpc for rpc, cases in coverage.items() if cases]
    out.write(f"\nRPC coverage: {len(covered)} of {len(coverage)} runtime RPCs exercised by cases\n")
    for service in dict.fromkeys(rpc.split("/")[0] for rpc in coverage):
        rpcs = {r: c for r, c in coverage.items() if r.startswith(service + "/")}
        done = sorted(r.split("/")[1] for r, c in rpcs.items() if c)
        out.write(f"  {service}: {len(done)}/{len(rpcs)} covered")
        out.write(f" ({', '.join(done)})\n" if done else "\n")


def summary(results: Sequence[CaseResult]) -> dict[str, int]:
    return {o.value: sum(1 for r in results if r.outcome is o) for o in Outcome}


def write_json(
    path: Path, target: str, results: Sequence[CaseResult], coverage: dict[str, list[str]], problems: Sequence[str]
) -> None:
    body: dict[str, Any] = {
        "target": target,
        "summary": summary(results),
        "problems": list(problems),
        "results": [
            {
                "api": r.api,
                "block": r.block,
                "component": r.component,
                "case": r.case,
                "outcome": r.outcome.value,
                "detail": r.detail,
                "seconds": r.seconds,
            }
            for r in results
        ],
        "coverage": {rpc: {"covered": bool(cases), "cases": cases} for rpc, cases in coverage.items()},
    }
    path.write_text(json.dumps(body, indent=2) + "\n")
