"""`bench/gpu.sh --dry-run`: every step of the prepared GPU run works on CPU with a tiny model.

The GPU machine is lent rarely and briefly, so the script it runs is exercised here first: the
same child processes (our train command plain, LoRA, under torchrun with FSDP2 and with
DeepSpeed ZeRO-3, then the serving benchmark on the trained checkpoint), the same JSON.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_script_dry_run_runs_every_step(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu.sh"), "--dry-run", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(tmp_path)},
    )
    result = json.loads((tmp_path / "gpu.json").read_text())
    steps = result["steps"]
    assert proc.returncode == 0, {name: step.get("log_tail", step["status"]) for name, step in steps.items()}
    assert result["dry_run"] is True and (tmp_path / "gpu.log").stat().st_size > 0
    assert steps["prepare"]["figures"]["parameters"] > 0
    for name in ("full_ft", "lora", "fsdp", "deepspeed"):
        step = steps[name]
        if step["status"].startswith("skipped"):
            assert name == "deepspeed" and "not installed" in step["status"]
            continue
        assert step["status"] == "ok", step
        figures = step["figures"]
        assert figures["logged_steps"] == 2 and figures["tokens_per_second"] > 0
        assert math.isfinite(figures["final_loss"]) and figures["final_loss"] > 0
    assert "--fsdp_config" in steps["fsdp"]["command"] and "torch.distributed.run" in steps["fsdp"]["command"]
    configs = {(r["config"], r["clients"]) for r in steps["serve"]["figures"]["results"]}
    assert {("engine", 1), ("stack", 1), ("stack", 2)} <= configs
    assert all(r["tokens"] > 0 for r in steps["serve"]["figures"]["results"])
