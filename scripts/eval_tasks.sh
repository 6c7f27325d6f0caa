#!/bin/bash
# lm-evaluation-harness on the seed's task set (spec §6.6): arc_challenge 25-shot,
# hellaswag 10-shot, mmlu 5-shot, truthfulqa_mc2 0-shot; one result folder per task under
# OUTPUT_DIR, then a summary table (metric × 100).
#
#   MODEL_PATH=output/camel-7B bash scripts/eval_tasks.sh                        # local checkpoint
#   API_BASE=http://localhost:8000/v1 MODEL=camel-7B bash scripts/eval_tasks.sh  # served model
#   DRY_RUN=1 MODEL_PATH=... bash scripts/eval_tasks.sh                          # print the commands
#
#   API_BASE=http://localhost:8000/v1 MODEL=camel-7B TOKENIZER=output/camel-7B \
#       MAX_LENGTH=2048 bash scripts/eval_tasks.sh          # served model, token-id requests (exact)
#
# Environment: MODEL_PATH, or API_BASE and MODEL; OUTPUT_DIR (default eval-results/<name>);
# TOKENIZER (server mode: the served checkpoint's folder or Hub id, so lm_eval sends token ids;
# without it lm_eval loads a tokenizer named MODEL and sends text); MAX_LENGTH (server mode: the
# served context length); TASKS (space-separated, name or name:shots; default the seed's four);
# INCLUDE_PATH (extra task YAML directory); LIMIT (examples per task); PYTHON (default
# <checkout>/.venv/bin/python, else python3). Arguments to this script are passed on to lm_eval.
# Needs lm_eval (`pip install 'camel_chat[eval]'`). The seed's tasks download their data from the
# Hugging Face Hub on first use: offline, the run stops saying so, with exit status 3.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x $root/.venv/bin/python ]]; then PYTHON=$root/.venv/bin/python; else PYTHON=python3; fi
fi

args=(run)
if [[ -n ${MODEL_PATH:-} ]]; then
    args+=(--model-path "$MODEL_PATH")
    name=$(basename "$MODEL_PATH")
elif [[ -n ${API_BASE:-} && -n ${MODEL:-} ]]; then
    args+=(--api-base "$API_BASE" --model "$MODEL")
    name=$MODEL
else
    echo "error: set MODEL_PATH, or API_BASE and MODEL" >&2
    exit 1
fi
: "${OUTPUT_DIR:=eval-results/$name}"
args+=(--output-dir "$OUTPUT_DIR")
if [[ -n ${TASKS:-} ]]; then
    read -r -a task_list <<<"$TASKS"
    args+=(--tasks "${task_list[@]}")
fi
[[ -z ${TOKENIZER:-} ]] || args+=(--tokenizer "$TOKENIZER")
[[ -z ${MAX_LENGTH:-} ]] || args+=(--max-length "$MAX_LENGTH")
[[ -z ${INCLUDE_PATH:-} ]] || args+=(--include-path "$INCLUDE_PATH")
[[ -z ${LIMIT:-} ]] || args+=(--limit "$LIMIT")
[[ ${DRY_RUN:-0} != 1 ]] || args+=(--dry-run)
(($# == 0)) || args+=(-- "$@")

cd "$root"
exec "$PYTHON" -m camel_chat.evaluation.lm_eval_tasks "${args[@]}"
