#!/usr/bin/env bash
# nanonas on Slurm: a job array with one worker per GPU, all sharing one study.
#
#   export NANONAS_STORAGE=postgresql://nanonas@db-host:5432/nanonas   # password: ~/.pgpass
#   sbatch examples/slurm.sh                                  # 8 array tasks, 8 GPUs
#   DRY_RUN=1 SLURM_ARRAY_TASK_ID=0 bash examples/slurm.sh    # print what task 0 would run
#
# Every array task runs `python -m nanonas.study` on the one GPU Slurm gave it, against the
# storage in NANONAS_STORAGE (PostgreSQL, MySQL or Redis: never SQLite or a journal file on
# a cluster). Each adds NANONAS_TRIALS trials, so the study grows by 8 x NANONAS_TRIALS. A task
# that dies (node lost, preempted, out of time) loses only its running trial: any other
# worker fails it after twice --heartbeat-interval and re-queues its architecture. Resubmit
# the same script to go on. Download the dataset once before the first submission
# (README, "Slurm"): array tasks that start together must not download it at once.
#
# What to change: the #SBATCH lines (array size = number of GPUs, partition, time), the
# variables below, and the module/conda line that puts nanonas's Python on the PATH.
#SBATCH --job-name=nanonas
#SBATCH --array=0-7
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=24:00:00
#SBATCH --output=nanonas-%A_%a.out
set -euo pipefail

: "${NANONAS_STORAGE:?set NANONAS_STORAGE to a postgresql://, mysql:// or redis:// URL}"
task=${SLURM_ARRAY_TASK_ID:?run this under sbatch, or set SLURM_ARRAY_TASK_ID for a dry run}
study=${NANONAS_STUDY:-cifar10-search}
trials=${NANONAS_TRIALS:-25}
data_dir=${NANONAS_DATA_DIR:-$HOME/nanonas-data}  # shared by the nodes, filled beforehand
config=${NANONAS_CONFIG:-cifar10-nsga2}          # a preset or a TOML file of flags

# A seed of its own per task: workers that start together must not propose the same
# architectures (a changed --seed never changes the study's recipe).
cmd=(
  python -m nanonas.study
  --config "$config"
  --storage "$NANONAS_STORAGE"
  --study-name "$study"
  --n-trials "$trials"
  --seed "$task"
  --data-dir "$data_dir"
  --device cuda
  --no-progress
)

if [[ -n "${DRY_RUN:-}" ]]; then
  printf '%q ' "${cmd[@]}" | sed 's/ $//'
  echo
  exit 0
fi
# module load python/3.11   # or: source ~/venvs/nanonas/bin/activate
exec srun --ntasks=1 "${cmd[@]}"
