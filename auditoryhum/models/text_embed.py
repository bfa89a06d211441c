"""Sentence embeddings of labels (sentence-transformers).

Labels repeat heavily across clips (ADVANCE: 5,075 clips, 668 distinct kept labels), so each
distinct text is embedded once and the rows are scattered back to clip order.
"""

import os
from typing import List, Sequence, Tuple

import numpy as np

from auditoryhum.console import note
from auditoryhum.errors import UserError


def unique_texts(texts: Sequence[str]) -> Tuple[List[str], np.ndarray]:
    """Distinct texts in first-seen order, and for each input its index into them."""
    index = {}
    inverse = np.empty(len(texts), dtype=np.int64)
    for i, text in enumerate(texts):
        inverse[i] = index.setdefault(text, len(index))
    return list(index), inverse


def load_sentence_model(model: str, device: str, flag: str = "--st_model"):
    """Load a sentence-transformers model from a local folder or a Hugging Face hub id."""
    from sentence_transformers import SentenceTransformer

    from auditoryhum.console import progress_enabled
    from auditoryhum.models.loader import check_source, describe_source, first_line

    check_source(model, flag)
    if not progress_enabled():
        import transformers

        transformers.utils.logging.disable_progress_bar()
    try:
        return SentenceTransformer(os.path.expanduser(model), device=device)
    except Exception as exc:  # hub, file and config errors come in many types
        raise UserError(f"{flag}: cannot load a sentence-transformers model from {describe_source(model)}: {first_line(exc)}") from None


def embed_texts(model, texts: Sequence[str], batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
    """Embed ``texts`` with a loaded sentence-transformers ``model``: one float32 row per text.

    Each distinct text is embedded once; repeated texts get identical rows.
    """
    distinct, inverse = unique_texts(texts)
    if len(distinct) < len(texts):
        note(f"embedding {len(distinct)} distinct labels for {len(texts)} rows")
    vectors = model.encode(
        distinct, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=show_progress
    )
    return np.asarray(vectors, dtype=np.float32)[inverse]
