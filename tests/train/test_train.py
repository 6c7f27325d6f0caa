"""`train` and `train_qlora` end to end on the tiny models: full fine-tuning, LoRA with packing,
QLoRA (4-bit nf4 on CPU), the saved checkpoint, the flags (seed spellings, --config YAML), and
bad input refused with a message naming the flag or file before any model is loaded.

Runs are 3-4 optimizer steps on ~30 short conversations, on one CPU thread (the tiny model is
fastest that way and does not stall when other jobs share the CPU). Two tests start the
commands as a user would (`python -m ...`, and by path); the others call `run` in-process.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sample_conversations import random_conversation

from camel_chat.conversation import Conversation, to_sharegpt
from camel_chat.errors import CamelChatError, DataError
from camel_chat.templates import SpecialTokens, get_template, render_text

REPO = Path(__file__).resolve().parents[2]
BAD_RECORD = {"id": "bad-1", "conversations": [{"from": "gpt", "value": "no question came first"}]}
CONVERSATION = Conversation.of(
    ("user", "Hello there"),
    ("assistant", "Hi! How can I help?"),
    ("user", "Write a poem"),
    ("assistant", "Roses."),
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(5)
    records = [to_sharegpt(random_conversation(rng)) for _ in range(30)] + [BAD_RECORD]
    path = tmp_path_factory.mktemp("train-data") / "data.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def _argv(model_dir: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        *("--model_name_or_path", str(model_dir), "--data_path", str(data), "--output_dir", str(out)),
        *("--max_steps", "4", "--per_device_train_batch_size", "4", "--learning_rate", "1e-3"),
        *("--model_max_length", "128", "--use_cpu", "True", "--report_to", "none", "--logging_steps", "1"),
        *("--save_strategy", "no", "--disable_tqdm", "True", "--dataloader_num_workers", "0"),
        *extra,
    ]


def _train(model_dir: Path, data: Path, out: Path, *extra: str, qlora: bool = False) -> Path:
    from camel_chat.train.args import parse_args
    from camel_chat.train.run import run

    return run(parse_args(_argv(model_dir, data, out, *extra), qlora=qlora))


def _history(out: Path) -> list[dict[str, Any]]:
    return json.loads((out / "trainer_state.json").read_text())["log_history"]


def _messages(conv: Conversation) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in conv.messages]


def _assert_template_travels(out: Path, template_name: str, end_of_turn_id: int) -> None:
    """The saved tokenizer renders what we train on; generation stops at the end of turn; pad ≠ EOS."""
    from transformers import AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(out)
    template = get_template(template_name)
    special = SpecialTokens.of(tokenizer)
    assert tokenizer.apply_chat_template(_messages(CONVERSATION), tokenize=False) == render_text(
        template, CONVERSATION, special=special
    )
    prompt = Conversation.of(*[(m.role, m.content) for m in CONVERSATION.messages[:3]])
    assert tokenizer.apply_chat_template(
        _messages(prompt), tokenize=False, add_generation_prompt=True
    ) == render_text(template, prompt, add_generation_prompt=True, special=special)
    generation = GenerationConfig.from_pretrained(out)
    assert end_of_turn_id in generation.eos_token_id
    assert generation.pad_token_id == tokenizer.pad_token_id != tokenizer.eos_token_id
    assert json.loads((out / "camel_chat.json").read_text())["template"] == template_name


def test_full_finetune_saves_a_standard_self_describing_checkpoint(
    tiny_llama_dir: Path, data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    out = _train(
        tiny_llama_dir, data_file, tmp_path / "out", "--eval_ratio", "0.1", "--eval_strategy", "steps",
        "--eval_steps", "2", "--debug_render", "True",
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "#train 27, #eval 4 conversations" in printed
    # Counts come before training: the bad record by rule and name, samples truncated or left untrainable.
    assert "must-start-with-user  (e.g. record 17 (bad-1) message 0)" in printed
    assert printed.index("truncated") < printed.index("'loss'")
    assert "«" in printed  # --debug_render marks the trained spans

    history = _history(out)
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    assert all(math.isfinite(entry["eval_loss"]) for entry in history if "eval_loss" in entry)
    assert sum("eval_loss" in entry for entry in history) == 2
    logged = [entry for entry in history if "loss" in entry]
    assert all(
        e["tokens_per_second"] > 0 and 0 < e["trained_tokens_per_second"] <= e["tokens_per_second"]
        for e in logged
    )

    files = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "camel_chat.json"} <= files
    assert not any(name.endswith(".bin") for name in files)
    model = AutoModelForCausalLM.from_pretrained(out)
    base = load_file(tiny_llama_dir / "model.safetensors")
    trained = model.state_dict()
    assert any(not torch.equal(base[k], trained[k]) for k in base)  # the weights did move
    _assert_template_travels(out, "vicuna_v1.1", end_of_turn_id=2)
    assert json.loads((out / "camel_chat.json").read_text())["training"] == "full"


def test_lora_with_packing_on_qwen2_with_chatml(
    tiny_qwen2_dir: Path, data_file: Path, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = _train(
        tiny_qwen2_dir, data_file, tmp_path / "out", "--bits", "16", "--lora_r", "4", "--packing", "True",
        "--template", "chatml", "--eval_ratio", "0.1", "--eval_strategy", "steps", "--eval_steps", "4",
        qlora=True,
    )  # fmt: skip
    history = _history(out)
    assert all(math.isfinite(e["loss"]) for e in history if "loss" in e)
    assert any(math.isfinite(e.get("eval_loss", math.nan)) for e in history)
    assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
    metadata = json.loads((out / "camel_chat.json").read_text())
    assert metadata["adapter"] is True and metadata["training"] == "lora" and "quantization" not in metadata
    expected = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    assert metadata["lora"]["target_modules"] == expected  # every linear layer except lm_head
    # transformers loads an adapter folder directly (base from adapter_config.json).
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.peft_config["default"].r == 4
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir)
    assert isinstance(PeftModel.from_pretrained(base, out), PeftModel)
    _assert_template_travels(out, "chatml", end_of_turn_id=5)  # <|im_end|>


def test_qlora_4bit_by_path_on_cpu(tiny_llama_dir: Path, data_file: Path, tmp_path: Path) -> None:
    """`python camel_chat/train/train_qlora.py ...` (by path, as the seed's scripts run it)."""
    out = tmp_path / "out"
    argv = _argv(tiny_llama_dir, data_file, out, "--lora_r", "4", "--double_quant", "--eval_ratio", "0")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "camel_chat" / "train" / "train_qlora.py"), *argv],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all(math.isfinite(e["loss"]) for e in _history(out) if "loss" in e)
    metadata = json.loads((out / "camel_chat.json").read_text())
    assert metadata["training"] == "qlora"
    assert metadata["quantization"] == {
        "quant_method": "bitsandbytes", "bits": 4, "quant_type": "nf4", "double_quant": True,
        "compute_dtype": "float32", "load_dtype": "float32",
    }  # fmt: skip
    assert metadata["lora"]["target_modules"] == [
        "down_proj",
        "gate_proj",
        "k_proj",
        "o_proj",
        "q_proj",
        "up_proj",
        "v_proj",
    ]
    assert "trainable params" in proc.stdout
    _assert_template_travels(out, "vicuna_v1.1", end_of_turn_id=2)


def test_module_cli_refuses_bad_input_with_one_line(tmp_path: Path, tiny_llama_dir: Path) -> None:
    missing = tmp_path / "missing.json"
    proc = subprocess.run(
        [sys.executable, "-m", "camel_chat.train.train", *_argv(tiny_llama_dir, missing, tmp_path / "o")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"error: --data_path {missing}: no such file"
    assert "Traceback" not in proc.stderr


# --- flags -----------------------------------------------------------------------------------


def test_seed_flags_and_defaults(tiny_llama_dir: Path, data_file: Path, tmp_path: Path) -> None:
    from camel_chat.train.args import parse_args

    seed_flags = (
        "--bf16", "False", "--evaluation_strategy", "steps", "--eval_steps", "1500", "--warmup_ratio", "0.04",
        "--lr_scheduler_type", "cosine", "--lazy_preprocess", "True", "--gradient_checkpointing", "True",
        "--fsdp_transformer_layer_cls_to_wrap", "LlamaDecoderLayer",
    )  # fmt: skip
    config = parse_args(["--model_name_or_path", "m", *seed_flags], qlora=False)
    training = config.training
    assert training.eval_strategy == "steps" and training.warmup_steps == 0.04
    assert training.fsdp_config["transformer_layer_cls_to_wrap"] == ["LlamaDecoderLayer"]
    assert (
        training.optim == "adamw_torch" and training.model_max_length == 512 and training.max_grad_norm == 1.0
    )
    assert config.data.lazy_preprocess and config.model.template == "vicuna_v1.1" and config.lora is None

    qlora = parse_args(["--model_name_or_path", "m", "--double_quant", "--lora_dropout", "0.05"], qlora=True)
    assert qlora.lora is not None and qlora.training.max_grad_norm == 0.3
    assert (qlora.lora.bits, qlora.lora.quant_type, qlora.lora.double_quant) == (4, "nf4", True)
    assert (qlora.lora.lora_r, qlora.lora.lora_alpha, qlora.lora.lora_dropout) == (64, 16, 0.05)
    assert qlora.lora.max_memory_MB == 80000 and qlora.training.gradient_checkpointing is True
    off = parse_args(["--model_name_or_path", "m", "--gradient_checkpointing", "False"], qlora=True)
    assert off.training.gradient_checkpointing is False


def test_config_yaml_with_command_line_overrides(tmp_path: Path) -> None:
    from camel_chat.train.args import parse_args

    config_file = tmp_path / "run.yaml"
    config_file.write_text(
        "model_name_or_path: base\ndata_path: d.json\nlearning_rate: 0.0002\nlora_r: 8\n"
        "report_to: [none]\npacking: true\ntemplate: chatml\n"
    )
    config = parse_args(["--config", str(config_file), "--lora_r", "16", "--output_dir", "o"], qlora=True)
    assert config.model.model_name_or_path == "base" and config.model.template == "chatml"
    assert config.training.learning_rate == 2e-4 and config.data.packing is True
    assert config.lora is not None and config.lora.lora_r == 16  # the command line wins
    config_file.write_text("learning_rate: 1e-3\nlora_rank: 8\n")
    with pytest.raises(CamelChatError, match=r"--config .*run.yaml: unknown field\(s\): lora_rank"):
        parse_args(["--config", str(config_file)], qlora=True)
    with pytest.raises(CamelChatError, match=r"--config .*nope.yaml: no such file"):
        parse_args(["--config", str(tmp_path / "nope.yaml")], qlora=False)


# --- bad input -------------------------------------------------------------------------------


@pytest.fixture
def no_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to load a model fails the test: bad input must be caught before."""
    import camel_chat.model.loader as loader

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a model was loaded before the bad input was noticed")

    monkeypatch.setattr(loader, "load_model", refuse)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ("--model_max_length", "4096"),
            r"--model_max_length 4096 exceeds the model's context \(max_position_embeddings=512",
        ),
        (("--template", "nope"), r"--template: unknown template 'nope'; known templates: vicuna_v1.1"),
        (
            ("--eval_data_path", "/nonexistent/eval.json"),
            r"--eval_data_path /nonexistent/eval.json: no such file",
        ),
        (("--eval_ratio", "0", "--eval_strategy", "steps"), r"--eval_strategy steps needs evaluation data"),
        (("--attn_implementation", "flash_attention_2"), r"--attn_implementation flash_attention_2"),
    ],
)
def test_bad_flags_are_refused_before_any_model_loads(
    extra: tuple[str, ...],
    message: str,
    tiny_llama_dir: Path,
    data_file: Path,
    tmp_path: Path,
    no_model_load: None,
) -> None:
    with pytest.raises(CamelChatError, match=message):
        _train(tiny_llama_dir, data_file, tmp_path / "out", *extra)


def test_missing_files_and_bad_data_are_named(
    tiny_llama_dir: Path, data_file: Path, tmp_path: Path, no_model_load: None
) -> None:
    with pytest.raises(CamelChatError, match=r"--data_path .*missing.json: no such file"):
        _train(tiny_llama_dir, tmp_path / "missing.json", tmp_path / "out")
    with pytest.raises(CamelChatError, match=r"--model_name_or_path .*no-model: no such model folder"):
        _train(tmp_path / "no-model", data_file, tmp_path / "out")
    not_a_list = tmp_path / "object.json"
    not_a_list.write_text('{"conversations": []}')
    with pytest.raises(DataError, match=r"object.json: expected a JSON array"):
        _train(tiny_llama_dir, not_a_list, tmp_path / "out")
    nothing = tmp_path / "nothing.json"
    nothing.write_text(json.dumps([BAD_RECORD, {"id": "x"}]))
    with pytest.raises(DataError, match=r"nothing.json: no conversation left to train on"):
        _train(tiny_llama_dir, nothing, tmp_path / "out", "--eval_ratio", "0")


def test_qlora_flags_need_bitsandbytes(
    tiny_llama_dir: Path,
    data_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_model_load: None,
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "bitsandbytes" else real_find_spec(name, *a),
    )
    with pytest.raises(CamelChatError, match=r"--bits 4 needs bitsandbytes, which is not installed"):
        _train(tiny_llama_dir, data_file, tmp_path / "out", qlora=True)
    with pytest.raises(CamelChatError, match=r"--bits 3: choose 4 or 8"):
        _train(tiny_llama_dir, data_file, tmp_path / "out", "--bits", "3", qlora=True)
    with pytest.raises(CamelChatError, match=r"--quant_type int4: choose nf4 or fp4"):
        _train(
            tiny_llama_dir, data_file, tmp_path / "out", "--bits", "16", "--quant_type", "int4", qlora=True
        )


def test_a_template_the_tokenizer_cannot_encode(llama_sp_tokenizer: Any) -> None:
    """ChatML's <|im_end|> is no token of the LLaMA tokenizer: the model could never learn to stop."""
    from camel_chat.train.args import check_tokenizer, parse_args

    config = parse_args(["--model_name_or_path", "m", "--template", "chatml"], qlora=False)
    with pytest.raises(CamelChatError, match=r"--template chatml: end of turn '<\|im_end\|>' is not a token"):
        check_tokenizer(config, llama_sp_tokenizer)
    check_tokenizer(parse_args(["--model_name_or_path", "m"], qlora=False), llama_sp_tokenizer)


def test_lora_targets_every_linear_layer_but_the_head(tiny_llama_dir: Path) -> None:
    from camel_chat.model.loader import load_model
    from camel_chat.train.run import lora_target_modules

    model = load_model(tiny_llama_dir, bits=4)
    assert lora_target_modules(model) == [
        "down_proj",
        "gate_proj",
        "k_proj",
        "o_proj",
        "q_proj",
        "up_proj",
        "v_proj",
    ]


def test_throughput_is_counted_from_training_batches_only(tiny_llama_dir: Path) -> None:
    from types import SimpleNamespace

    import torch
    from transformers import TrainerControl, TrainerState

    from camel_chat.model.loader import load_model
    from camel_chat.train.run import ThroughputCallback

    model = load_model(tiny_llama_dir, for_training=True)
    callback = ThroughputCallback(model, pad_token_id=3)
    callback.peak = 1e9  # as if on a GPU with a known peak
    ids = torch.tensor([[5, 6, 7, 3], [8, 9, 3, 3]])
    labels = torch.tensor([[-100, 6, 7, -100], [-100, 9, -100, -100]])
    model.train()
    model(input_ids=ids, labels=labels, attention_mask=(ids != 3).long())
    model.eval()
    model(input_ids=ids, labels=labels)  # evaluation batches are not training throughput
    assert callback.counts.tolist() == [5, 3, 2]  # real tokens, trained tokens, rows
    state = TrainerState(global_step=1, log_history=[{"loss": 1.0, "step": 1}])
    logs: dict[str, float] = {"loss": 1.0}
    args = SimpleNamespace(device=torch.device("cpu"), world_size=1)
    callback.on_log(args, state, TrainerControl(), logs=logs)
    assert logs["tokens_per_second"] / logs["trained_tokens_per_second"] == pytest.approx(5 / 3, rel=1e-9)
    assert logs["mfu"] > 0 and state.log_history[-1]["mfu"] == logs["mfu"]
    assert callback.counts.sum() == 0  # each log covers the steps since the previous one


def test_report_to_tensorboard_writes_event_files(
    tiny_llama_dir: Path, data_file: Path, tmp_path: Path
) -> None:
    _train(tiny_llama_dir, data_file, tmp_path / "tb", "--report_to", "tensorboard")
    events = list(tmp_path.rglob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)


def test_report_to_tensorboard_without_tensorboard_is_named(
    tiny_llama_dir: Path,
    data_file: Path,
    tmp_path: Path,
    no_model_load: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorboard" else real_find_spec(name, *a),
    )
    with pytest.raises(CamelChatError, match=r"--report_to tensorboard: install tensorboard"):
        _train(tiny_llama_dir, data_file, tmp_path / "out", "--report_to", "tensorboard")
