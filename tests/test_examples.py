"""The cluster recipes in examples/: what can be checked without Slurm, Kubernetes or Docker.

- examples/slurm.sh: `bash -n`, shellcheck where installed, and its dry run, whose command
  must be one that `python -m nanonas.study` accepts.
- examples/k8s-job.yaml: parsed; an Indexed Job whose pods run nanonas with accepted flags,
  on one GPU each, with the database password from a Secret and nowhere else.
- examples/docker/Dockerfile: hadolint where installed (Debian 12 has no package of it), and
  the structure a hadolint run would look at: a pinned base, no cache, not root, the entrypoint.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from nanonas.study import config_from_args

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NANONAS = ["python", "-m", "nanonas.study"]
URL = "postgresql://nanonas@db-host:5432/nanonas"


def _slurm(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "NANONAS_"))}
    return subprocess.run(
        ["bash", str(EXAMPLES / "slurm.sh")],
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_slurm_script_is_valid_bash():
    done = subprocess.run(["bash", "-n", str(EXAMPLES / "slurm.sh")], capture_output=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_the_slurm_script_passes_shellcheck():
    done = subprocess.run(["shellcheck", str(EXAMPLES / "slurm.sh")], capture_output=True)
    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize("task", ["0", "5"])
def test_the_slurm_dry_run_prints_the_command_its_array_task_runs(task, tmp_path):
    done = _slurm({"DRY_RUN": "1", "SLURM_ARRAY_TASK_ID": task, "NANONAS_STORAGE": URL})
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    argv = shlex.split(line)
    assert argv[:3] == NANONAS
    config = config_from_args(argv[3:])  # flags that nanonas accepts, as they are
    assert config.storage == URL and config.seed == int(task) and config.device == "cuda"
    assert config.study_name == "cifar10-search" and config.n_trials == 25


def test_the_slurm_script_takes_its_settings_from_the_environment():
    env = {"DRY_RUN": "1", "SLURM_ARRAY_TASK_ID": "2", "NANONAS_STORAGE": "redis://r:6379/1"}
    env |= {"NANONAS_STUDY": "s 1", "NANONAS_TRIALS": "3", "NANONAS_CONFIG": "quick"}
    argv = shlex.split(_slurm(env).stdout)
    config = config_from_args(argv[3:])
    assert (config.storage, config.study_name, config.n_trials) == ("redis://r:6379/1", "s 1", 3)
    assert config.dataset == "synthetic"  # the quick preset's


def test_the_slurm_script_asks_for_one_gpu_per_array_task_and_a_storage():
    text = (EXAMPLES / "slurm.sh").read_text()
    assert "#SBATCH --gres=gpu:1" in text and re.search(r"#SBATCH --array=0-\d+", text)
    done = _slurm({"SLURM_ARRAY_TASK_ID": "0"})
    assert done.returncode != 0 and "NANONAS_STORAGE" in done.stderr and not done.stdout


def _k8s() -> dict[str, dict]:
    yaml = pytest.importorskip("yaml")
    documents = list(yaml.safe_load_all((EXAMPLES / "k8s-job.yaml").read_text()))
    return {d["kind"]: d for d in documents}


def test_the_k8s_job_is_indexed_with_one_gpu_worker_per_pod():
    job = _k8s()["Job"]
    assert job["apiVersion"] == "batch/v1"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] >= 1
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    image = container["image"]
    assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")
    assert container["command"] == NANONAS
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_the_k8s_workers_run_accepted_flags_against_the_postgres_service():
    kinds = _k8s()
    (container,) = kinds["Job"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    index = env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert "job-completion-index" in index
    # Kubernetes expands $(NAME) in args from the container's env: the index is the seed.
    args = [a.replace("$(JOB_COMPLETION_INDEX)", "3") for a in container["args"]]
    config = config_from_args(args)
    assert config.seed == 3 and config.device == "cuda"
    storage = urllib.parse.urlsplit(config.storage)
    assert storage.scheme == "postgresql"
    service = kinds["Service"]
    assert storage.hostname == service["metadata"]["name"]
    assert storage.port in [p["port"] for p in service["spec"]["ports"]]


def test_the_k8s_database_password_comes_from_a_secret_and_nowhere_else():
    (container,) = _k8s()["Job"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    secret = env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]  # libpq reads PGPASSWORD
    assert secret["name"] and secret["key"]
    assert all("value" not in e for e in container["env"])  # nothing inline
    storage = container["args"][container["args"].index("--storage") + 1]
    assert urllib.parse.urlsplit(storage).password is None
    lines = (EXAMPLES / "k8s-job.yaml").read_text().splitlines()
    spec = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    assert not re.search(r"password\s*[:=]\s*\S", spec, re.I)


def _dockerfile() -> list[tuple[str, str]]:
    """The instructions, (KEYWORD, arguments), comments dropped and continuations joined."""
    text = (EXAMPLES / "docker" / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (word.upper(), rest.strip())
        for word, _, rest in (line.partition(" ") for line in lines if line and line[0] != "#")
    ]


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint is not installed")
def test_the_dockerfile_passes_hadolint():
    dockerfile = EXAMPLES / "docker" / "Dockerfile"
    done = subprocess.run(["hadolint", str(dockerfile)], capture_output=True)
    assert done.returncode == 0, done.stdout


def test_the_dockerfile_runs_nanonas_study_from_a_pinned_base_as_a_user():
    steps = _dockerfile()
    (base,) = [args for word, args in steps if word == "FROM"]
    assert re.fullmatch(r"[\w./-]+:[\w.-]+", base) and not base.endswith(":latest")
    (entry,) = [args for word, args in steps if word == "ENTRYPOINT"]
    assert json.loads(entry) == NANONAS  # exec form: signals reach Python (Ctrl-C, SIGTERM)
    users = [args for word, args in steps if word == "USER"]
    assert users and users[-1] not in ("root", "0")


def test_the_dockerfile_installs_this_checkout_with_existing_extras_and_no_cache():
    steps = _dockerfile()
    for word, args in steps:
        if word == "COPY":
            *sources, _ = args.split()
            assert all((ROOT / s).exists() for s in sources), args  # the context is ROOT
    (pip,) = [args for word, args in steps if word == "RUN" and "pip install" in args]
    assert "--no-cache-dir" in pip
    extras = re.search(r"\.\[([\w,-]+)\]", pip).group(1).split(",")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert set(extras) <= set(declared["optional-dependencies"])
