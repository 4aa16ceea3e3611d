"""Step 3 of the fine-tune — launching Axolotl: distributed detection, the banner, the command line, the
child's environment, and running a real child process (output streamed, failures explained)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mixtrain.errors import InvalidInput, MixtrainError, TrainingFailed, TrainingOutOfMemory, WorkflowFailed
from mixtrain.vlm import launch
from mixtrain.vlm.launch import Distributed

CFG = Path("/runs/1/axolotl.yml")

# ---------------------------------------------------------------------------------------------------------
# distributed_from_env
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", [{}, {"RANK": "0", "WORLD_SIZE": "4", "LOCAL_RANK": "0"}, {"MASTER_ADDR": ""}])
def test_no_master_addr_means_single_process(env):
    assert launch.distributed_from_env(env) is None


def test_defaults_when_only_master_addr_is_set():
    assert launch.distributed_from_env({"MASTER_ADDR": "10.0.0.1"}) == Distributed(
        master_addr="10.0.0.1", master_port=29500, machine_rank=0, num_machines=1, local_rank=0
    )


def test_spec_variables():
    env = {"MASTER_ADDR": "192.168.1.100", "MASTER_PORT": "29600", "RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "2"}
    assert launch.distributed_from_env(env) == Distributed("192.168.1.100", 29600, 1, 4, 2)


def test_node_rank_and_num_nodes_win_over_rank_and_world_size():
    env = {"MASTER_ADDR": "h", "RANK": "5", "WORLD_SIZE": "16", "NODE_RANK": "0", "NUM_NODES": "2"}
    dist = launch.distributed_from_env(env)
    assert (dist.machine_rank, dist.num_machines) == (0, 2)  # NODE_RANK "0" is set, so it still wins


def test_empty_master_port_falls_back_to_default():
    assert launch.distributed_from_env({"MASTER_ADDR": "h", "MASTER_PORT": ""}).master_port == 29500


@pytest.mark.parametrize("var", ["MASTER_PORT", "RANK", "NODE_RANK", "WORLD_SIZE", "NUM_NODES", "LOCAL_RANK"])
def test_malformed_number_is_a_user_error_naming_the_variable(var):
    with pytest.raises(InvalidInput) as err:
        launch.distributed_from_env({"MASTER_ADDR": "h", var: "two"})
    assert f"{var}='two'" in str(err.value)


def test_reads_os_environ_by_default(monkeypatch):
    for var in launch.DIST_VARS:
        monkeypatch.delenv(var, raising=False)
    assert launch.distributed_from_env() is None
    monkeypatch.setenv("MASTER_ADDR", "10.1.2.3")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert launch.distributed_from_env() == Distributed("10.1.2.3", 29500, 0, 3, 0)


# ---------------------------------------------------------------------------------------------------------
# banner: the spec's lines, character for character
# ---------------------------------------------------------------------------------------------------------


def test_single_gpu_banner():
    assert launch.banner(None) == ["\U0001f5a5\ufe0f  Single GPU mode - running without distributed setup"]


def test_distributed_banner():
    dist = launch.distributed_from_env(
        {"MASTER_ADDR": "192.168.1.100", "RANK": "0", "WORLD_SIZE": "4", "LOCAL_RANK": "0"}
    )
    assert launch.banner(dist) == [
        "\U0001f310 Detected distributed environment - using accelerate launch",
        "  MASTER_ADDR: 192.168.1.100",
        "  RANK: 0",
        "  WORLD_SIZE: 4",
        "  LOCAL_RANK: 0",
    ]


# ---------------------------------------------------------------------------------------------------------
# command
# ---------------------------------------------------------------------------------------------------------

ENTRY = ["-m", "mixtrain.vlm.axolotl_main", "train", str(CFG)]


def accelerate_flags(cmd: list[str]) -> tuple[dict, set]:
    """Split an ``accelerate launch`` command into its valued options and bare flags."""
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert cmd[-len(ENTRY) :] == ENTRY
    args = cmd[3 : -len(ENTRY)]
    valued, bare, i = {}, set(), 0
    while i < len(args):
        if i + 1 < len(args) and not args[i + 1].startswith("--"):
            valued[args[i]] = args[i + 1]
            i += 2
        else:
            bare.add(args[i])
            i += 1
    return valued, bare


@pytest.mark.parametrize("cuda, n_gpu", [(False, 0), (True, 1), (True, 8)])
def test_single_process_runs_our_axolotl_entry(cuda, n_gpu):
    assert launch.command(CFG, None, cuda=cuda, n_gpu=n_gpu, num_processes=0) == [sys.executable, *ENTRY]


@pytest.mark.parametrize(
    "cuda, n_gpu, num_processes, machines, total, bare",
    [
        (True, 4, 0, 2, 8, {"--multi_gpu"}),  # one process per GPU on each node
        (True, 8, 2, 2, 4, {"--multi_gpu"}),  # num_processes overrides the GPU count
        (True, 2, 0, 1, 2, {"--multi_gpu"}),
        (True, 1, 0, 1, 1, set()),  # one GPU, one node: no DDP
        (True, 1, 0, 3, 3, {"--multi_gpu"}),  # one GPU on each of 3 nodes
        (False, 0, 0, 1, 1, {"--cpu"}),  # CPU defaults to one process
        (False, 0, 2, 1, 2, {"--multi_gpu"}),  # accelerate's name for multi-process DDP (gloo on CPU)
        (False, 0, 0, 2, 2, {"--multi_gpu"}),
    ],
)
def test_distributed_command(cuda, n_gpu, num_processes, machines, total, bare):
    dist = Distributed("192.168.1.100", 29501, machines - 1, machines, 0)
    valued, got_bare = accelerate_flags(launch.command(CFG, dist, cuda=cuda, n_gpu=n_gpu, num_processes=num_processes))
    assert valued["--num_machines"] == str(machines)
    assert valued["--machine_rank"] == str(machines - 1)
    assert valued["--main_process_ip"] == "192.168.1.100"
    assert valued["--main_process_port"] == "29501"
    assert valued["--num_processes"] == str(total)
    assert got_bare == bare


def test_accelerate_accepts_our_flags():
    """The flags are real ``accelerate launch`` options (parsed by accelerate's own parser, in a subprocess)."""
    dist = Distributed("192.168.1.100", 29501, 1, 2, 0)
    cmd = launch.command(CFG, dist, cuda=True, n_gpu=4, num_processes=0)
    probe = (
        "import json, sys\n"
        "from accelerate.commands.launch import launch_command_parser\n"
        "a = launch_command_parser().parse_args(sys.argv[1:])\n"
        "print(json.dumps({k: getattr(a, k) for k in ('num_machines', 'machine_rank', 'main_process_ip', 'main_process_port',"
        " 'num_processes', 'multi_gpu', 'cpu', 'module', 'training_script', 'training_script_args', 'dynamo_backend', 'mixed_precision')}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe, *cmd[3:]], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    parsed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert parsed == {
        "num_machines": 2,
        "machine_rank": 1,
        "main_process_ip": "192.168.1.100",
        "main_process_port": 29501,
        "num_processes": 8,
        "multi_gpu": True,
        "cpu": False,
        "module": True,
        "training_script": "mixtrain.vlm.axolotl_main",
        "training_script_args": ["train", str(CFG)],
        "dynamo_backend": "no",
        "mixed_precision": "no",
    }


def test_validate_command():
    assert launch.validate_command(CFG) == [sys.executable, "-m", "mixtrain.vlm.axolotl_main", "validate", str(CFG)]


# ---------------------------------------------------------------------------------------------------------
# training_env
# ---------------------------------------------------------------------------------------------------------

DIST_ENV = {
    "MASTER_ADDR": "10.0.0.1",
    "MASTER_PORT": "29500",
    "RANK": "1",
    "WORLD_SIZE": "2",
    "LOCAL_RANK": "0",
    "LOCAL_WORLD_SIZE": "1",
    "NODE_RANK": "1",
    "NUM_NODES": "2",
    "GROUP_RANK": "1",
    "ROLE_RANK": "1",
}


def test_training_env_scrubs_the_schedulers_variables(tmp_path):
    base = {**DIST_ENV, "PATH": "/usr/bin", "HOME": "/home/u"}
    env = launch.training_env(base, wandb=False, run_dir=tmp_path)
    assert not set(DIST_ENV) & set(env)  # accelerate sets its own per process
    assert env["PATH"] == "/usr/bin" and env["HOME"] == "/home/u"
    assert "MASTER_ADDR" in base  # the caller's mapping is left alone


def test_training_env_turns_telemetry_off(tmp_path):
    env = launch.training_env({}, wandb=False, run_dir=tmp_path)
    assert env["AXOLOTL_DO_NOT_TRACK"] == "1"
    assert env["HF_HUB_DISABLE_TELEMETRY"] == "1"
    assert env["DO_NOT_TRACK"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"


def test_training_env_keeps_the_users_own_choice(tmp_path):
    env = launch.training_env(
        {"AXOLOTL_DO_NOT_TRACK": "0", "TOKENIZERS_PARALLELISM": "true"}, wandb=False, run_dir=tmp_path
    )
    assert env["AXOLOTL_DO_NOT_TRACK"] == "0"
    assert env["TOKENIZERS_PARALLELISM"] == "true"


def test_wandb_disabled_without_a_project(tmp_path):
    env = launch.training_env({"WANDB_MODE": "online"}, wandb=False, run_dir=tmp_path)
    assert env["WANDB_MODE"] == "disabled"
    assert env["WANDB_DIR"] == str(tmp_path)


def test_wandb_left_to_the_config_with_a_project(tmp_path):
    assert "WANDB_MODE" not in launch.training_env({}, wandb=True, run_dir=tmp_path)
    env = launch.training_env({"WANDB_MODE": "offline", "WANDB_API_KEY": "k"}, wandb=True, run_dir=tmp_path)
    assert env["WANDB_MODE"] == "offline" and env["WANDB_API_KEY"] == "k"
    assert env["WANDB_DIR"] == str(tmp_path)


# ---------------------------------------------------------------------------------------------------------
# run: a real child process
# ---------------------------------------------------------------------------------------------------------


def child(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_success_streams_the_childs_output(tmp_path, capfd):
    code = "import os, sys; print('step 1', flush=True); sys.stdout.write('10%\\r50%\\r100%\\n'); print('cwd', os.getcwd()); print('env', os.environ['PROBE'])"
    launch.run(child(code), {**launch.training_env({}, wandb=False, run_dir=tmp_path), "PROBE": "seen"}, tmp_path)
    out = capfd.readouterr().out
    assert "step 1\n" in out and "10%\r50%\r100%\n" in out  # passed through as written, progress bars included
    assert f"cwd {tmp_path}" in out and "env seen" in out


def test_failure_raises_with_the_last_line(tmp_path, capfd):
    code = "print('loading model'); raise ValueError('dataset has no messages column')"
    with pytest.raises(TrainingFailed) as err:
        launch.run(child(code), {}, tmp_path)
    assert not isinstance(err.value, TrainingOutOfMemory)
    assert "exited with code 1" in err.value.what
    assert err.value.what.endswith("ValueError: dataset has no messages column")
    assert "loading model" in capfd.readouterr().out  # the log still has everything


def test_failure_last_line_without_a_newline(tmp_path):
    code = "import sys; sys.stdout.write('10%\\r20%\\rfatal: disk full'); sys.exit(3)"
    with pytest.raises(WorkflowFailed) as err:
        launch.run(child(code), {}, tmp_path)
    assert "exited with code 3" in err.value.what and err.value.what.endswith("fatal: disk full")


def test_failure_on_stderr_is_reported(tmp_path):
    with pytest.raises(WorkflowFailed, match="boom on stderr"):
        launch.run(child("import sys; sys.stderr.write('boom on stderr\\n'); sys.exit(2)"), {}, tmp_path)


def test_out_of_memory_names_the_spec_remedies(tmp_path):
    code = (
        "import sys\n"
        "print('step 3/100')\n"
        "print('torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.14 GiB')\n"
        "sys.exit(1)\n"
    )
    with pytest.raises(TrainingOutOfMemory) as err:
        launch.run(child(code), {}, tmp_path)
    # An SDK caller catches it at whichever level it cares about.
    assert (
        isinstance(err.value, TrainingFailed)
        and isinstance(err.value, WorkflowFailed)
        and isinstance(err.value, MixtrainError)
    )
    assert err.value.what == "training ran out of GPU memory"
    for remedy in ("--batch_size 1", "--deepspeed_config zero3", "--max_seq_length 1024", "--lora_r 32"):
        assert remedy in err.value.fix
    assert "--batch_size 1" in str(err.value)  # what the CLI prints: "Error: <what> — <fix>"


def test_out_of_memory_early_in_a_long_log_is_still_recognised(tmp_path):
    code = (
        "print('RuntimeError: CUDA out of memory.'); [print('  at frame', i) for i in range(30)]; raise SystemExit(1)"
    )
    with pytest.raises(WorkflowFailed, match="ran out of GPU memory"):
        launch.run(child(code), {}, tmp_path)


def test_success_with_oom_text_in_the_log_is_not_a_failure(tmp_path, capfd):
    launch.run(child("print('retrying after CUDA out of memory at batch 4')"), {}, tmp_path)
    assert "retrying" in capfd.readouterr().out
