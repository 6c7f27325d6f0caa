"""A tiny, loadable GGUF written in-process: a 2-layer LLaMA with a byte-level BPE tokenizer.

    write_tiny_gguf(path)   ~60 KB; `import_gguf` turns it into a checkpoint in about a second

It carries what transformers' GGUF loader reads (the `llama.*` hyper-parameters, the
`tokenizer.ggml.*` vocabulary, merges, token types and special ids, a chat template) and the
tensors of LLaMA's layout, so the fuzz harness damages a file that the importer really accepts.
"""

from __future__ import annotations

from pathlib import Path

HIDDEN, LAYERS, HEADS, KV_HEADS, FFN, CONTEXT = 32, 2, 2, 1, 64, 128
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["h e", "l l", "o Ġ", "he ll"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _vocab() -> list[str]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    merged = ["".join(m.split(" ")) for m in MERGES]
    return [*SPECIALS, *bytes_to_unicode().values(), *merged]


def write_tiny_gguf(path: Path, *, arch: str = "llama", drop: tuple[str, ...] = ()) -> Path:
    """Write the tiny model to `path`; `drop` leaves out tensors by GGUF name (a damaged file)."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(0)
    tokens = _vocab()
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("tiny-llama")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types([3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS)))
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(0)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    head_dim = HIDDEN // HEADS
    tensors = {
        "token_embd.weight": weight(len(tokens), HIDDEN),
        "output_norm.weight": np.ones(HIDDEN, np.float32),
    }
    for i in range(LAYERS):
        tensors |= {
            f"blk.{i}.attn_norm.weight": np.ones(HIDDEN, np.float32),
            f"blk.{i}.ffn_norm.weight": np.ones(HIDDEN, np.float32),
            f"blk.{i}.attn_q.weight": weight(HIDDEN, HIDDEN),
            f"blk.{i}.attn_k.weight": weight(KV_HEADS * head_dim, HIDDEN),
            f"blk.{i}.attn_v.weight": weight(KV_HEADS * head_dim, HIDDEN),
            f"blk.{i}.attn_output.weight": weight(HIDDEN, HIDDEN),
            f"blk.{i}.ffn_gate.weight": weight(FFN, HIDDEN),
            f"blk.{i}.ffn_up.weight": weight(FFN, HIDDEN),
            f"blk.{i}.ffn_down.weight": weight(HIDDEN, FFN),
        }
    for name, value in tensors.items():
        if name not in drop:
            writer.add_tensor(name, value.astype(np.float16) if name.endswith("ffn_up.weight") else value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
