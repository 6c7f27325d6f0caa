"""Hypothesis profiles for the fuzz harness (docs/FUZZING.md).

ci    (default) a fixed, derandomized set of examples per surface: the whole harness runs in
      about a minute on two cores, and a failure reproduces exactly on any machine
long  `make fuzz` / CAMEL_CHAT_FUZZ=long: random examples (CAMEL_CHAT_FUZZ_EXAMPLES per
      surface, default 500); a failure prints its seed and a @reproduce_failure blob
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]

settings.register_profile(
    "ci", max_examples=25, derandomize=True, deadline=None, database=None, suppress_health_check=_SLOW_OK
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("CAMEL_CHAT_FUZZ_EXAMPLES", "500")),
    deadline=None,
    print_blob=True,
    suppress_health_check=_SLOW_OK,
)
settings.load_profile(os.environ.get("CAMEL_CHAT_FUZZ", "ci"))
