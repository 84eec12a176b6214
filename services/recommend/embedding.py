"""Text → L2-normalised float32 vectors with sentence-transformers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from services.config import TailorConfig
from services.model_files import embedding_model_path


def pick_device(wanted: str) -> str:
    if wanted != "auto":
        return wanted
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class TextEmbedder:
    def __init__(self, config: TailorConfig):
        from sentence_transformers import SentenceTransformer

        self.model_path = embedding_model_path(config)
        self.device = pick_device(config.embedding.device)
        self.batch_size = config.embedding.batch_size
        self.model = SentenceTransformer(self.model_path, device=self.device)
        self.dimension = int(self.model.get_embedding_dimension())
        # A readable model name for manifests and responses.
        self.model_name = config.embedding.model or "sentence-transformers/all-MiniLM-L6-v2"

    def known_words(self) -> frozenset[str]:
        """Whole words of the model's tokenizer vocabulary (lower case): a word it must split
        into pieces is rare, misspelt or invented."""
        vocab = getattr(self.model.tokenizer, "vocab", {}) or {}
        return frozenset(w for w in vocab if w.isalpha() and w.islower())

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(texts), self.dimension)


def item_texts(items: pd.DataFrame) -> list[str]:
    """The text an item is embedded by: title, then category, brand and the start of the description."""
    parts = [items["title"].fillna("").astype(str)]
    for column, limit in (("category", 200), ("brand", 100), ("description", 400)):
        if column in items:
            parts.append(items[column].fillna("").astype(str).str.slice(0, limit))
    joined = parts[0]
    for part in parts[1:]:
        joined = joined.str.cat(part, sep=". ").str.replace(r"(\. )+$", "", regex=True)
    return joined.str.strip().tolist()
