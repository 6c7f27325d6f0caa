"""The scripts/train_camel_*.sh launchers, run for real in their dry-run mode (DRY_RUN=1 prints
the srun/torchrun command instead of running it) under a fake Slurm environment, plus their
real launch path against stub `torchrun`/`srun` executables. No torch, no GPU: each test is a
bash process or two."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
LAUNCH = SCRIPTS / "_launch.sh"
FSDP = "train_camel_7B.sh", "train_camel_13B.sh", "train_camel_13B_distributed.sh"
DS30 = "train_camel_30B_distributed_deepspeed.sh"
QLORA = "train_camel_qlora.sh"
ALL = (*FSDP, DS30, QLORA)

# Per script, on one node without Slurm: the seed's values (spec §6.1), and the GPU count,
# per-device batch and accumulation giving the seed's global batch there.
SINGLE_NODE = {
    "train_camel_7B.sh": dict(gpus=4, bs=2, accum=16, global_bs=128, eval_bs=16, steps=1500, limit=8),
    "train_camel_13B.sh": dict(gpus=8, bs=4, accum=4, global_bs=128, eval_bs=16, steps=1500, limit=8),
    # 2 nodes × 4 GPUs in the seed; on one node the accumulation doubles to keep 128.
    "train_camel_13B_distributed.sh": dict(
        gpus=4, bs=4, accum=8, global_bs=128, eval_bs=32, steps=1500, limit=8
    ),
    # 4 nodes × 4 GPUs in the seed (accumulation 8); on one node 32.
    DS30: dict(gpus=4, bs=1, accum=32, global_bs=128, eval_bs=32, steps=200, limit=6),
    QLORA: dict(gpus=1, bs=1, accum=16, global_bs=16, eval_bs=16, steps=250, limit=100),
}


def _write_exe(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def fake(tmp_path: Path) -> dict:
    """A tiny model folder and data file, an empty bin/ for stub executables, and a clean env."""
    model = tmp_path / "tiny-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    data = tmp_path / "dataset.json"
    data.write_text("[]")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "MODEL_PATH": str(model),
        "DATA_PATH": str(data),
        "OUTPUT_DIR": str(tmp_path / "out"),
        "TORCHRUN": "torchrun",
        "PYTHON": sys.executable,
        "CAMEL_NO_SCONTROL": "1",  # the bash node-list parser, even where Slurm is installed
        "DRY_RUN": "1",
    }
    return {"tmp": tmp_path, "model": model, "data": data, "bin": bin_dir, "env": env}


def run(script: str, env: dict, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPTS / script), *args],
        env=env,
        cwd=cwd or env["HOME"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def dry_run(script: str, env: dict, *args: str) -> list[str]:
    """The printed command as argv (exactly one line on stdout)."""
    proc = run(script, env, *args)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    return shlex.split(lines[0])


def split(argv: list[str]) -> tuple[list[str], list[str], str, dict[str, str], list[str]]:
    """(srun part, torchrun options, module, training flags {name: last value}, training argv)."""
    t = next(i for i, tok in enumerate(argv) if Path(tok).name == "torchrun")
    m = argv.index("-m")
    train = argv[m + 2 :]
    flags: dict[str, str] = {}
    for i, tok in enumerate(train):
        if tok.startswith("--"):
            nxt = train[i + 1] if i + 1 < len(train) else ""
            flags[tok[2:]] = "" if nxt.startswith("--") else nxt
    return argv[:t], argv[t + 1 : m], argv[m + 1], flags, train


def opt(options: list[str], name: str) -> str:
    return options[options.index(name) + 1]


# --- one node, no Slurm ------------------------------------------------------------------------


@pytest.mark.parametrize("script", ALL)
def test_single_node_command_keeps_the_seed_values(script: str, fake: dict) -> None:
    want = SINGLE_NODE[script]
    env = {**fake["env"], "MASTER_PORT": "29611"}
    argv = dry_run(script, env)
    srun, torchrun, module, flags, _ = split(argv)
    assert srun == [] and argv[0] == "torchrun"
    assert opt(torchrun, "--nnodes") == "1"
    assert opt(torchrun, "--nproc_per_node") == str(want["gpus"])
    assert opt(torchrun, "--rdzv_backend") == "c10d"
    assert opt(torchrun, "--rdzv_endpoint") == "localhost:29611"
    assert module == ("camel_chat.train.train_qlora" if script == QLORA else "camel_chat.train.train")

    assert flags["model_name_or_path"] == str(fake["model"])
    assert flags["data_path"] == str(fake["data"])
    assert flags["output_dir"] == str(fake["tmp"] / "out")
    assert flags["template"] == "vicuna_v1.1"
    assert flags["model_max_length"] == "2048"
    assert flags["num_train_epochs"] == "3"
    assert flags["bf16"] == "True"
    assert flags["per_device_train_batch_size"] == str(want["bs"])
    assert flags["gradient_accumulation_steps"] == str(want["accum"])
    bs, accum = int(flags["per_device_train_batch_size"]), int(flags["gradient_accumulation_steps"])
    assert bs * accum * 1 * int(opt(torchrun, "--nproc_per_node")) == want["global_bs"]
    assert flags["per_device_eval_batch_size"] == str(want["eval_bs"])
    assert flags["eval_strategy"] == flags["save_strategy"] == "steps"
    assert flags["eval_steps"] == flags["save_steps"] == str(want["steps"])
    assert flags["save_total_limit"] == str(want["limit"])
    assert flags["logging_steps"] == "1"
    assert float(flags["weight_decay"]) == 0

    if script == QLORA:
        assert float(flags["learning_rate"]) == 1e-4
        assert flags["lr_scheduler_type"] == "constant"
        assert flags["warmup_ratio"] == "0.03"
        assert flags["lora_dropout"] == "0.05"
        assert flags["max_grad_norm"] == "0.3"
        assert (flags["bits"], flags["quant_type"], flags["double_quant"]) == ("4", "nf4", "True")
        assert (flags["lora_r"], flags["lora_alpha"]) == ("64", "16")
        assert flags["max_eval_samples"] == "1000"
        assert flags["ddp_find_unused_parameters"] == "False"
        assert "deepspeed" not in flags and "fsdp" not in flags
    else:
        assert float(flags["learning_rate"]) == 2e-5
        assert flags["warmup_ratio"] == "0.04"
        assert flags["tf32"] == "True"
    if script in FSDP:
        assert flags["fsdp"] == "full_shard auto_wrap"
        assert flags["fsdp_config"] == str(REPO / "configs" / "fsdp_full_shard.json")
        assert flags["lr_scheduler_type"] == "cosine"
        assert "deepspeed" not in flags
        # Activation checkpointing is the preset's; the Trainer flag would add a second AllGather.
        assert "gradient_checkpointing" not in flags and "activation_checkpointing" not in flags
    if script == DS30:
        assert flags["deepspeed"] == str(REPO / "configs" / "ds_zero3_offload.json")
        assert "fsdp" not in flags
        assert "lr_scheduler_type" not in flags  # the preset's WarmupDecayLR, as in the seed
    for key in ("fsdp_config", "deepspeed"):
        if key in flags:
            assert Path(flags[key]).is_file(), f"preset {flags[key]} is missing"


@pytest.mark.parametrize("script", ALL)
def test_global_batch_is_recomputed_for_the_gpu_count(script: str, fake: dict) -> None:
    env = {**fake["env"], "GPUS_PER_NODE": "2", "PER_DEVICE_TRAIN_BATCH_SIZE": "2"}
    proc = run(script, env)
    assert proc.returncode == 0, proc.stderr
    _, torchrun, _, flags, _ = split(shlex.split(proc.stdout))
    global_bs = SINGLE_NODE[script]["global_bs"]
    assert opt(torchrun, "--nproc_per_node") == "2"
    assert flags["per_device_train_batch_size"] == "2"
    assert int(flags["gradient_accumulation_steps"]) * 2 * 2 == global_bs
    assert f"global batch {global_bs} = 2 per GPU" in proc.stderr


def test_indivisible_global_batch_stops_with_a_message(fake: dict) -> None:
    env = {**fake["env"], "GPUS_PER_NODE": "3"}
    proc = run("train_camel_7B.sh", env)
    assert proc.returncode != 0 and proc.stdout == ""
    assert "GLOBAL_BATCH_SIZE=128 is not a multiple" in proc.stderr
    argv = dry_run("train_camel_7B.sh", {**env, "GRAD_ACCUM": "21"})  # explicit: global 126
    assert split(argv)[3]["gradient_accumulation_steps"] == "21"


@pytest.mark.parametrize(
    ("name", "value"),
    [("GPUS_PER_NODE", "0"), ("NNODES", "two"), ("MODEL_MAX_LENGTH", "-1"), ("MASTER_PORT", "70000")],
)
def test_bad_numbers_stop_with_a_message(name: str, value: str, fake: dict) -> None:
    proc = run("train_camel_7B.sh", {**fake["env"], name: value})
    assert proc.returncode != 0 and proc.stdout == ""
    assert f"{name}={value}" in proc.stderr


def test_env_overrides_and_extra_args_come_last(fake: dict) -> None:
    env = {
        **fake["env"],
        "TEMPLATE": "chatml",
        "MODEL_MAX_LENGTH": "4096",
        "EXTRA_ARGS": "--num_train_epochs 1\n--report_to none",
    }
    argv = dry_run("train_camel_7B.sh", env, "--save_steps", "10", "--run_name", "a b")
    _, _, _, flags, train = split(argv)
    assert flags["template"] == "chatml" and flags["model_max_length"] == "4096"
    # Appended after the script's flags: argparse keeps the last value, so these win.
    assert train[-8:] == [
        *("--save_steps", "10", "--run_name", "a b"),  # the script's own arguments
        *("--num_train_epochs", "1", "--report_to", "none"),  # then EXTRA_ARGS
    ]
    assert flags["save_steps"] == "10" and flags["num_train_epochs"] == "1"


def test_qlora_deepspeed_zero2_on_request(fake: dict) -> None:
    preset = REPO / "configs" / "ds_zero2.json"
    env = {**fake["env"], "GPUS_PER_NODE": "4", "DEEPSPEED_CONFIG": str(preset)}
    _, torchrun, module, flags, _ = split(dry_run(QLORA, env))
    assert module == "camel_chat.train.train_qlora"
    assert flags["deepspeed"] == str(preset) and preset.is_file()
    assert opt(torchrun, "--nproc_per_node") == "4"
    assert flags["gradient_accumulation_steps"] == "4"  # 1 × 4 × 4 GPUs = 16, the seed's global batch


def test_free_port_when_master_port_is_unset(fake: dict) -> None:
    _, torchrun, _, _, _ = split(dry_run("train_camel_7B.sh", fake["env"]))
    host, port = opt(torchrun, "--rdzv_endpoint").rsplit(":", 1)
    assert host == "localhost" and 1 <= int(port) <= 65535


def test_default_torchrun_is_found(fake: dict) -> None:
    env = dict(fake["env"])
    del env["TORCHRUN"]
    _write_exe(fake["bin"] / "torchrun", "#!/bin/sh\nexit 0\n")
    argv = dry_run("train_camel_7B.sh", env)
    assert argv[0] == str(fake["bin"] / "torchrun")


# --- several nodes under Slurm -----------------------------------------------------------------


def slurm_env(fake: dict, nodelist: str, nnodes: int, **more: str) -> dict:
    return {
        **fake["env"],
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NODELIST": nodelist,
        "SLURM_NNODES": str(nnodes),
        "SLURM_SUBMIT_DIR": str(REPO),
        **more,
    }


@pytest.mark.parametrize(("script", "accum"), [("train_camel_13B_distributed.sh", "2"), (DS30, "8")])
def test_multi_node_srun_torchrun_c10d(script: str, accum: str, fake: dict) -> None:
    env = slurm_env(fake, "node[03-06]", 4, SLURM_GPUS_ON_NODE="4")
    argv = dry_run(script, env)
    srun, torchrun, module, flags, _ = split(argv)
    assert srun[0] == "srun"
    assert {"--nodes=4", "--ntasks=4", "--ntasks-per-node=1", "--kill-on-bad-exit=1"} <= set(srun)
    assert opt(torchrun, "--nnodes") == "4"
    assert opt(torchrun, "--nproc_per_node") == "4"
    assert opt(torchrun, "--rdzv_backend") == "c10d"
    assert opt(torchrun, "--rdzv_id") == "4242"
    host, port = opt(torchrun, "--rdzv_endpoint").rsplit(":", 1)
    assert host == "node03" and 1 <= int(port) <= 65535
    assert module == "camel_chat.train.train"
    # 16 GPUs: the seed's accumulation (13B: 4 per GPU × 2 × 16 = 128; 30B: 1 × 8 × 16 = 128).
    assert flags["gradient_accumulation_steps"] == accum
    assert int(flags["per_device_train_batch_size"]) * int(accum) * 4 * 4 == 128


def test_three_nodes_from_a_bracketed_list(fake: dict) -> None:
    env = slurm_env(fake, "node[03-05]", 3, GPUS_PER_NODE="4", MASTER_PORT="29400")
    proc = run("train_camel_13B_distributed.sh", env)  # 4 per GPU × 12 GPUs does not divide 128
    assert proc.returncode != 0 and proc.stdout == ""
    assert "= 48" in proc.stderr
    argv = dry_run("train_camel_13B_distributed.sh", {**env, "GLOBAL_BATCH_SIZE": "96"})
    srun, torchrun, _, flags, _ = split(argv)
    assert "--nodes=3" in srun
    assert opt(torchrun, "--nnodes") == "3"
    assert opt(torchrun, "--rdzv_endpoint") == "node03:29400"
    assert flags["gradient_accumulation_steps"] == "2"


def test_mixed_node_list_and_fewer_nodes_than_allocated(fake: dict) -> None:
    env = slurm_env(fake, "gpu[01-04],cpu7", 5, NNODES="2", GPUS_PER_NODE="8", MASTER_PORT="29401")
    srun, torchrun, _, flags, _ = split(dry_run(DS30, env))
    assert "--nodes=2" in srun and opt(torchrun, "--nnodes") == "2"
    assert opt(torchrun, "--rdzv_endpoint") == "gpu01:29401"
    assert flags["gradient_accumulation_steps"] == "8"  # 1 × 8 × 16 GPUs
    proc = run(DS30, {**env, "NNODES": "6"})
    assert proc.returncode != 0 and "only 5 node(s)" in proc.stderr


def test_scontrol_gives_the_host_when_installed(fake: dict) -> None:
    _write_exe(
        fake["bin"] / "scontrol",
        '#!/bin/sh\n[ "$1 $2 $3" = "show hostnames weird[1-2]" ] || exit 3\nprintf "alpha\\nbeta\\n"\n',
    )
    env = slurm_env(fake, "weird[1-2]", 2, GPUS_PER_NODE="4", MASTER_PORT="29402")
    del env["CAMEL_NO_SCONTROL"]
    _, torchrun, _, _, _ = split(dry_run("train_camel_13B_distributed.sh", env))
    assert opt(torchrun, "--rdzv_endpoint") == "alpha:29402"


def test_multi_node_without_slurm_needs_master_addr(fake: dict) -> None:
    proc = run("train_camel_13B_distributed.sh", {**fake["env"], "NNODES": "2"})
    assert proc.returncode != 0 and proc.stdout == ""
    assert "NNODES=2 needs a Slurm allocation" in proc.stderr
    env = {**fake["env"], "NNODES": "2", "MASTER_ADDR": "head.example", "RDZV_ID": "job7"}
    proc = run("train_camel_13B_distributed.sh", env)
    assert proc.returncode != 0 and "set MASTER_PORT" in proc.stderr
    argv = dry_run("train_camel_13B_distributed.sh", {**env, "MASTER_PORT": "29403"})
    srun, torchrun, _, _, _ = split(argv)
    assert srun == []  # started by hand on every node
    assert opt(torchrun, "--rdzv_endpoint") == "head.example:29403"
    assert opt(torchrun, "--rdzv_id") == "job7"


@pytest.mark.parametrize(
    ("nodelist", "first"),
    [
        ("node[03-05]", "node03"),
        ("gpu[01-04],cpu7", "gpu01"),
        ("cpu7,gpu[01-04]", "cpu7"),
        ("n[7,9-10]", "n7"),
        ("n[009-011,020]", "n009"),
        ("rack[2-3]-n[01-02]", "rack2-n01"),
        ("a-b.c[10-12]x", "a-b.c10x"),
        ("single", "single"),
    ],
)
def test_bash_node_list_parser(nodelist: str, first: str) -> None:
    proc = subprocess.run(
        ["bash", "-c", 'source "$1"; camel_first_host "$2"', "_", str(LAUNCH), nodelist],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CAMEL_NO_SCONTROL": "1"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{first}\n"


@pytest.mark.parametrize("nodelist", ["", "node[01-", "[01-02]x]"])
def test_bash_node_list_parser_rejects_garbage(nodelist: str) -> None:
    proc = subprocess.run(
        ["bash", "-c", 'source "$1"; camel_first_host "$2"', "_", str(LAUNCH), nodelist],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CAMEL_NO_SCONTROL": "1"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0 and proc.stdout == ""


# --- missing inputs stop before torchrun -------------------------------------------------------


def stub_launchers(fake: dict) -> Path:
    """Stub torchrun and srun that record their argv (one per line) and exit 0."""
    log = fake["tmp"] / "launched"
    for name in ("torchrun", "srun"):
        _write_exe(fake["bin"] / name, f'#!/bin/sh\nprintf "%s\\n" {name} "$@" >> "{log}"\n')
    return log


@pytest.mark.parametrize("script", ALL)
@pytest.mark.parametrize("missing", ["MODEL_PATH", "DATA_PATH"])
def test_missing_model_or_data_stops_before_torchrun(script: str, missing: str, fake: dict) -> None:
    log = stub_launchers(fake)
    env = {**fake["env"], "DRY_RUN": "0", "MASTER_PORT": "29500"}
    env[missing] = str(fake["tmp"] / "does-not-exist")
    proc = run(script, env)
    assert proc.returncode != 0
    assert f"{missing}={fake['tmp'] / 'does-not-exist'}: no such" in proc.stderr
    assert proc.stdout == "" and not log.exists()
    dry = run(script, {**env, "DRY_RUN": "1"})
    assert dry.returncode != 0 and dry.stdout == ""


def test_defaults_name_the_variable_to_set(fake: dict) -> None:
    env = dict(fake["env"])
    del env["MODEL_PATH"], env["DATA_PATH"]
    proc = run("train_camel_13B.sh", env)
    assert proc.returncode != 0 and proc.stdout == ""
    assert "MODEL_PATH=models/llama-13b: no such model folder" in proc.stderr
    (fake["tmp"] / "models" / "llama-13b").mkdir(parents=True)
    (fake["tmp"] / "models" / "llama-13b" / "config.json").write_text("{}")
    proc = run("train_camel_13B.sh", env)
    assert proc.returncode != 0 and "DATA_PATH=datasets/dataset.json: no such data file" in proc.stderr


def test_model_folder_needs_config_and_presets_must_exist(fake: dict) -> None:
    (fake["model"] / "config.json").unlink()
    proc = run("train_camel_7B.sh", fake["env"])
    assert proc.returncode != 0 and "no config.json" in proc.stderr
    (fake["model"] / "config.json").write_text("{}")
    for script, var in (("train_camel_7B.sh", "FSDP_CONFIG"), (DS30, "DEEPSPEED_CONFIG")):
        proc = run(script, {**fake["env"], var: "/nonexistent/preset.json"})
        assert proc.returncode != 0 and proc.stdout == ""
        assert f"{var}=/nonexistent/preset.json: no such preset file" in proc.stderr


# --- the real launch runs exactly the dry-run command ------------------------------------------


@pytest.mark.parametrize(("script", "slurm"), [("train_camel_7B.sh", False), (QLORA, False), (DS30, True)])
def test_launch_executes_the_printed_command(script: str, slurm: bool, fake: dict) -> None:
    log = stub_launchers(fake)
    env = {**fake["env"], "MASTER_PORT": "29404", "RDZV_ID": "fixed"}
    if slurm:
        env = slurm_env(fake, "node[03-06]", 4, GPUS_PER_NODE="4", MASTER_PORT="29404")
    printed = dry_run(script, env)
    proc = run(script, {**env, "DRY_RUN": "0"})
    assert proc.returncode == 0, proc.stderr
    assert log.read_text().splitlines() == printed
    assert proc.stderr.splitlines()[-1].startswith("+ " + ("srun" if slurm else "torchrun"))


def test_sbatch_spool_copy_finds_the_checkout(fake: dict) -> None:
    """sbatch runs a copy of the script from its spool folder: the checkout is the submit dir."""
    spool = fake["tmp"] / "spool"
    spool.mkdir()
    shutil.copy(SCRIPTS / "train_camel_7B.sh", spool / "slurm_script")
    env = {**fake["env"], "SLURM_JOB_ID": "9", "SLURM_NNODES": "1", "SLURM_JOB_NODELIST": "node01"}

    def spooled(submit_dir: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(spool / "slurm_script")],
            env={**env, "SLURM_SUBMIT_DIR": str(submit_dir)},
            cwd=submit_dir,
            capture_output=True,
            text=True,
            timeout=60,
        )

    proc = spooled(REPO)
    assert proc.returncode == 0, proc.stderr
    _, torchrun, _, flags, _ = split(shlex.split(proc.stdout))
    assert opt(torchrun, "--rdzv_id") == "9"
    assert flags["fsdp_config"] == str(REPO / "configs" / "fsdp_full_shard.json")
    proc = spooled(fake["tmp"])
    assert proc.returncode != 0 and "scripts/_launch.sh not found" in proc.stderr


# --- static checks -----------------------------------------------------------------------------

SBATCH = {
    "train_camel_7B.sh": {"nodes": "1", "gres": "gpu:4", "mem": "128G"},
    "train_camel_13B.sh": {"nodes": "1", "gres": "gpu:8", "mem": "384G"},
    "train_camel_13B_distributed.sh": {"nodes": "2", "gres": "gpu:4", "mem": "384G"},
    DS30: {"nodes": "4", "gres": "gpu:4", "mem": "384G"},
    QLORA: {"nodes": "1", "gres": "gpu:4", "mem": "256G"},
}


@pytest.mark.parametrize("script", ALL)
def test_sbatch_headers(script: str) -> None:
    text = (SCRIPTS / script).read_text()
    assert text.startswith("#!/bin/bash")
    headers = dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)", text, flags=re.M))
    assert headers["time"] == "24:00:00"
    assert headers["cpus-per-gpu"] == "6"
    assert headers["ntasks-per-node"] == "1"  # one torchrun per node
    for key, value in SBATCH[script].items():
        assert headers[key] == value
    assert "reservation" not in headers  # site-specific: sbatch --reservation or SBATCH_RESERVATION
    assert os.access(SCRIPTS / script, os.X_OK)


def test_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck); .ci/run installs it")
    files = [str(LAUNCH.relative_to(REPO))] + [f"scripts/{name}" for name in ALL]
    proc = subprocess.run([shellcheck, "-x", *files], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
