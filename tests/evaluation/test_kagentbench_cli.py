"""kagentbench infer/score against an in-process fake /v1/completions (httpx.MockTransport)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import httpx

from camel_chat.evaluation import kagentbench

_spec = importlib.util.spec_from_file_location(
    "kagent_scoring_cases", Path(__file__).with_name("test_kagent_scoring.py")
)
_cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cases)
tiny_benchmark, RESULT_LINE = _cases.tiny_benchmark, _cases.RESULT_LINE


def _fake_server(calls: list[dict], fail: set[str]):
    answers = {}
    _, preds = tiny_benchmark()
    evals, _ = tiny_benchmark()
    for rec, pred in zip(evals, preds, strict=True):
        if rec["type"] == "profile":
            answers[rec["prompt_input"]["prompt"]] = pred["model_predict"]
        else:
            for name, prompt in rec["prompt_input"].items():
                answers[prompt] = pred["model_predict"][name]

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        calls.append(body)
        if request.url.path != "/v1/completions":
            return httpx.Response(404)
        if any(body["prompt"].startswith(f) for f in fail):
            return httpx.Response(500, json={"error": "boom"})
        return httpx.Response(200, json={"choices": [{"text": answers[body["prompt"]], "index": 0}]})

    return httpx.MockTransport(handler)


def test_infer_resume_and_score(tmp_path, capsys):
    evals, _ = tiny_benchmark()
    eval_file, out = tmp_path / "eval.jsonl", tmp_path / "pred.jsonl"
    eval_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in evals), encoding="utf-8")
    args = [
        "infer",
        "--api-base",
        "http://fake/v1/",
        "--model",
        "tiny",
        "--eval-file",
        str(eval_file),
        "--out",
        str(out),
        "--concurrency",
        "3",
        "--retries",
        "2",
        "--backoff",
        "0",
    ]

    calls: list[dict] = []
    rc = kagentbench.main(args, transport=_fake_server(calls, fail={"C1"}))
    assert rc == 1  # c1 failed, not written
    assert calls[0]["temperature"] == 0.1 and calls[0]["top_p"] == 0.75 and calls[0]["top_k"] == 40
    assert calls[0]["max_tokens"] == 512 and calls[0]["model"] == "tiny"
    written = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sorted(r["id"] for r in written) == ["f1", "f2", "p1", "p2", "r1"]
    assert next(r for r in written if r["id"] == "f1")["model_predict"] == "a helpful bot"
    capsys.readouterr()

    # an interrupted append leaves a partial line: it is ignored and the run resumes after it
    with open(out, "a", encoding="utf-8") as f:
        f.write('{"id": "c1", "trunc')
    calls.clear()
    rc = kagentbench.main(args, transport=_fake_server(calls, fail=set()))
    assert rc == 0
    assert sorted(c["prompt"] for c in calls) == ["C1 autogpt", "C1 react", "C1 tl"]  # only c1 re-asked
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {"written": 1, "skipped": 5, "failed": 0, "out": str(out)}

    rc = kagentbench.main(["score", str(eval_file), str(out)])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == RESULT_LINE
    assert json.loads(lines[1])["counts"]["profile"] == 2
