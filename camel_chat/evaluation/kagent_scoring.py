"""KAgentBench scoring (KwaiAgents ``benchmark/benchmark_eval.py``), as pure functions.

Reproduces the original rules (spec §8.3): per-template parsers (ReACT, AutoGPT, ToolLlama,
ModelScope, KuaiAgent), the AutoGPT-style JSON repair, ROUGE-L F1 on mixed Chinese/English
tokens (:mod:`camel_chat.evaluation.rouge`), the reflection penalty, max over goldens, mean over
templates then over queries, and the weights 0.25/0.35/0.10/0.20/0.10.

Quirks of the original that are kept on purpose (they change scores):

* an empty ReACT output, and a template name the scorer does not know (e.g. ``Kuaiagent``),
  reuse the values parsed for the previous template of the same record (the original's loop
  variables leak); with no previous template they parse as nothing (the original would crash);
* an empty parsed thought stays ``""`` (the original's ``thought == 'None'`` is a no-op);
* a ToolLlama output without ``Thought:`` scores its thought as the string ``"[]"``;
* ModelScope outputs have no thought (``"None"``).

Deviations (where the original would raise): a record whose goldens are all skipped scores 0
for reflection; a non-dict ``thoughts`` / ``command`` in JSON output is ignored; an empty type
(no records) scores 0 instead of dividing by zero.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from camel_chat.evaluation.rouge import rouge_l_f

__all__ = [
    "TEMPLATES",
    "WEIGHTS",
    "correct_json",
    "find_json_dict",
    "format_result_line",
    "parse_autogpt",
    "parse_kuaiagent",
    "parse_modelscope",
    "parse_predictions",
    "parse_react",
    "parse_toolllama",
    "score_benchmark",
]

TEMPLATES = ("ReACT", "AutoGPT", "ToolLlama", "ModelScope", "KuaiAgent")
WEIGHTS = {"plan": 0.25, "tooluse": 0.35, "reflextion": 0.10, "conclusion": 0.20, "profile": 0.10}
TYPES = ("plantooluse", "reflextion", "conclusion", "profile")

Parsed = tuple[Any, Any, dict]

# --------------------------------------------------------------------------- JSON repair


def find_json_dict(text: str, cnt: int = 0) -> str:
    """Close unbalanced ``{`` with ``\\n}``, then cut from the first ``{`` to the last ``}\\n}``."""
    while text.count("{") > text.count("}"):
        text = text.rstrip("\n") + "\n}"
        cnt += 1
    if cnt >= 5:
        return text
    try:
        start = text.index("{")
        end = text.rindex("}\n}")
    except ValueError:
        return text
    return text[start : end + 3].strip()


def _add_quotes_to_property_names(text: str) -> str:
    fixed = re.sub(r"(\w+):", lambda m: f'"{m[1]}":', text)
    json.loads(fixed)  # raises JSONDecodeError like the original
    return fixed


def _balance_braces(text: str) -> str | None:
    opened, closed = text.count("{"), text.count("}")
    while opened > closed:
        text += "}"
        closed += 1
    while closed > opened:
        text = text.rstrip("}")
        closed -= 1
    with contextlib.suppress(json.JSONDecodeError):
        json.loads(text)
        return text
    return None


def _fix_invalid_escape(text: str, message: str) -> str:
    while message.startswith("Invalid \\escape"):
        found = re.search(r"\(char (\d+)\)", message)
        if not found:
            raise ValueError("Character position not found in the error message.")
        pos = int(found[1])
        text = text[:pos] + text[pos + 1 :]
        try:
            json.loads(text)
            return text
        except json.JSONDecodeError as exc:
            message = str(exc)
    return text


def correct_json(text: str) -> str:
    """AutoGPT's ``correct_json``: bad escapes, bare property names, brace balance."""
    try:
        json.loads(text)
        return text
    except json.JSONDecodeError as exc:
        message = str(exc)
        if message.startswith("Invalid \\escape"):
            text = _fix_invalid_escape(text, message)
        if message.startswith("Expecting property name enclosed in double quotes"):
            text = _add_quotes_to_property_names(text)  # may raise, as the original
            try:
                json.loads(text)
                return text
            except json.JSONDecodeError:
                pass
        balanced = _balance_braces(text)
        if balanced:
            return balanced
    return text


def _load_dict(text: str) -> dict | None:
    try:
        obj = json.loads(correct_json(find_json_dict(text)))
    except Exception:
        return None
    return obj if isinstance(obj, dict) else None


# --------------------------------------------------------------------------- parsers


def _finish(thought: Any, tool_name: Any, args: Any) -> Parsed:
    if tool_name == "":
        tool_name = "None"
    return thought, tool_name, args


def parse_react(response: str, funcs: list[dict]) -> Parsed:
    thought: Any = re.findall(r"(.+?)(?=(Final Answer|\Z|Action))", response, re.DOTALL)[0][0].strip()
    tool_name, args = "None", {}
    names = re.findall(r"Action:(.+?)Action Input:", response, re.DOTALL)
    if names:
        tool_name = names[0].strip()
        key = "None"
        for func in funcs or []:
            if func.get("name") == tool_name:
                try:
                    key = next(iter(func["parameters"]["properties"].keys()))
                except Exception:
                    key = "None"
        if key != "None":
            value = re.findall(r"Action Input:(.+?)(?=(Observation|\Z))", response, re.DOTALL)
            if value:
                args = {key: value[0][0].strip()}
    return _finish(thought, tool_name, args)


def _command_fields(command: Any) -> tuple[Any, dict]:
    tool_name, args = "None", {}
    if isinstance(command, dict):
        if "name" in command:
            tool_name = command["name"]
        if isinstance(command.get("args"), dict):
            args = command["args"]
    return tool_name, args


def parse_autogpt(response: str) -> Parsed:
    obj = _load_dict(response)
    if obj is None:
        return "None", "None", {}
    thought: Any = "None"
    thoughts = obj.get("thoughts")
    if isinstance(thoughts, dict) and thoughts and "text" in thoughts:
        thought = thoughts["text"]
    tool_name, args = _command_fields(obj.get("command")) if obj.get("command") else ("None", {})
    return _finish(thought, tool_name, args)


def parse_toolllama(response: str) -> Parsed:
    thought: Any = "None"
    tool_name, args = "None", {}
    found = re.findall(r"Thought:(.+?)(?=(\Z|Action))", response, re.DOTALL)
    thought = found[0][0].strip() if found else []  # original quirk: [] -> scored as "[]"
    names = re.findall(r"Action:(.+?)(?=(Action Input:|\Z))", response, re.DOTALL)
    if names:
        tool_name = names[0][0].strip()
        raw = re.findall(r"Action Input:(.+?)(?=(Thought|\Z))", response, re.DOTALL)
        if raw:
            obj = _load_dict(raw[0][0].strip())
            if obj is not None:
                args = obj
    return _finish(thought, tool_name, args)


def parse_kuaiagent(response: str) -> Parsed:
    obj = _load_dict(response)
    if obj is None:
        return "None", "None", {}
    thought = obj.get("task_name", "None")
    tool_name, args = _command_fields(obj.get("command")) if obj else ("None", {})
    return _finish(thought, tool_name, args)


def parse_modelscope(response: str) -> Parsed:
    tool_name, args = "None", {}
    found = re.findall(r"<\|startofthink\|>(.+?)<\|endofthink\|>", response, re.DOTALL)
    if found:
        obj = _load_dict(found[0].strip())
        if obj is None:
            return "None", "None", {}
        if "api_name" in obj:
            tool_name = obj["api_name"]
        if isinstance(obj.get("parameters"), dict):
            args = obj["parameters"]
    return _finish("None", tool_name, args)


def parse_predictions(model_predict: Mapping[str, str], funcs: list[dict]) -> list[dict]:
    """One ``{thought, tool_name, tool_args}`` per template output, in the dict's order."""
    parsed: list[dict] = []
    last: Parsed = ("None", "None", {})
    for template, text in model_predict.items():
        text = "" if text is None else str(text)
        if template == "ReACT" and text != "":
            last = parse_react(text, funcs)
        elif template == "AutoGPT":
            last = parse_autogpt(text)
        elif template == "ToolLlama":
            last = parse_toolllama(text)
        elif template == "ModelScope":
            last = parse_modelscope(text)
        elif template == "KuaiAgent":
            last = parse_kuaiagent(text)
        # else: empty ReACT / unknown template -> previous values (original quirk)
        parsed.append({"thought": last[0], "tool_name": last[1], "tool_args": last[2]})
    return parsed


# --------------------------------------------------------------------------- metrics


def _arg_rouge(golden_args: Any, args: Any) -> float:
    if golden_args == {} and args == {}:
        return 1.0
    if args == {}:
        return 0.0
    scores = [rouge_l_f(v, args[k]) if k in args else 0.0 for k, v in golden_args.items()]
    return sum(scores) / len(scores) if scores else 0.0


def plan_metric(goldens: list[dict], thought: Any, tool_name: Any) -> float:
    scores = [
        rouge_l_f(g["thought"], thought) * (1 if tool_name == g["tool_name"] else 0)
        for g in goldens
        if g["thought"] != "None" and g["tool_name"] != "None"
    ]
    return max(scores) if scores else 0.0


def tool_metric(goldens: list[dict], tool_name: Any, args: Any) -> float:
    scores = [
        _arg_rouge(g["tool_args"], args) * (1 if tool_name == g["tool_name"] else 0)
        for g in goldens
        if g["tool_name"] != "None"
    ]
    return max(scores) if scores else 0.0


def reflection_metric(
    goldens: list[dict], last_task: Mapping, thought: Any, tool_name: Any, args: Any
) -> float:
    scores = []
    for g in goldens:
        if g["thought"] == "None" or g["tool_name"] == "None":
            continue
        em = 1 if tool_name == g["tool_name"] else 0
        thought_rouge = rouge_l_f(g["thought"], thought)
        arg_rouge = _arg_rouge(g["tool_args"], args)
        repeats_last = (
            last_task.get("tool_name") == g["tool_name"] and last_task.get("tool_args") == g["tool_args"]
        )
        penalty = 1 if repeats_last else 0
        scores.append((1 - penalty) * (0.3 * em * thought_rouge + 0.7 * em * arg_rouge))
    return max(scores) if scores else 0.0


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _golden_texts(record: Mapping) -> list[str]:
    return [g["golden_result"] for g in record["golden_result_list"]]


def autogpt_response_process(text: str) -> str:
    if "web_search(" in text:
        text = ""
    if 'response="' in text:
        text = text.split('response="')[1].replace('")', "")
    return text


def toolllama_response_process(text: str) -> str:
    marker = '"final_answer": "'
    if marker in text:
        text = text.split(marker)[1].replace('"', "").replace("}", "")
    if text == "\n":
        text = ""
    return text


def plantooluse_scores(label: Mapping, predict: Mapping) -> tuple[float, float]:
    """(plan, tooluse) of one query: mean over templates of the max over goldens."""
    parsed = parse_predictions(predict["model_predict"], label.get("funcs") or [])
    goldens = label["golden_result_list"]
    plans = [plan_metric(goldens, p["thought"], p["tool_name"]) for p in parsed]
    tools = [tool_metric(goldens, p["tool_name"], p["tool_args"]) for p in parsed]
    return _mean(plans), _mean(tools)


def reflection_score(label: Mapping, predict: Mapping) -> float:
    parsed = parse_predictions(predict["model_predict"], label.get("funcs") or [])
    last = label.get("memory_last_task") or {}
    goldens = label["golden_result_list"]
    return _mean(
        [reflection_metric(goldens, last, p["thought"], p["tool_name"], p["tool_args"]) for p in parsed]
    )


def conclusion_score(label: Mapping, predict: Mapping) -> float:
    goldens = _golden_texts(label)
    per_template = []
    for template, text in predict["model_predict"].items():
        if template == "AutoGPT":
            text = autogpt_response_process(text)
        if template == "ToolLlama":
            text = toolllama_response_process(text)
        if text == "":
            per_template.append(0.0)
            continue
        if isinstance(text, dict):
            text = json.dumps(text, ensure_ascii=False)
        per_template.append(max([rouge_l_f(g, text) for g in goldens], default=0.0))
    return _mean(per_template)


def profile_score(label: Mapping, predict: Mapping) -> float:
    text = predict["model_predict"]
    if isinstance(text, Mapping):  # tolerate {"prompt": text}
        text = next(iter(text.values()), "")
    if text == "":
        return 0.0
    return max([rouge_l_f(g, text) for g in _golden_texts(label)], default=0.0)


def _by_type(records: Iterable[Mapping]) -> dict[str, dict[Any, Mapping]]:
    out: dict[str, dict[Any, Mapping]] = {t: {} for t in TYPES}
    for rec in records:
        if rec.get("type") in out:
            out[rec["type"]][rec["id"]] = rec
    return out


def score_benchmark(eval_records: Iterable[Mapping], pred_records: Iterable[Mapping]) -> dict[str, Any]:
    """Scores in [0, 1]: plan, tooluse, reflextion, conclusion, profile, overall (+ counts)."""
    labels, preds = _by_type(eval_records), _by_type(pred_records)
    for t in TYPES:
        if len(labels[t]) != len(preds[t]):
            raise ValueError(f"{t}: {len(labels[t])} eval records but {len(preds[t])} predictions")
        if labels[t].keys() != preds[t].keys():
            strays = sorted(map(str, preds[t].keys() - labels[t].keys()))[:3]
            raise ValueError(f"{t}: predictions for ids the eval file does not have ({', '.join(strays)})")
    plan_tool = [plantooluse_scores(labels["plantooluse"][i], p) for i, p in preds["plantooluse"].items()]

    def per_query(kind: str, fn) -> list[float]:
        return [fn(labels[kind][i], p) for i, p in preds[kind].items()]

    result = {
        "plan": _mean([s[0] for s in plan_tool]),
        "tooluse": _mean([s[1] for s in plan_tool]),
        "reflextion": _mean(per_query("reflextion", reflection_score)),
        "conclusion": _mean(per_query("conclusion", conclusion_score)),
        "profile": _mean(per_query("profile", profile_score)),
    }
    result["overall"] = sum(WEIGHTS[k] * result[k] for k in WEIGHTS)
    result["counts"] = {t: len(preds[t]) for t in TYPES}
    return result


def format_result_line(scores: Mapping[str, float]) -> str:
    """The original's printed line (scores x100, two decimals)."""
    keys = ("plan", "tooluse", "reflextion", "conclusion", "profile", "overall")
    return ", ".join(f"{k} : {scores[k] * 100:.2f}" for k in keys)
