#!/usr/bin/env bash
# The whole pipeline on the bundled sample data, offline, with a tiny locally built model.
#
#   bash scripts/demo.sh [WORKDIR]      (or `make demo`, which first builds .venv)
#
# 1. download_datasets finds the sample archives already in the download directory
#    (exactly how offline users run it) and extracts them;
# 2. convert_datasets_to_conversation_format writes one <name>_conv.json per dataset;
# 3. a tiny tokenizer + random LLaMA model is built locally (no hub access);
# 4. merge.py splits everything to a 2048-token budget and writes dataset.json;
# 5. train_qlora trains a LoRA adapter on it (packed rows, a few CPU steps);
# 6. apply_lora merges the adapter into the base: a standard, self-describing checkpoint;
# 7. the merged checkpoint is loaded with plain transformers and its own chat template;
# 8. controller + model_worker + OpenAI-compatible API serve it, and the official openai
#    client asks it one chat question (all on loopback; the processes are stopped at the end).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${1:-$here/demo_run}"
data="$work/datasets"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

rm -rf "$work"
mkdir -p "$data"
cp -r "$here/samples/datasets/." "$data/"

echo "== 1/8 download_datasets (archives already present: extract only)"
python -m camel_chat.data_preprocessing.download_datasets --download_directory "$data" --datasets all

echo "== 2/8 convert_datasets_to_conversation_format"
python -m camel_chat.data_preprocessing.convert_datasets_to_conversation_format \
    --download_directory "$data" --datasets all

echo "== 3/8 build a tiny local model and tokenizer"
python -m camel_chat.model.tiny --out "$work/tiny-llama" --arch llama --template vicuna_v1.1 --max-length 2048

echo "== 4/8 merge.py (vicuna_v1.1, 2048 tokens per piece)"
(cd "$here" && python merge.py --in-directory "$data" --out-file dataset.json \
    --tokenizer-path "$work/tiny-llama" --max-length 2048)

python - "$data/dataset.json" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
print(f"\ndataset.json: {len(data)} conversations; first one:")
print(json.dumps(data[0], indent=2, ensure_ascii=False)[:600])
PY

echo "== 5/8 train_qlora: a LoRA adapter on the tiny model (bits 16, packing, 8 CPU steps)"
python -m camel_chat.train.train_qlora --model_name_or_path "$work/tiny-llama" \
    --data_path "$data/dataset.json" --output_dir "$work/lora" --template vicuna_v1.1 \
    --bits 16 --lora_r 8 --lora_alpha 16 --model_max_length 2048 --packing True \
    --per_device_train_batch_size 2 --max_steps 8 --learning_rate 1e-3 \
    --logging_steps 2 --save_steps 4 --use_cpu True --report_to none

echo "== 6/8 apply_lora: merge the adapter into the base"
python -m camel_chat.model.apply_lora --base-model-path "$work/tiny-llama" \
    --target-model-path "$work/merged" --lora-path "$work/lora"

echo "== 7/8 load the merged checkpoint with plain transformers and its chat template"
python - "$work/merged" <<'PY'
import sys
from transformers import AutoModelForCausalLM, AutoTokenizer
path = sys.argv[1]
tokenizer = AutoTokenizer.from_pretrained(path)
model = AutoModelForCausalLM.from_pretrained(path)
messages = [{"role": "user", "content": "Write a haiku about camels."}]
prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
print("prompt:", repr(prompt[-80:]))
ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
out = model.generate(**ids, max_new_tokens=16, do_sample=False)
print("reply (a tiny random model, so noise):", repr(tokenizer.decode(out[0][ids["input_ids"].shape[1]:])))
PY
echo "== 8/8 serve it: controller, model_worker, openai_api_server; one chat through the openai client"
free_port() { python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
c_port=$(free_port); w_port=$(free_port); a_port=$(free_port)
pids=()
stop_servers() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop_servers EXIT
python -m camel_chat.serve.controller --host 127.0.0.1 --port "$c_port" > "$work/controller.log" 2>&1 &
pids+=($!)
python -m camel_chat.serve.model_worker --host 127.0.0.1 --port "$w_port" \
    --worker-address "http://127.0.0.1:$w_port" --controller-address "http://127.0.0.1:$c_port" \
    --model-path "$work/merged" --model-names camel-tiny --device cpu > "$work/worker.log" 2>&1 &
pids+=($!)
python -m camel_chat.serve.openai_api_server --host 127.0.0.1 --port "$a_port" \
    --controller-address "http://127.0.0.1:$c_port" > "$work/api.log" 2>&1 &
pids+=($!)
python - "$a_port" <<'PY'
import sys, time
import httpx, openai
base = f"http://127.0.0.1:{sys.argv[1]}"
deadline = time.time() + 120
while True:  # wait until the worker has registered and the API lists the model
    try:
        if "camel-tiny" in httpx.get(f"{base}/v1/models", timeout=2).text:
            break
    except httpx.HTTPError:
        pass
    if time.time() > deadline:
        sys.exit("the serving stack did not come up; see demo_run/*.log")
    time.sleep(0.5)
client = openai.OpenAI(base_url=f"{base}/v1", api_key="none")
reply = client.chat.completions.create(
    model="camel-tiny", messages=[{"role": "user", "content": "Hello, camel!"}], max_tokens=16, temperature=0
)
print("served model:", [m.id for m in client.models.list()])
print("chat reply (noise from a tiny model):", repr(reply.choices[0].message.content))
print("usage:", reply.usage)
PY
echo "demo finished: $data/dataset.json, $work/lora, $work/merged, served and answered"
