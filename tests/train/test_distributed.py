"""Distributed presets (configs/) and sharded checkpoints, tested with two CPU processes.

1. Every preset in configs/ is valid JSON with a `_comment` saying how to run it, and the
   Trainer's own parsing (`TrainingArguments(deepspeed=...)` / `fsdp_config=...`) and
   DeepSpeed's accept it; the FSDP preset wraps each decoder layer of any model.
2. DeepSpeed ZeRO-2 and ZeRO-3 through our train command under `torchrun --nproc_per_node 2`
   (gloo, DS_ACCELERATOR=cpu, the Trainer's torch AdamW so the only JIT-built op is
   DeepSpeed's shm_comm, cached in <repo>/.cache/torch_extensions): 4 steps with checkpoints
   at 2 and 4; a second run given only checkpoint-2 resumes and ends with the same weights;
   the ZeRO checkpoint, consolidated by `python -m camel_chat.train.consolidate`, loads with
   AutoModelForCausalLM and gives the logits of the run's own final save.
3. FSDP: the Trainer's FSDP does not run on CPU, so torch's FSDP2 (`fully_shard`) runs in two
   processes with exactly what accelerate does with our preset (its wrap policy, activation
   checkpointing and sharding, from our fsdp_config), saves the SHARDED_STATE_DICT checkpoint
   with accelerate's own `save_fsdp_model` (the Trainer's layout), and the consolidated
   checkpoint equals the full state dict gathered from the live model. The Trainer-FSDP run
   itself is a `gpu` test.

This file is also the FSDP2 worker: `torchrun ... tests/train/test_distributed.py fsdp2 ...`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
PRESETS = sorted(CONFIGS.glob("*.json"))
FSDP_PRESET = CONFIGS / "fsdp_full_shard.json"
STEPS, SAVE = 4, 2
TOLERANCE = 1e-6
TIMEOUT = 420


# --- 1. presets ------------------------------------------------------------------------------


def test_the_presets_named_by_the_scripts_exist() -> None:
    names = {path.name for path in PRESETS}
    for name in ("fsdp_full_shard.json", "ds_zero3_offload.json", "ds_zero2.json", "ds_zero3.json"):
        assert name in names


@pytest.mark.parametrize("preset", PRESETS, ids=[path.name for path in PRESETS])
def test_every_preset_loads_and_the_trainer_accepts_it(preset: Path, tmp_path: Path) -> None:
    from transformers import TrainingArguments

    data = json.loads(preset.read_text(encoding="utf-8"))
    comment = data.get("_comment")
    assert isinstance(comment, str) and f"configs/{preset.name}" in comment, "no usage comment"
    if "zero_optimization" in data:
        args = TrainingArguments(output_dir=str(tmp_path), deepspeed=str(preset), use_cpu=True, report_to=[])
        filled = args.hf_deepspeed_config.config
        # The Trainer filled its values and kept (ignored) the comment.
        assert filled["train_micro_batch_size_per_gpu"] == args.per_device_train_batch_size
        assert filled["_comment"] == comment
        # Without train_batch_size DeepSpeed derives it from its own world size (see _comment).
        assert "train_batch_size" not in data
        _deepspeed_accepts(filled, tmp_path)
    else:
        args = TrainingArguments(
            output_dir=str(tmp_path), fsdp=True, fsdp_config=str(preset), use_cpu=True, report_to=[]
        )
        assert args.fsdp_plugin_args["fsdp_version"] == 2
        from accelerate.utils import FullyShardedDataParallelPlugin

        FullyShardedDataParallelPlugin(**args.fsdp_plugin_args)


def _deepspeed_accepts(config: dict[str, Any], tmp_path: Path) -> None:
    """DeepSpeed's own parser reads the config (with the Trainer's values put in its `auto`s)."""
    from deepspeed.runtime.config import DeepSpeedConfig

    filled = json.loads(json.dumps(config))
    zero = filled["zero_optimization"]
    for key in ("reduce_bucket_size", "stage3_prefetch_bucket_size", "stage3_param_persistence_threshold"):
        if zero.get(key) == "auto":
            zero[key] = 4096
    for section in ("scheduler",):
        for key, value in filled.get(section, {}).get("params", {}).items():
            if value == "auto":
                filled[section]["params"][key] = 10
    filled["train_batch_size"] = filled["train_micro_batch_size_per_gpu"]
    parsed = DeepSpeedConfig(filled)
    assert parsed.zero_optimization_stage == zero["stage"]


def test_the_presets_say_what_the_issue_asks() -> None:
    from transformers import TrainingArguments

    def load(name: str) -> dict[str, Any]:
        return json.loads((CONFIGS / name).read_text(encoding="utf-8"))

    zero2, zero3, offload = load("ds_zero2.json"), load("ds_zero3.json"), load("ds_zero3_offload.json")
    assert zero2["zero_optimization"]["stage"] == 2
    assert zero3["zero_optimization"]["stage"] == 3 and "offload_param" not in zero3["zero_optimization"]
    off = offload["zero_optimization"]
    assert off["stage"] == 3
    assert off["offload_param"]["device"] == off["offload_optimizer"]["device"] == "cpu"
    for stage3 in (zero3, offload):
        assert stage3["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    for config in (zero2, zero3):  # the Trainer's torch optimizer: nothing to JIT-compile
        assert "optimizer" not in config and "scheduler" not in config
    args = TrainingArguments(output_dir="unused", fsdp=True, fsdp_config=str(FSDP_PRESET), report_to=[])
    plugin = args.fsdp_plugin_args
    assert plugin["state_dict_type"] == "SHARDED_STATE_DICT"
    assert plugin["activation_checkpointing"] is True and plugin["reshard_after_forward"] is True
    assert plugin["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert "transformer_cls_names_to_wrap" not in plugin  # taken from the model


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_the_fsdp_preset_wraps_each_decoder_layer_of_the_model(arch: str, tmp_path: Path) -> None:
    import torch
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy
    from transformers import AutoModelForCausalLM, TrainingArguments

    from camel_chat.model.tiny import build_tiny_model, build_tiny_tokenizer

    config = build_tiny_model(arch, build_tiny_tokenizer()).config
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    args = TrainingArguments(output_dir=str(tmp_path), fsdp=True, fsdp_config=str(FSDP_PRESET), report_to=[])
    policy = fsdp2_prepare_auto_wrap_policy(FullyShardedDataParallelPlugin(**args.fsdp_plugin_args), model)
    wrapped = [name for name, module in model.named_modules() if policy(module)]
    assert wrapped == [f"model.layers.{i}" for i in range(config.num_hidden_layers)]


# --- helpers for the multi-process runs --------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env() -> dict[str, str]:
    return {
        # JIT-built DeepSpeed ops (shm_comm, ~55 s the first time) are cached here across runs.
        "TORCH_EXTENSIONS_DIR": str(REPO / ".cache" / "torch_extensions"),
        **os.environ,
        "DS_ACCELERATOR": "cpu",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }


def _torchrun(*args: str, timeout: int = TIMEOUT) -> str:
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"),
        *("--master_addr", "127.0.0.1", "--master_port", str(_free_port())),
        *args,
    ]
    proc = subprocess.run(
        command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    return output


def _weights(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def _assert_same(expected: dict[str, Any], got: dict[str, Any], tolerance: float = TOLERANCE) -> None:
    assert expected.keys() == got.keys() and expected
    for key, tensor in expected.items():
        diff = (tensor.float() - got[key].float()).abs().max().item()
        assert diff <= tolerance, (key, diff)


def _logits(folder: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = torch.tensor([[1, 5, 17, 42, 99, 7, 300, 2]])
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sample_conversations import random_conversation

    from camel_chat.conversation import to_sharegpt

    rng = random.Random(3)
    records = [to_sharegpt(random_conversation(rng)) for _ in range(40)]
    path = tmp_path_factory.mktemp("distributed-data") / "data.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def _train_argv(model_dir: Path, data: Path, out: Path, *extra: str, cpu: bool = True) -> list[str]:
    return [
        *("-m", "camel_chat.train.train"),
        *("--model_name_or_path", str(model_dir), "--data_path", str(data), "--output_dir", str(out)),
        *("--max_steps", str(STEPS), "--save_strategy", "steps", "--save_steps", str(SAVE)),
        *("--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2"),
        *("--learning_rate", "3e-3", "--lr_scheduler_type", "cosine", "--warmup_steps", "1"),
        *("--model_max_length", "96", "--use_cpu", str(cpu), "--report_to", "none", "--seed", "7"),
        *("--logging_steps", "1", "--disable_tqdm", "True", "--eval_ratio", "0"),
        *("--dataloader_num_workers", "0"),
        *extra,
    ]


# --- 2. DeepSpeed ZeRO-2 / ZeRO-3 through the train command --------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["ds_zero2", "ds_zero3"])
def test_deepspeed_two_processes_train_resume_and_consolidate(
    preset: str, tiny_llama_dir: Path, data_file: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    from camel_chat.model.checkpoint import read_template_name
    from camel_chat.train.consolidate import consolidate, consolidate_final_save

    deepspeed = ("--deepspeed", f"configs/{preset}.json")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    log = _torchrun(*_train_argv(tiny_llama_dir, data_file, straight, *deepspeed))
    assert "DeepSpeed" in log
    last = straight / f"checkpoint-{STEPS}"
    # Two data-parallel ranks, each holding its own shard of the optimizer state.
    for rank in (0, 1):
        assert (last / f"global_step{STEPS}" / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt").is_file()
    assert (straight / "model.safetensors").is_file()  # the final save gathered the weights

    # A second run that finds only checkpoint-2 resumes from it and ends where the first did.
    shutil.copytree(straight / f"checkpoint-{SAVE}", resumed / f"checkpoint-{SAVE}")
    log = _torchrun(*_train_argv(tiny_llama_dir, data_file, resumed, *deepspeed))
    assert f"resuming from {resumed / f'checkpoint-{SAVE}'}" in log
    _assert_same(_weights(straight), _weights(resumed))
    assert read_template_name(resumed) == "vicuna_v1.1"

    # The ZeRO shards (fp32 master weights) → a standard checkpoint with the final save's logits.
    merged = tmp_path / "merged"
    checkpoint = resumed / f"checkpoint-{STEPS}"
    if preset == "ds_zero3":
        proc = subprocess.run(
            [
                *(sys.executable, "-m", "camel_chat.train.consolidate"),
                *("--checkpoint", str(checkpoint), "--output", str(merged)),
            ],
            cwd=REPO,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert "zero stage ZeroStageEnum.weights, world_size: 2" in proc.stdout + proc.stderr  # ZeRO-3
    else:
        consolidate(checkpoint, merged)
    live = _logits(resumed)
    got = _logits(merged)
    assert (live - got).abs().max().item() <= TOLERANCE
    assert read_template_name(merged) == "vicuna_v1.1"  # found in the run's camel_chat.json
    assert "USER:" in AutoTokenizer.from_pretrained(merged).chat_template
    metadata = json.loads((merged / "camel_chat.json").read_text())
    assert metadata["consolidated_from"]["format"] == "deepspeed"
    assert metadata["base_model"] == str(tiny_llama_dir)

    # The training hook: a ZeRO checkpoint left without gathered weights gets model.safetensors.
    ungathered = tmp_path / "ungathered"
    shutil.copytree(checkpoint, ungathered)
    (ungathered / "model.safetensors").unlink()
    trainer = _deepspeed_trainer_stub(merged)  # the live model stands in for its config
    assert consolidate_final_save(trainer, ungathered)
    _assert_same(_weights(merged), _weights(ungathered))


def _deepspeed_trainer_stub(model_dir: Path) -> Any:
    """What `consolidate_final_save` uses of a Trainer that ran under DeepSpeed, on one process."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    accelerator = SimpleNamespace(
        state=SimpleNamespace(fsdp_plugin=None),
        unwrap_model=lambda m: m,
        wait_for_everyone=lambda: None,
    )
    return SimpleNamespace(
        accelerator=accelerator,
        model=model,
        is_deepspeed_enabled=True,
        is_fsdp_enabled=False,
        is_world_process_zero=lambda: True,
    )


# --- 3. FSDP2 on CPU with our preset ------------------------------------------------------------


@pytest.mark.slow
def test_fsdp2_sharded_checkpoint_consolidates_to_the_full_state_dict(
    tiny_llama_dir: Path, tiny_qwen2_dir: Path, tmp_path: Path
) -> None:
    import torch

    from camel_chat.train.consolidate import main

    variants = {"llama": tiny_llama_dir, "qwen2": tiny_qwen2_dir, "llama-lora": tiny_llama_dir}
    spec = ",".join(f"{name}={path}" for name, path in variants.items())
    _torchrun(str(Path(__file__)), "fsdp2", str(tmp_path), spec)

    for name, model_dir in variants.items():
        folder = tmp_path / name
        wrapped = json.loads((folder / "wrapped.json").read_text())
        layers = json.loads((model_dir / "config.json").read_text())["num_hidden_layers"]
        assert wrapped == [f"model.layers.{i}" for i in range(layers)] or wrapped == [
            f"base_model.model.model.layers.{i}" for i in range(layers)
        ]
        if name.endswith("lora"):
            # A LoRA model under sharded FSDP is refused by the final-save hook, on both ranks.
            for rank in (0, 1):
                assert "configs/ds_zero2.json" in (folder / f"refused-{rank}.txt").read_text()
            continue
        checkpoint = folder / "checkpoint-3"
        assert (checkpoint / "pytorch_model_fsdp_0" / ".metadata").is_file()
        assert len(list((checkpoint / "pytorch_model_fsdp_0").glob("*.distcp"))) == 2  # one per rank
        reference = torch.load(folder / "reference.pt", weights_only=True)
        final = folder / "final"
        assert not (final / "pytorch_model_fsdp_0").exists()  # the hook removed its shards
        initial = _weights(model_dir)
        assert any((initial[k] - reference[k]).abs().max() > 0 for k in initial)  # it did train
        _assert_same(reference, _weights(final))  # the training hook's consolidation
        out = tmp_path / f"{name}-merged"
        args = ["--checkpoint", str(checkpoint), "--output", str(out), "--base", str(model_dir)]
        assert main(args) == 2  # no camel_chat.json anywhere: the template must be given
        assert main([*args, "--template", "vicuna_v1.1"]) == 0
        _assert_same(reference, _weights(out))
        assert (_logits(out) - _logits(final)).abs().max().item() <= TOLERANCE
        assert json.loads((out / "camel_chat.json").read_text())["template"] == "vicuna_v1.1"
        assert main([*args, "--template", "vicuna_v1.1"]) == 2  # not empty without --force
        assert main([*args, "--template", "vicuna_v1.1", "--dtype", "bfloat16", "--force"]) == 0
        assert {t.dtype for t in _weights(out).values()} == {torch.bfloat16}


def _write_dcp(state_dict: dict[str, Any], checkpoint: Path) -> None:
    """A one-process DCP checkpoint in the Trainer's FSDP layout: {"model": state_dict}."""
    import torch.distributed.checkpoint as dcp

    writer = dcp.FileSystemWriter(str(checkpoint / "pytorch_model_fsdp_0"))
    dcp.save({"model": state_dict}, storage_writer=writer, no_dist=True)


def test_consolidate_follows_resized_embeddings_and_wrapper_names(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    """A pad token added in training grew the embeddings past the base config's vocab_size;
    activation checkpointing left its wrapper in the names. Both come out as a plain model."""
    import torch
    from transformers import AutoModelForCausalLM

    from camel_chat.train.consolidate import main

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    model.resize_token_embeddings(1008, mean_resizing=False)
    state_dict = {
        name.replace("layers.0.", "layers.0._checkpoint_wrapped_module."): tensor.clone()
        for name, tensor in model.state_dict().items()
    }
    _write_dcp(state_dict, tmp_path / "checkpoint-7")
    out = tmp_path / "out"
    argv = ["--checkpoint", str(tmp_path / "checkpoint-7"), "--output", str(out)]
    assert main([*argv, "--base", str(tiny_llama_dir), "--template", "chatml"]) == 0
    assert json.loads((out / "config.json").read_text())["vocab_size"] == 1008
    _assert_same(dict(model.state_dict()), _weights(out))
    assert json.loads((out / "camel_chat.json").read_text())["template"] == "chatml"
    assert "<|im_start|>" in (out / "chat_template.jinja").read_text()

    lora = {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(4, 64)}
    _write_dcp(lora, tmp_path / "checkpoint-8")
    argv = ["--checkpoint", str(tmp_path / "checkpoint-8"), "--output", str(tmp_path / "lora")]
    assert main([*argv, "--base", str(tiny_llama_dir), "--template", "chatml"]) == 2


def test_consolidate_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    from camel_chat.train.consolidate import main

    (tmp_path / "empty").mkdir()
    assert main(["--checkpoint", str(tmp_path / "missing"), "--output", str(tmp_path / "o")]) == 2
    assert main(["--checkpoint", str(tmp_path / "empty"), "--output", str(tmp_path / "o")]) == 2


# --- the Trainer's FSDP (needs CUDA) ---------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.slow
def test_trainer_fsdp_preset_trains_resumes_and_consolidates(
    tiny_llama_dir: Path, data_file: Path, tmp_path: Path
) -> None:
    import torch

    from camel_chat.train.consolidate import main

    nproc = str(min(2, torch.cuda.device_count()))
    fsdp = ("--fsdp", "--fsdp_config", str(FSDP_PRESET), "--bf16", "True")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"

    def run(out: Path) -> str:
        argv = _train_argv(tiny_llama_dir, data_file, out, *fsdp, cpu=False)
        command = [
            *(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", nproc),
            *("--master_port", str(_free_port())),
            *argv,
        ]
        env = {k: v for k, v in _env().items() if k != "DS_ACCELERATOR"}
        proc = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
        return proc.stdout + proc.stderr

    run(straight)
    checkpoint = straight / f"checkpoint-{STEPS}"
    assert (checkpoint / "pytorch_model_fsdp_0" / ".metadata").is_file()
    assert (straight / "model.safetensors").is_file(), "the final save must consolidate the shards"
    shutil.copytree(straight / f"checkpoint-{SAVE}", resumed / f"checkpoint-{SAVE}")
    assert "resuming from" in run(resumed)
    # bf16 compute and CUDA's non-deterministic kernels (embedding backward): close, not equal.
    _assert_same(_weights(straight), _weights(resumed), tolerance=1e-3)
    merged = tmp_path / "merged"
    assert main(["--checkpoint", str(checkpoint), "--output", str(merged)]) == 0
    _assert_same(_weights(straight), _weights(merged))


# --- the FSDP2 worker (run by torchrun, not by pytest) ----------------------------------------------


def _fsdp2_worker(out_root: Path, spec: str) -> None:
    """For each name=model_dir: shard with our preset as accelerate does, train 3 steps, save the
    checkpoint as the Trainer does, gather the full state dict, and run the final-save hook."""
    import torch
    import torch.distributed as dist
    from accelerate.utils import FullyShardedDataParallelPlugin, save_fsdp_model
    from accelerate.utils.fsdp_utils import fsdp2_apply_ac, fsdp2_prepare_model
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import FSDPModule
    from transformers import AutoModelForCausalLM, TrainingArguments

    from camel_chat.errors import CamelChatError
    from camel_chat.train.consolidate import consolidate_final_save

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    args = TrainingArguments(
        output_dir=str(out_root / "unused"), fsdp=True, fsdp_config=str(FSDP_PRESET), report_to=[]
    )
    for item in spec.split(","):
        name, model_dir = item.split("=", 1)
        folder = out_root / name
        plugin = FullyShardedDataParallelPlugin(**args.fsdp_plugin_args)
        accelerator = SimpleNamespace(
            state=SimpleNamespace(fsdp_plugin=plugin),
            torch_device_mesh=None,
            parallelism_config=None,
            mixed_precision="no",  # bf16 needs a GPU; the wrapping and the state dict are the same
            is_main_process=rank == 0,
            device=torch.device("cpu"),
            process_index=rank,
            num_processes=dist.get_world_size(),
            wait_for_everyone=dist.barrier,
            unwrap_model=lambda m: m,
        )
        torch.manual_seed(0)
        model: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        if name.endswith("lora"):
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
            model = get_peft_model(model, lora)
        if plugin.activation_checkpointing:
            model = fsdp2_apply_ac(accelerator, model)
        model = fsdp2_prepare_model(accelerator, model)
        model.train()
        wrapped = [
            n.replace("._checkpoint_wrapped_module", "")
            for n, m in model.named_modules()
            if isinstance(m, FSDPModule) and "layers." in n and n.rsplit(".", 1)[-1].isdigit()
        ]
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        generator = torch.Generator().manual_seed(100 + rank)  # each rank its own batch
        for _ in range(3):
            ids = torch.randint(8, 1000, (2, 16), generator=generator)
            model(input_ids=ids, labels=ids).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        folder.mkdir(parents=True, exist_ok=True)
        if rank == 0:
            (folder / "wrapped.json").write_text(json.dumps(wrapped))
        trainer = SimpleNamespace(
            accelerator=accelerator,
            model=model,
            is_fsdp_enabled=True,
            is_deepspeed_enabled=False,
            is_world_process_zero=lambda: rank == 0,
        )
        if name.endswith("lora"):
            try:
                consolidate_final_save(trainer, folder / "final")
            except CamelChatError as exc:  # on every rank, before any collective
                (folder / f"refused-{rank}.txt").write_text(str(exc))
            continue
        # The Trainer's checkpoint call (adapter_only is what it passes), then the full gather.
        checkpoint = folder / "checkpoint-3"
        save_fsdp_model(plugin, accelerator, model, str(checkpoint), adapter_only=True)
        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if rank == 0:
            torch.save(full, folder / "reference.pt")
        assert consolidate_final_save(trainer, folder / "final")
    dist.destroy_process_group()


if __name__ == "__main__" and sys.argv[1:2] == ["fsdp2"]:
    _fsdp2_worker(Path(sys.argv[2]), sys.argv[3])
