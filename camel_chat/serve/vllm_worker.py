"""The vLLM worker: the model worker's app (same endpoints, minus embeddings) over vLLM's AsyncLLM.

    pip install 'camel_chat[vllm]'          # a CUDA GPU is required
    python -m camel_chat.serve.vllm_worker --model-path path/to/checkpoint \\
        [--tensor-parallel-size 2] [--gpu-memory-utilization 0.9] [--max-model-len 4096] \\
        [--dtype half] [--trust-remote-code] [--controller-address http://localhost:21001]

Every vLLM engine flag (`AsyncEngineArgs`) passes through; `--num-gpus` is FastChat's name for
`--tensor-parallel-size`. Without vllm installed the command says how to install it and exits 1.
The adapter between vLLM and our `Engine` interface is `vllm_engine.VllmEngine`.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from collections.abc import Sequence
from typing import Any

from camel_chat.errors import run_command
from camel_chat.serve.model_worker import add_worker_arguments, make_app, serve, settings_from_args

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "vLLM is not installed. The vLLM worker needs a CUDA GPU and the vllm extra:\n"
    "    pip install 'camel_chat[vllm]'\n"
    "On CPU, serve with: python -m camel_chat.serve.model_worker --device cpu --model-path ..."
)
DEFAULT_LIMIT = 1024  # FastChat's vLLM worker default: vLLM schedules the batch itself


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def _base_parser(
    parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser,
) -> argparse.ArgumentParser:
    parser = parser_class(
        prog="python -m camel_chat.serve.vllm_worker",
        description="Serve a checkpoint with vLLM over FastChat's worker protocol (GPU only).",
        epilog="All vLLM engine flags (AsyncEngineArgs) are accepted when vllm is installed.",
    )
    add_worker_arguments(parser)
    parser.set_defaults(limit_worker_concurrency=DEFAULT_LIMIT)
    parser.add_argument(
        "--num-gpus", type=int, default=None, help="FastChat's name for --tensor-parallel-size"
    )
    return parser


def _vllm_parser() -> tuple[argparse.ArgumentParser, Any]:
    """Our flags plus vLLM's engine flags, and the AsyncEngineArgs class."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    try:
        from vllm.utils import FlexibleArgumentParser
    except ImportError:  # moved in newer releases
        from vllm.utils.argparse_utils import FlexibleArgumentParser  # type: ignore[no-redef]
    parser = _base_parser(FlexibleArgumentParser)
    return AsyncEngineArgs.add_cli_args(parser), AsyncEngineArgs


def _async_llm_class() -> Any:
    try:
        from vllm.v1.engine.async_llm import AsyncLLM

        return AsyncLLM
    except ImportError:  # older releases
        from vllm import AsyncLLMEngine

        return AsyncLLMEngine


def _run(argv: Sequence[str] | None) -> int:
    if not vllm_available():
        _base_parser().parse_known_args(argv)  # --help still works
        print(INSTALL_HINT, file=sys.stderr)
        return 1
    from vllm import SamplingParams

    from camel_chat.serve.vllm_engine import VllmEngine

    parser, engine_args_class = _vllm_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO)
    args.model = args.model_path
    if args.num_gpus is not None:
        args.tensor_parallel_size = args.num_gpus
    settings = settings_from_args(args)
    engine_args = engine_args_class.from_cli_args(args)
    llm = _async_llm_class().from_engine_args(engine_args)
    engine = VllmEngine.build(
        llm,
        args.model_path,
        sampling_params_cls=SamplingParams,
        model_names=args.model_names,
        conv_template=args.conv_template,
        context_length=getattr(getattr(llm, "model_config", None), "max_model_len", None)
        or args.max_model_len,
        trust_remote_code=args.trust_remote_code,
    )
    log.info("serving %s with vLLM (template %s)", engine.model_names, engine.template_name)
    try:
        serve(make_app(engine, settings), args)
    finally:
        shutdown = getattr(llm, "shutdown", None)
        if shutdown is not None:
            shutdown()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the vLLM worker; 1 without vllm, 2 on a bad flag."""
    return run_command(_run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
