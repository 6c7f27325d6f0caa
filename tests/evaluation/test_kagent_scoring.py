"""KAgentBench scoring: tokenizer, ROUGE-L, parsers, JSON repair and a hand-scored tiny benchmark."""

from __future__ import annotations

import pytest

from camel_chat.evaluation import kagent_scoring as ks
from camel_chat.evaluation.rouge import mixed_tokenize, rouge_l_f, word_tokenize

A = 1e-6  # F = 2PR/(P+R+1e-8) differs from the exact fraction by < 1e-8


def test_word_tokenize_approximates_nltk():
    assert word_tokenize("I don't know, it's 3.14 well-known...") == [
        "I",
        "do",
        "n't",
        "know",
        ",",
        "it",
        "'s",
        "3.14",
        "well-known",
        "...",
    ]


def test_mixed_tokenize_splits_cjk_tokens():
    assert mixed_tokenize("打开GitHub 网站.") == ["打", "开", "G", "i", "t", "H", "u", "b", "网", "站", "."]


def test_rouge_l_by_hand():
    # ref: the cat sat on the mat (distinct: the cat sat on mat = 5), hyp: the cat on a mat (5)
    # LCS = the cat on mat -> 4; P = R = 4/5 -> F = 0.8
    assert rouge_l_f("the cat sat on the mat", "the cat on a mat") == pytest.approx(0.8, abs=A)
    # 我 爱 北 京 vs 我 爱 上 海: LCS 我 爱 = 2; P = R = 2/4 -> F = 0.5
    assert rouge_l_f("我爱北京", "我爱上海") == pytest.approx(0.5, abs=A)
    # ref 打 开 GitHub 网 站 (5); hyp "打开GitHub" is one token with CJK -> 8 characters
    # LCS 打 开 = 2; P = 2/8, R = 2/5 -> F = 2*(1/4*2/5)/(1/4+2/5) = 0.2/0.65
    assert rouge_l_f("打开 GitHub 网站", "打开GitHub") == pytest.approx(0.2 / 0.65, abs=A)
    # m, n count DISTINCT words: ref 今 天 晴 天 -> {今,天,晴} = 3, hyp 今 天 是 晴 天 -> 4,
    # LCS 今 天 晴 天 as a set = 3; P = 3/4, R = 1 -> F = 6/7
    assert rouge_l_f("今天晴天", "今天是晴天") == pytest.approx(6 / 7, abs=A)
    assert rouge_l_f("", "x") == 0 and rouge_l_f("x", "") == 0 and rouge_l_f("x", "   ") == 0


FUNCS = [{"name": "web_search", "parameters": {"properties": {"query": {"type": "string"}}}}]


def test_parse_react_chinese():
    out = "我需要搜索天气\nAction: web_search\nAction Input: 北京天气\nObservation: 晴"
    assert ks.parse_react(out, FUNCS) == ("我需要搜索天气", "web_search", {"query": "北京天气"})
    # unknown function -> no args
    assert ks.parse_react("t\nAction: other\nAction Input: x", FUNCS) == ("t", "other", {})


def test_parse_autogpt_repairs_unclosed_json():
    out = '{"thoughts": {"text": "search weather"}, "command": {"name": "web_search", "args": {"query": "天'
    assert ks.parse_autogpt(out + '"') == ("search weather", "web_search", {"query": "天"})
    assert ks.parse_autogpt("no json here") == ("None", "None", {})


def test_parse_autogpt_bare_keys():
    out = '{thoughts: {text: "calc"}, command: {name: "calculator", args: {expr: "1+1"}}}'
    assert ks.parse_autogpt(out) == ("calc", "calculator", {"expr": "1+1"})


def test_parse_kuaiagent_bad_escape_and_surrounding_text():
    out = '{"task_name": "查询\\d天气", "command": {"name": "weather", "args": {"city": "北京"}}}'
    assert ks.parse_kuaiagent(out) == ("查询d天气", "weather", {"city": "北京"})
    pretty = 'Sure:\n{\n "task_name": "x",\n "command": {\n  "name": "n",\n  "args": {}\n }\n}\nbye'
    assert ks.parse_kuaiagent(pretty) == ("x", "n", {})


def test_parse_toolllama_and_modelscope():
    out = 'Thought: 查询天气\nAction: weather\nAction Input: {"city": "北京"}'
    assert ks.parse_toolllama(out) == ("查询天气", "weather", {"city": "北京"})
    assert ks.parse_toolllama("Action: weather")[0] == []  # original quirk, scored as "[]"
    ms = '好的<|startofthink|>{"api_name": "weather", "parameters": {"city": "上海"}}<|endofthink|>'
    assert ks.parse_modelscope(ms) == ("None", "weather", {"city": "上海"})


def test_empty_react_reuses_previous_parse():
    kua = '{"task_name": "t", "command": {"name": "web_search", "args": {"query": "q"}}}'
    parsed = ks.parse_predictions({"KuaiAgent": kua, "ReACT": ""}, FUNCS)
    assert parsed[0] == parsed[1] == {"thought": "t", "tool_name": "web_search", "tool_args": {"query": "q"}}


def test_reflection_penalty():
    goldens = [{"thought": "search again", "tool_name": "web_search", "tool_args": {"query": "weather"}}]
    last = {"tool_name": "web_search", "tool_args": {"query": "weather"}}
    assert ks.reflection_metric(goldens, last, "search again", "web_search", {"query": "weather"}) == 0
    other = {"tool_name": "web_search", "tool_args": {"query": "news"}}
    # 0.3 * 1 * 1 + 0.7 * 1 * 1
    assert ks.reflection_metric(goldens, other, "search again", "web_search", {"query": "weather"}) == (
        pytest.approx(1.0, abs=A)
    )


def tiny_benchmark() -> tuple[list[dict], list[dict]]:
    """Eval records and predictions; the expected scores are derived in test_tiny_benchmark."""
    p1 = {
        "id": "p1",
        "type": "plantooluse",
        "query": "weather?",
        "funcs": FUNCS,
        "golden_result_list": [
            {
                "thought": "search the weather",
                "tool_name": "web_search",
                "tool_args": {"query": "Beijing weather"},
            },
            {"thought": "None", "tool_name": "None", "tool_args": {}},
        ],
        "prompt_input": {"ReACT": "P1 react", "KuaiAgent": "P1 kuai", "AutoGPT": "P1 autogpt"},
    }
    p1_pred = {
        "ReACT": "search the weather\nAction: web_search\nAction Input: Beijing weather",
        "KuaiAgent": '{"task_name": "search weather", "command": {"name": "web_search", '
        '"args": {"query": "Shanghai weather"}}}',
        "AutoGPT": "not json",
    }
    p2 = {
        "id": "p2",
        "type": "plantooluse",
        "query": "北京天气",
        "funcs": [],
        "golden_result_list": [
            {"thought": "查询北京天气", "tool_name": "weather", "tool_args": {"city": "北京"}}
        ],
        "prompt_input": {"ToolLlama": "P2 tl", "ModelScope": "P2 ms"},
    }
    p2_pred = {
        "ToolLlama": 'Thought: 查询上海天气\nAction: weather\nAction Input: {"city": "北京"}',
        "ModelScope": '<|startofthink|>{"api_name": "weather", "parameters": {}}<|endofthink|>',
    }
    r1 = {
        "id": "r1",
        "type": "reflextion",
        "query": "q",
        "funcs": FUNCS,
        "memory_last_task": {"tool_name": "web_search", "tool_args": {"query": "weather"}},
        "golden_result_list": [
            {
                "thought": "retry with another query",
                "tool_name": "web_search",
                "tool_args": {"query": "weather today"},
            },
            {"thought": "search again", "tool_name": "web_search", "tool_args": {"query": "weather"}},
        ],
        "prompt_input": {"KuaiAgent": "R1 kuai", "AutoGPT": "R1 autogpt"},
    }
    r1_pred = {
        "KuaiAgent": '{"task_name": "search again", "command": {"name": "web_search", '
        '"args": {"query": "weather"}}}',
        "AutoGPT": '{"thoughts": {"text": "retry with another query"}, "command": {"name": "web_search", '
        '"args": {"query": "weather today"}}}',
    }
    c1 = {
        "id": "c1",
        "type": "conclusion",
        "query": "q",
        "golden_result_list": [{"golden_result": "It is sunny today"}, {"golden_result": "今天晴天"}],
        "prompt_input": {"ReACT": "C1 react", "AutoGPT": "C1 autogpt", "ToolLlama": "C1 tl"},
    }
    c1_pred = {
        "ReACT": "今天是晴天",
        "AutoGPT": 'web_search(query="weather")',
        "ToolLlama": '{"final_answer": "It is sunny"}',
    }
    f1 = {
        "id": "f1",
        "type": "profile",
        "query": "q",
        "prompt_input": {"prompt": "F1 profile"},
        "golden_result_list": [{"golden_result": "a helpful assistant"}],
    }
    f2 = {
        "id": "f2",
        "type": "profile",
        "query": "q",
        "prompt_input": {"prompt": "F2 profile"},
        "golden_result_list": [{"golden_result": "你好"}],
    }
    evals = [p1, p2, r1, c1, f1, f2]
    preds_by_id = {
        "p1": p1_pred,
        "p2": p2_pred,
        "r1": r1_pred,
        "c1": c1_pred,
        "f1": "a helpful bot",
        "f2": "",
    }
    preds = [{**r, "model_predict": preds_by_id[r["id"]]} for r in evals]
    return evals, preds


EXPECTED = {
    # p1: ReACT plan 1 (exact thought, tool EM), tool 1 (exact arg)
    #     KuaiAgent plan: "search weather" vs "search the weather": LCS 2, P = 1, R = 2/3 -> 0.8;
    #               tool: "Shanghai weather" vs "Beijing weather": LCS 1, P = R = 1/2 -> 0.5
    #     AutoGPT unparsable -> 0, 0.   p1 = (1.8/3, 1.5/3) = (0.6, 0.5)
    # p2: ToolLlama plan: 查询上海天气 vs 查询北京天气: LCS 查 询 天 气 = 4, P = R = 4/6 -> 2/3; tool 1
    #     ModelScope: thought "None" -> plan 0; args {} vs golden {"city"} -> tool 0.  p2 = (1/3, 1/2)
    "plan": (0.6 + 1 / 3) / 2,
    "tooluse": (0.5 + 0.5) / 2,
    # r1: KuaiAgent vs golden 1: thought rouge 0, args "weather" vs "weather today": P = 1, R = 1/2 -> 2/3,
    #     score 0.7 * 2/3 = 7/15; vs golden 2: repeats memory_last_task -> penalty -> 0.  max 7/15
    #     AutoGPT equals golden 1 exactly -> 0.3 + 0.7 = 1.   r1 = (7/15 + 1) / 2 = 11/15
    "reflextion": 11 / 15,
    # c1: ReACT 今天是晴天 vs 今天晴天 -> 6/7 (see test_rouge_l_by_hand); AutoGPT has web_search( -> 0;
    #     ToolLlama final_answer "It is sunny" vs "It is sunny today": P = 1, R = 3/4 -> 6/7.  (12/7) / 3
    "conclusion": 4 / 7,
    # f1: "a helpful bot" vs "a helpful assistant": P = R = 2/3; f2 empty prediction -> 0
    "profile": (2 / 3 + 0) / 2,
}
EXPECTED["overall"] = (
    0.25 * EXPECTED["plan"]
    + 0.35 * EXPECTED["tooluse"]
    + 0.10 * EXPECTED["reflextion"]
    + 0.20 * EXPECTED["conclusion"]
    + 0.10 * EXPECTED["profile"]
)


RESULT_LINE = (
    "plan : 46.67, tooluse : 50.00, reflextion : 73.33, conclusion : 57.14, profile : 33.33, overall : 51.26"
)


def test_tiny_benchmark():
    evals, preds = tiny_benchmark()
    scores = ks.score_benchmark(evals, preds)
    for key, value in EXPECTED.items():
        assert scores[key] == pytest.approx(value, abs=A), key
    assert scores["counts"] == {"plantooluse": 2, "reflextion": 1, "conclusion": 1, "profile": 2}
    assert ks.format_result_line(scores) == RESULT_LINE


def test_count_mismatch_is_an_error():
    evals, preds = tiny_benchmark()
    with pytest.raises(ValueError, match="profile"):
        ks.score_benchmark(evals, preds[:-1])
