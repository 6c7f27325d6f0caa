"""The prepared GPU run: what CI cannot measure, in one script that fits 10 minutes on one GPU.

    bash bench/gpu.sh [--out DIR]            # on the GPU machine (writes DIR/gpu.json + DIR/gpu.log)
    bash bench/gpu.sh --dry-run [--out DIR]  # the same code paths on CPU with a tiny model (CI)

Steps, each a child process with its own time limit, so one failure is recorded and the next
step still runs (the few minutes of device time go to measuring, not to debugging):
  prepare   a LLaMA-shaped model with random weights (`--preset gpu`: ~0.7 B parameters,
            24 layers, hidden 1536, 12 heads / 4 KV heads, the real LLaMA SentencePiece
            tokenizer from .cache/real_tokenizers/llama-sp when present) and a generated
            ShareGPT data set, saved in bf16;
  full_ft   our train command, full fine-tuning in bf16 with --packing (varlen sdpa: sdpa picks
            its flash kernel on CUDA for bf16): tokens/s, MFU (against the peak in
            camel_chat.train.run.PEAK_FLOPS, 989 TFLOP/s dense bf16 for H100/H200), peak memory;
  lora      train_qlora --bits 16 (LoRA r=16) on the same model and data;
  fsdp      the train command under torchrun with FSDP2 (configs/fsdp_full_shard.json), 1 process;
  deepspeed the train command under torchrun with ZeRO-3 (configs/ds_zero3.json), where the
            deepspeed package is importable (recorded as skipped, with the reason, where not);
  serve     bench/serving.py on the full_ft checkpoint (API -> controller -> worker vs the
            engine in-process) at 1 and 16 clients.
The JSON holds the environment (GPU, torch, transformers), each step's status, time, command,
figures and, for a failure, the tail of its log.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
LLAMA_SP = REPO / ".cache" / "real_tokenizers" / "llama-sp"
WORDS = (
    "camel agent task plan tool answer model data train serve token batch user reply value "
    "system role code science water energy garden history robot poem bread chess language"
).split()

# Model shape, data size and step counts per preset: `gpu` sized for an H100/H200 in minutes,
# `dry` for 2 CPU cores in seconds (same code paths, numbers meaningless).
PRESETS: dict[str, dict[str, Any]] = {
    "gpu": {
        "model": {"hidden_size": 1536, "intermediate_size": 4096, "num_hidden_layers": 24},
        "heads": (12, 4),
        "conversations": 2400,
        "max_length": 2048,
        "batch": 8,
        "steps": {"full_ft": 30, "lora": 15, "fsdp": 10, "deepspeed": 10},
        "serve": ["--clients", "1,16", "--requests", "32", "--rounds", "1", "--max-tokens", "64"],
        "timeout": {"full_ft": 150, "lora": 90, "fsdp": 90, "deepspeed": 90, "serve": 150},
    },
    "dry": {
        "model": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2},
        "heads": (4, 2),
        "conversations": 40,
        "max_length": 256,
        "batch": 2,
        "steps": {"full_ft": 2, "lora": 2, "fsdp": 2, "deepspeed": 2},
        "serve": ["--clients", "1,2", "--requests", "2", "--rounds", "1", "--max-tokens", "8"],
        "timeout": {"full_ft": 180, "lora": 180, "fsdp": 180, "deepspeed": 300, "serve": 240},
    },
}


def _tokenizer() -> tuple[Any, str]:
    """The real LLaMA tokenizer where tools/real_tokenizers.py put it, else our tiny one."""
    from transformers import AutoTokenizer

    from camel_chat.model.tiny import build_tiny_tokenizer

    if (LLAMA_SP / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(LLAMA_SP), "llama-sp (32k SentencePiece)"
    return build_tiny_tokenizer(), "tiny byte-level BPE (llama-sp not found)"


def prepare(out: Path, preset: dict[str, Any]) -> dict[str, Any]:
    """Write the random-weight model (bf16 safetensors) and the ShareGPT data set."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer, tokenizer_name = _tokenizer()
    heads, kv_heads = preset["heads"]
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max(4096, preset["max_length"]),
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **preset["model"],
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model_dir = out / "model"
    model.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.model_max_length = config.max_position_embeddings
    tokenizer.save_pretrained(model_dir)

    rng = random.Random(0)

    def turn() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 160)))

    records = [
        {
            "id": f"gpu-bench-{i}",
            "conversations": [
                {"from": speaker, "value": turn()}
                for _ in range(rng.randint(1, 4))
                for speaker in ("human", "gpt")
            ],
        }
        for i in range(preset["conversations"])
    ]
    (out / "data.json").write_text(json.dumps(records), encoding="utf-8")
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "tokenizer": tokenizer_name,
        "config": {k: getattr(config, k) for k in ("hidden_size", "num_hidden_layers", "vocab_size")},
        "conversations": len(records),
    }


def train_argv(out: Path, name: str, preset: dict[str, Any], dry: bool) -> list[str]:
    """Our train command's flags for one training step of the run."""
    argv = [
        *("--model_name_or_path", str(out / "model"), "--data_path", str(out / "data.json")),
        *("--output_dir", str(out / name), "--max_steps", str(preset["steps"][name])),
        *(
            "--per_device_train_batch_size",
            str(preset["batch"]),
            "--model_max_length",
            str(preset["max_length"]),
        ),
        *("--packing", "True", "--learning_rate", "1e-5", "--logging_steps", "1", "--save_strategy", "no"),
        *("--report_to", "none", "--disable_tqdm", "True", "--eval_ratio", "0", "--template", "vicuna_v1.1"),
        *("--dataloader_num_workers", "0", "--seed", "0"),
    ]
    argv += ["--use_cpu", "True", "--bf16", "False"] if dry else ["--bf16", "True"]
    if name == "lora":
        argv += ["--bits", "16", "--lora_r", "16", "--gradient_checkpointing", "False"]
    elif name == "fsdp":
        argv += [
            "--fsdp",
            "full_shard auto_wrap",
            "--fsdp_config",
            str(REPO / "configs" / "fsdp_full_shard.json"),
        ]
    elif name == "deepspeed":
        argv += ["--deepspeed", str(REPO / "configs" / "ds_zero3.json")]
    return argv


def child(kind: str, argv: list[str], peak_file: Path) -> int:
    """Run our train command in this process, then record the device's peak memory."""
    import torch

    from camel_chat.train.run import main as run_main

    code = run_main(argv, qlora=kind == "qlora")
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    if int(os.environ.get("RANK", "0")) == 0:
        peak_file.write_text(json.dumps({"peak_memory_bytes": peak}))
    return code


def train_figures(out_dir: Path, peak_file: Path) -> dict[str, Any]:
    """Tokens/s and MFU from the run's log history (the first logged step, warm-up, left out)."""
    history = json.loads((out_dir / "trainer_state.json").read_text())["log_history"]
    steps = [h for h in history if "tokens_per_second" in h]
    timed = steps[1:] or steps
    figures: dict[str, Any] = {
        "logged_steps": len(steps),
        "final_loss": steps[-1]["loss"] if steps else None,
        "tokens_per_second": sum(h["tokens_per_second"] for h in timed) / len(timed) if timed else None,
    }
    if timed and all("mfu" in h for h in timed):
        figures["mfu"] = sum(h["mfu"] for h in timed) / len(timed)
    if peak_file.is_file():
        figures.update(json.loads(peak_file.read_text()))
    return figures


def run_step(cmd: list[str], timeout: float, log: Path, env: dict[str, str]) -> tuple[str, float, str]:
    """Run one child command, appending its output to the log; (status, seconds, log tail)."""
    start = time.perf_counter()
    with log.open("a", encoding="utf-8") as sink:
        sink.write(f"\n$ {shlex.join(cmd)}\n")
        sink.flush()
        try:
            proc = subprocess.run(
                cmd, stdout=sink, stderr=subprocess.STDOUT, timeout=timeout, env=env, cwd=REPO
            )
            status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
        except subprocess.TimeoutExpired:
            status = f"timed out after {timeout:.0f} s"
    tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:])
    return status, time.perf_counter() - start, tail


def environment() -> dict[str, Any]:
    import torch
    import transformers

    cuda = torch.cuda.is_available()
    return {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "flash_sdp_enabled": bool(cuda and torch.backends.cuda.flash_sdp_enabled()),
        "deepspeed": importlib.util.find_spec("deepspeed") is not None,
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny model, same code paths")
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default $OUT or bench_out/gpu)"
    )
    parser.add_argument("--only", default="", help="comma-separated steps to run (default: all)")
    parser.add_argument("--child", choices=("train", "qlora"), help=argparse.SUPPRESS)
    parser.add_argument("--peak-file", type=Path, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    sys.path.insert(0, str(REPO))
    if args.child:
        return child(args.child, [a for a in rest if a != "--"], args.peak_file)

    out = (args.out or Path(os.environ.get("OUT") or REPO / "bench_out" / "gpu")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    preset = PRESETS["dry" if args.dry_run else "gpu"]
    log, result_file = out / "gpu.log", out / "gpu.json"
    log.write_text("", encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "true", "PYTHONPATH": str(REPO)}
    if args.dry_run:
        env["DS_ACCELERATOR"] = "cpu"
    if not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            parser.error("no CUDA device: run with --dry-run on a machine without a GPU")
    result: dict[str, Any] = {"dry_run": args.dry_run, "environment": environment(), "steps": {}}
    only = {s for s in args.only.split(",") if s}

    def record(name: str, entry: dict[str, Any]) -> None:
        result["steps"][name] = entry
        result_file.write_text(json.dumps(result, indent=2) + "\n")  # kept current: a kill loses nothing
        figures = entry.get("figures", {})
        shown = {k: v for k, v in figures.items() if not isinstance(v, (list, dict))}  # serve: its ratios
        print(f"{name}: {entry.get('status')} {json.dumps(shown)}", flush=True)

    start = time.perf_counter()
    record(
        "prepare", {"status": "ok", "figures": prepare(out, preset), "seconds": time.perf_counter() - start}
    )
    python = sys.executable
    torchrun = [python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
    for name in ("full_ft", "lora", "fsdp", "deepspeed"):
        if only and name not in only:
            continue
        if name == "deepspeed" and not result["environment"]["deepspeed"]:
            record(name, {"status": "skipped: the deepspeed package is not installed"})
            continue
        peak = out / f"{name}.peak.json"
        launcher = torchrun if name in ("fsdp", "deepspeed") else [python]
        kind = "qlora" if name == "lora" else "train"
        cmd = [*launcher, str(Path(__file__)), "--child", kind, "--peak-file", str(peak), "--"]
        cmd += train_argv(out, name, preset, args.dry_run)
        status, seconds, tail = run_step(cmd, preset["timeout"][name], log, env)
        entry: dict[str, Any] = {"status": status, "seconds": round(seconds, 1), "command": shlex.join(cmd)}
        if status == "ok":
            entry["figures"] = train_figures(out / name, peak)
        else:
            entry["log_tail"] = tail
        record(name, entry)

    if not only or "serve" in only:
        serve_json = out / "serve.json"
        cmd = [python, str(REPO / "bench" / "serving.py"), "--model-path", str(out / "full_ft")]
        cmd += ["--device", "cpu" if args.dry_run else "cuda", *preset["serve"], "--json", str(serve_json)]
        status, seconds, tail = run_step(cmd, preset["timeout"]["serve"], log, env)
        entry = {"status": status, "seconds": round(seconds, 1), "command": shlex.join(cmd)}
        if status == "ok":
            entry["figures"] = json.loads(serve_json.read_text())
        else:
            entry["log_tail"] = tail
        record("serve", entry)
    result["seconds"] = round(time.perf_counter() - start, 1)
    result_file.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {result_file} and {log} in {result['seconds']} s", flush=True)
    failed = [n for n, e in result["steps"].items() if not str(e["status"]).startswith(("ok", "skipped"))]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
