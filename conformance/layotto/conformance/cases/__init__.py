"""Conformance cases, by building block."""

from layotto.conformance.cases.bindings import BINDING_CASES
from layotto.conformance.cases.configuration import CONFIGURATION_CASES
from layotto.conformance.cases.crypto import CRYPTO_CASES
from layotto.conformance.cases.files import FILE_CASES
from layotto.conformance.cases.hello import HELLO_CASES
from layotto.conformance.cases.invocation import INVOCATION_CASES
from layotto.conformance.cases.lock import LOCK_CASES
from layotto.conformance.cases.messaging import MESSAGING_CASES
from layotto.conformance.cases.oss import OSS_CASES
from layotto.conformance.cases.pubsub import PUBSUB_CASES
from layotto.conformance.cases.scheduler import SCHEDULER_CASES
from layotto.conformance.cases.secrets import SECRET_CASES
from layotto.conformance.cases.sequencer import SEQUENCER_CASES
from layotto.conformance.cases.state import STATE_CASES

ALL_CASES = (
    *STATE_CASES,
    *LOCK_CASES,
    *SEQUENCER_CASES,
    *PUBSUB_CASES,
    *SECRET_CASES,
    *CONFIGURATION_CASES,
    *HELLO_CASES,
    *INVOCATION_CASES,
    *CRYPTO_CASES,
    *BINDING_CASES,
    *FILE_CASES,
    *MESSAGING_CASES,
    *SCHEDULER_CASES,
    *OSS_CASES,
)

__all__ = [
    "ALL_CASES",
    "BINDING_CASES",
    "CONFIGURATION_CASES",
    "CRYPTO_CASES",
    "FILE_CASES",
    "HELLO_CASES",
    "INVOCATION_CASES",
    "LOCK_CASES",
    "MESSAGING_CASES",
    "OSS_CASES",
    "PUBSUB_CASES",
    "SCHEDULER_CASES",
    "SECRET_CASES",
    "SEQUENCER_CASES",
    "STATE_CASES",
]
