# shellcheck shell=bash
# Shared functions of the scripts/train_camel_*.sh launchers; sourced, never run.
#
# A launcher sets its own defaults (`: "${VAR:=value}"`), then calls, in this order:
#   camel_setup            common defaults, checks of every path and number (exit 1 with a
#                          message, before anything starts)
#   camel_grad_accum       GRAD_ACCUM from GLOBAL_BATCH_SIZE (or checks the one given)
#   camel_launch MODULE ARGS...
#                          one node: `torchrun ... -m MODULE ARGS`; several (under Slurm):
#                          `srun ... torchrun ...`, one torchrun per node, c10d rendezvous on
#                          the first host of the node list. DRY_RUN=1 prints that command on
#                          stdout (one line, shell-quoted) instead of running it.
#
# Environment read here (launchers document their own defaults at their top):
#   MODEL_PATH DATA_PATH OUTPUT_DIR TEMPLATE MODEL_MAX_LENGTH
#   NNODES (default $SLURM_NNODES, else 1)   GPUS_PER_NODE (default $SLURM_GPUS_ON_NODE, else the script's)
#   PER_DEVICE_TRAIN_BATCH_SIZE GLOBAL_BATCH_SIZE GRAD_ACCUM (computed when unset)
#   MASTER_ADDR (rendezvous host; default: first host of $SLURM_JOB_NODELIST, or localhost)
#   MASTER_PORT (default: a free port)       RDZV_ID (default $SLURM_JOB_ID)
#   FSDP_CONFIG DEEPSPEED_CONFIG (preset files; checked when set)
#   EXTRA_ARGS (more training flags, split on whitespace; the script's own arguments too)
#   TORCHRUN (default: torchrun on PATH, else <checkout>/.venv/bin/torchrun)  PYTHON  SRUN_ARGS
#   DRY_RUN=1   CAMEL_NO_SCONTROL=1 (read the node list in bash even where scontrol exists)

# The checkout this file belongs to (absolute), for the preset paths.
CAMEL_CHAT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CAMEL_CHAT_DIR

camel_die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

camel_info() {
    printf '%s\n' "$*" >&2
}

# camel_positive_int NAME: the variable NAME holds an integer >= 1, else exit.
camel_positive_int() {
    local name=$1
    local value=${!name:-}
    [[ $value =~ ^[0-9]+$ && $((10#$value)) -ge 1 ]] || camel_die "$name=$value: must be a whole number >= 1"
}

# camel_first_host NODELIST: the first host of a Slurm node list. Uses `scontrol show hostnames`
# when it is installed; otherwise a bash parser of the compressed form ("node[03-05]",
# "gpu[01-04],cpu7", "rack[1-2]-n[01,07]"): first element, each bracket at its first value.
camel_first_host() {
    local list=$1 hosts
    [[ -n $list ]] || return 1
    if [[ ${CAMEL_NO_SCONTROL:-0} != 1 ]] && command -v scontrol >/dev/null 2>&1 \
        && hosts=$(scontrol show hostnames "$list" 2>/dev/null) && [[ -n $hosts ]]; then
        printf '%s\n' "${hosts%%$'\n'*}"
        return 0
    fi
    local first="" ch depth=0 i
    for ((i = 0; i < ${#list}; i++)); do
        ch=${list:i:1}
        case $ch in
            '[') depth=$((depth + 1)) ;;
            ']') depth=$((depth - 1)) ;;
            ',') ((depth == 0)) && break ;;
        esac
        first+=$ch
    done
    local host="" prefix rest inside item
    while [[ $first == *'['* ]]; do
        prefix=${first%%\[*}
        rest=${first#*\[}
        [[ $rest == *']'* ]] || return 1
        inside=${rest%%\]*}
        first=${rest#*\]}
        item=${inside%%,*}
        host+=$prefix${item%%-*}
    done
    host+=$first
    [[ -n $host && $host != *[][,]* ]] || return 1
    printf '%s\n' "$host"
}

# camel_free_port: a TCP port free on this host right now (bind to port 0 and read it back).
camel_free_port() {
    "$PYTHON" -c 'import socket
s = socket.socket()
s.bind(("", 0))
print(s.getsockname()[1])
s.close()'
}

# camel_setup: defaults shared by every launcher, then all checks (before anything runs).
camel_setup() {
    : "${NNODES:=${SLURM_NNODES:-1}}"
    : "${DATA_PATH:=datasets/dataset.json}"
    : "${TEMPLATE:=vicuna_v1.1}"
    : "${MODEL_MAX_LENGTH:=2048}"
    : "${EXTRA_ARGS:=}"
    : "${DRY_RUN:=0}"
    : "${SRUN_ARGS:=}"
    : "${FSDP_CONFIG:=}"
    : "${DEEPSPEED_CONFIG:=}"
    if [[ -z ${PYTHON:-} ]]; then
        PYTHON=$(command -v python3 || command -v python || true)
        [[ -n $PYTHON ]] || PYTHON=python3
    fi
    if [[ -z ${TORCHRUN:-} ]]; then
        TORCHRUN=$(command -v torchrun || true)
        [[ -n $TORCHRUN ]] || TORCHRUN="$CAMEL_CHAT_DIR/.venv/bin/torchrun"
    fi

    local name
    for name in NNODES GPUS_PER_NODE PER_DEVICE_TRAIN_BATCH_SIZE GLOBAL_BATCH_SIZE MODEL_MAX_LENGTH; do
        camel_positive_int "$name"
    done
    [[ -z ${GRAD_ACCUM:-} ]] || camel_positive_int GRAD_ACCUM
    if [[ -n ${MASTER_PORT:-} ]]; then
        if [[ ! $MASTER_PORT =~ ^[0-9]{1,5}$ ]] || ((10#$MASTER_PORT < 1 || 10#$MASTER_PORT > 65535)); then
            camel_die "MASTER_PORT=$MASTER_PORT: not a TCP port"
        fi
    fi

    [[ -n ${MODEL_PATH:-} ]] || camel_die "MODEL_PATH is empty: set it to a local Hugging Face model folder"
    [[ -d $MODEL_PATH ]] || camel_die "MODEL_PATH=$MODEL_PATH: no such model folder (set MODEL_PATH to a" \
        "local Hugging Face model folder; download one first, e.g. hf download ORG/NAME --local-dir DIR)"
    [[ -f $MODEL_PATH/config.json ]] || camel_die "MODEL_PATH=$MODEL_PATH: no config.json in this folder"
    [[ -f $DATA_PATH ]] || camel_die "DATA_PATH=$DATA_PATH: no such data file (the merged conversations" \
        "written by merge.py, e.g. datasets/dataset.json; see the README's data pipeline)"
    [[ -n ${OUTPUT_DIR:-} ]] || camel_die "OUTPUT_DIR is empty"
    [[ -z $FSDP_CONFIG || -f $FSDP_CONFIG ]] || camel_die "FSDP_CONFIG=$FSDP_CONFIG: no such preset file"
    [[ -z $DEEPSPEED_CONFIG || -f $DEEPSPEED_CONFIG ]] \
        || camel_die "DEEPSPEED_CONFIG=$DEEPSPEED_CONFIG: no such preset file"
    if ((NNODES > 1)) && [[ -z ${SLURM_JOB_NODELIST:-} && -z ${MASTER_ADDR:-} ]]; then
        camel_die "NNODES=$NNODES needs a Slurm allocation (sbatch / salloc, which set SLURM_JOB_NODELIST)" \
            "or MASTER_ADDR and MASTER_PORT with this script started on every node; NNODES=1 runs on this node"
    fi
    if ((NNODES > 1)) && [[ -n ${SLURM_NNODES:-} ]] && ((NNODES > SLURM_NNODES)); then
        camel_die "NNODES=$NNODES: the Slurm allocation has only $SLURM_NNODES node(s)"
    fi
    if ((NNODES > 1)) && [[ -z ${SLURM_JOB_NODELIST:-} && -z ${MASTER_PORT:-} ]]; then
        camel_die "MASTER_ADDR without Slurm: set MASTER_PORT too (the same on every node)"
    fi
}

# camel_grad_accum: GRAD_ACCUM so that per-device batch × GRAD_ACCUM × GPUs = GLOBAL_BATCH_SIZE.
camel_grad_accum() {
    local gpus=$((NNODES * GPUS_PER_NODE))
    local per_step=$((PER_DEVICE_TRAIN_BATCH_SIZE * gpus))
    if [[ -z ${GRAD_ACCUM:-} ]]; then
        ((GLOBAL_BATCH_SIZE % per_step == 0)) || camel_die "GLOBAL_BATCH_SIZE=$GLOBAL_BATCH_SIZE is not a" \
            "multiple of PER_DEVICE_TRAIN_BATCH_SIZE × GPUs = $PER_DEVICE_TRAIN_BATCH_SIZE × $gpus" \
            "($NNODES node(s) × $GPUS_PER_NODE) = $per_step; change one of them, or set GRAD_ACCUM"
        GRAD_ACCUM=$((GLOBAL_BATCH_SIZE / per_step))
    fi
    camel_info "global batch $((per_step * GRAD_ACCUM)) = $PER_DEVICE_TRAIN_BATCH_SIZE per GPU ×" \
        "$GRAD_ACCUM accumulation steps × $gpus GPUs ($NNODES node(s) × $GPUS_PER_NODE)"
}

# camel_launch MODULE ARGS...: torchrun (under srun on several nodes) running `python -m MODULE`.
camel_launch() {
    local module=$1
    shift
    local host port rdzv_id
    if ((NNODES > 1)) && [[ -z ${MASTER_ADDR:-} ]]; then
        host=$(camel_first_host "$SLURM_JOB_NODELIST") \
            || camel_die "SLURM_JOB_NODELIST=$SLURM_JOB_NODELIST: cannot read its first host; set MASTER_ADDR"
    else
        host=${MASTER_ADDR:-localhost}
    fi
    # On several nodes this runs on the first one (sbatch runs the script there), which hosts the
    # c10d store: the port is free where it is needed.
    port=${MASTER_PORT:-}
    [[ -n $port ]] || port=$(camel_free_port) || camel_die "cannot pick a free port with $PYTHON; set MASTER_PORT"
    rdzv_id=${RDZV_ID:-${SLURM_JOB_ID:-camel-chat-$$}}

    local -a extra=() cmd=()
    read -r -d '' -a extra <<<"$EXTRA_ARGS" || true
    if ((NNODES > 1)) && [[ -n ${SLURM_JOB_NODELIST:-} ]]; then
        local -a srun_extra=()
        read -r -d '' -a srun_extra <<<"$SRUN_ARGS" || true
        cmd=(srun "--nodes=$NNODES" "--ntasks=$NNODES" --ntasks-per-node=1 --kill-on-bad-exit=1
            ${srun_extra[@]+"${srun_extra[@]}"})
    fi
    cmd+=("$TORCHRUN" --nnodes "$NNODES" --nproc_per_node "$GPUS_PER_NODE"
        --rdzv_backend c10d --rdzv_endpoint "$host:$port" --rdzv_id "$rdzv_id"
        -m "$module" "$@" ${extra[@]+"${extra[@]}"})

    if [[ $DRY_RUN == 1 ]]; then
        local quoted
        printf -v quoted '%q ' "${cmd[@]}"
        printf '%s\n' "${quoted% }"
        return 0
    fi
    if [[ ${cmd[0]} == srun ]]; then
        command -v srun >/dev/null 2>&1 || camel_die "srun not found: multi-node runs need Slurm"
    fi
    [[ -x $TORCHRUN ]] || command -v "$TORCHRUN" >/dev/null 2>&1 || camel_die "TORCHRUN=$TORCHRUN: not" \
        "found; activate the environment camel_chat is installed in (make install builds .venv)"
    camel_info "+ ${cmd[*]}"
    exec "${cmd[@]}"
}
