"""True resume: a run stopped after step 3 and resumed ends with the same weights as an uninterrupted run.

The interrupted run is stopped by a callback that asks the Trainer to save a checkpoint and
stop (what a kill right after a save leaves behind: `checkpoint-3` with weights or adapter,
optimizer, scheduler, RNG states and trainer state); one more test really kills a training
process (`os._exit` right after the save) and resumes with a fresh one. Calling `run` again
on the same --output_dir resumes from the checkpoint with the Trainer's own machinery. Any
part not restored shows up in the final weights: the optimizer moments, the cosine
schedule's position, the data order (the sampler must skip the batches already seen), the
dropout RNG (LoRA dropout 0.1 here). Full, LoRA and QLoRA (4-bit nf4 on CPU) runs are
compared; on CPU all three are bit-for-bit deterministic, so the check is exact up to 1e-6
as the issue allows.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from sample_conversations import random_conversation

from camel_chat.conversation import to_sharegpt

STEPS, STOP = 6, 3
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(3)
    records = [to_sharegpt(random_conversation(rng)) for _ in range(30)]
    path = tmp_path_factory.mktemp("resume-data") / "data.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def _argv(model_dir: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        *("--model_name_or_path", str(model_dir), "--data_path", str(data), "--output_dir", str(out)),
        *(
            "--max_steps",
            str(STEPS),
            "--per_device_train_batch_size",
            "2",
            "--gradient_accumulation_steps",
            "2",
        ),
        *("--learning_rate", "3e-3", "--lr_scheduler_type", "cosine", "--warmup_steps", "2"),
        *("--model_max_length", "96", "--use_cpu", "True", "--report_to", "none", "--seed", "7"),
        *("--save_strategy", "no", "--logging_steps", "1", "--disable_tqdm", "True"),
        *("--dataloader_num_workers", "0", "--eval_ratio", "0"),
        *extra,
    ]


def _stop_after(step: int) -> Any:
    from transformers import TrainerCallback

    class StopAfter(TrainerCallback):
        """Save a checkpoint at `step` and stop, as if the job were killed right after it."""

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == step:
                control.should_save = True
                control.should_training_stop = True

    return StopAfter()


def _weights(out: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    name = (
        "adapter_model.safetensors" if (out / "adapter_model.safetensors").is_file() else "model.safetensors"
    )
    return load_file(out / name)


def _losses(out: Path) -> dict[int, float]:
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return {entry["step"]: entry["loss"] for entry in history if "loss" in entry}


@pytest.mark.parametrize(
    ("qlora", "extra"),
    [
        pytest.param(False, (), id="full"),
        pytest.param(True, ("--bits", "16", "--lora_r", "4", "--lora_dropout", "0.1"), id="lora"),
        pytest.param(True, ("--bits", "4", "--lora_r", "4", "--lora_dropout", "0.1"), id="qlora"),
    ],
)
def test_resumed_run_ends_with_the_uninterrupted_runs_weights(
    qlora: bool, extra: tuple[str, ...], tiny_llama_dir: Path, data_file: Path, tmp_path: Path
) -> None:
    from camel_chat.train.args import parse_args
    from camel_chat.train.run import run

    def config(out: Path) -> Any:
        return parse_args(_argv(tiny_llama_dir, data_file, out, *extra), qlora=qlora)

    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    run(config(straight))
    run(config(interrupted), callbacks=[_stop_after(STOP)])
    assert (interrupted / f"checkpoint-{STOP}").is_dir()
    assert json.loads((interrupted / "trainer_state.json").read_text())["global_step"] == STOP
    run(config(interrupted))  # finds checkpoint-3 in --output_dir and resumes from it

    state = json.loads((interrupted / "trainer_state.json").read_text())
    assert state["global_step"] == STEPS
    expected, got = _weights(straight), _weights(interrupted)
    assert expected.keys() == got.keys() and expected
    for key, tensor in expected.items():
        diff = (tensor.float() - got[key].float()).abs().max().item()
        assert diff <= TOLERANCE, (key, diff)
    # The losses of the steps after the restart are the uninterrupted run's too.
    assert _losses(interrupted) == pytest.approx(_losses(straight), abs=1e-6)


KILL_SCRIPT = """
import os, sys
from transformers import TrainerCallback
from camel_chat.train.args import parse_args
from camel_chat.train.run import run

class KillAfterSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        if state.global_step == {stop}:
            os._exit(137)  # no clean-up, no final save: the process just dies

run(parse_args(sys.argv[1:], qlora=False), callbacks=[KillAfterSave()])
"""


def test_a_killed_process_resumes_to_the_same_weights(
    tiny_llama_dir: Path, data_file: Path, tmp_path: Path
) -> None:
    """A real kill (os._exit right after checkpoint-3 is written), then the plain command again."""
    import os
    import subprocess
    import sys

    from camel_chat.train.args import parse_args
    from camel_chat.train.run import run

    save = ("--save_strategy", "steps", "--save_steps", str(STOP))
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run(parse_args(_argv(tiny_llama_dir, data_file, straight, *save), qlora=False))
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            KILL_SCRIPT.format(stop=STOP),
            *_argv(tiny_llama_dir, data_file, killed, *save),
        ],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 137, proc.stderr[-3000:]
    assert (killed / f"checkpoint-{STOP}").is_dir() and not (killed / "model.safetensors").exists()
    run(parse_args(_argv(tiny_llama_dir, data_file, killed, *save), qlora=False))
    expected, got = _weights(straight), _weights(killed)
    for key, tensor in expected.items():
        assert (tensor - got[key]).abs().max().item() <= TOLERANCE, key


def test_resume_from_an_explicit_checkpoint_and_fresh_start(
    tiny_llama_dir: Path, data_file: Path, tmp_path: Path
) -> None:
    """--resume_from_checkpoint PATH resumes from that folder; False ignores the checkpoints."""
    from camel_chat.errors import CamelChatError
    from camel_chat.train.args import parse_args, resume_checkpoint

    out = tmp_path / "out"
    (out / "checkpoint-2").mkdir(parents=True)
    (out / "checkpoint-10").mkdir()
    (out / "checkpoint-10" / "trainer_state.json").write_text("{}")
    (out / "checkpoint-2" / "trainer_state.json").write_text("{}")

    def resume(*flags: str, qlora: bool = False) -> str | None:
        return resume_checkpoint(parse_args(_argv(tiny_llama_dir, data_file, out, *flags), qlora=qlora))

    assert resume() == str(out / "checkpoint-10")  # the latest, like the seed
    assert resume("--resume_from_checkpoint", "True") == str(out / "checkpoint-10")
    assert resume("--resume_from_checkpoint", str(out / "checkpoint-2")) == str(out / "checkpoint-2")
    assert resume("--resume_from_checkpoint", "False") is None
    seed_style = ("--resume_from_checkpoint", "True", "--checkpoint_path", str(out / "checkpoint-2"))
    assert resume(*seed_style, "--load_weights", "False", qlora=True) == str(out / "checkpoint-2")
    with pytest.raises(CamelChatError, match=r"--resume_from_checkpoint .*missing: no such checkpoint"):
        resume("--resume_from_checkpoint", str(out / "missing"))
    empty = tmp_path / "empty"
    with pytest.raises(CamelChatError, match=r"no checkpoint-\* folder"):
        resume_checkpoint(
            parse_args(
                _argv(tiny_llama_dir, data_file, empty, "--resume_from_checkpoint", "True"), qlora=False
            )
        )


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """Tiny models train fastest on one thread, and do not stall when other jobs share the CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
