"""Conformance cases, by building block."""

from layotto.conformance.cases.hello import HELLO_CASES
from layotto.conformance.cases.state import STATE_CASES

ALL_CASES = (*STATE_CASES, *HELLO_CASES)

__all__ = ["ALL_CASES", "HELLO_CASES", "STATE_CASES"]
