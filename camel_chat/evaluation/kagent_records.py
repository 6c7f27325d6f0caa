"""What a KAgentBench eval record and a prediction record must hold before they are scored.

`record_problem(record, prediction=False)` returns None for a record the scorer can take,
else a short reason; `kagentbench` drops such records, counted, instead of letting the
scorer fail on a missing key deep inside (the benchmark files are large JSON lines that
users edit and concatenate, so a bad line is a normal event).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from camel_chat.evaluation.kagent_scoring import TYPES

# eval: the fields each golden result needs, by record type
_GOLDEN = {
    "plantooluse": {"thought": str, "tool_name": str, "tool_args": Mapping},
    "reflextion": {"thought": str, "tool_name": str, "tool_args": Mapping},
    "conclusion": {"golden_result": str},
    "profile": {"golden_result": str},
}


def record_problem(record: Any, prediction: bool = False) -> str | None:
    """None if `record` can be scored (or is of a type the benchmark ignores), else why not."""
    if not isinstance(record, Mapping):
        return f"a record must be a JSON object, not {type(record).__name__}"
    kind = record.get("type")
    if not isinstance(kind, str):
        return "'type' must be a string"
    if kind not in TYPES:
        return None  # the scorer skips unknown types, as the original does
    if not isinstance(record.get("id"), (str, int)) or isinstance(record.get("id"), bool):
        return "'id' must be a string or an integer"
    return _prediction_problem(record, kind) if prediction else _eval_problem(record, kind)


def _eval_problem(record: Mapping, kind: str) -> str | None:
    goldens = record.get("golden_result_list")
    if not isinstance(goldens, list):
        return "'golden_result_list' must be a list"
    for i, golden in enumerate(goldens):
        if not isinstance(golden, Mapping):
            return f"golden_result_list[{i}] must be an object"
        for field, kind_of in _GOLDEN[kind].items():
            if not isinstance(golden.get(field), kind_of):
                return f"golden_result_list[{i}].{field} must be a {_name(kind_of)}"
    funcs = record.get("funcs")
    if funcs is not None and not (isinstance(funcs, list) and all(isinstance(f, Mapping) for f in funcs)):
        return "'funcs' must be a list of objects"
    last = record.get("memory_last_task")
    if last is not None and not isinstance(last, Mapping):
        return "'memory_last_task' must be an object"
    return None


def _prediction_problem(record: Mapping, kind: str) -> str | None:
    predict = record.get("model_predict")
    if kind == "profile" and isinstance(predict, str):
        return None
    if not isinstance(predict, Mapping) or not all(isinstance(v, str) for v in predict.values()):
        return "'model_predict' must map template names to text"
    return None


def _name(kind: type) -> str:
    return "string" if kind is str else "object"
