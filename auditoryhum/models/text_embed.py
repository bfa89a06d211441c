"""Text embeddings: sentence-transformers embeddings of labels, and CLAP text embeddings.

Labels repeat heavily across clips (ADVANCE: 5,075 clips, 668 distinct kept labels), so each
distinct text is embedded once and the rows are scattered back to clip order
(:func:`unique_texts`). CLAP text embeddings are also kept across runs in a persistent cache
keyed by (model identity, text) (:mod:`auditoryhum.io.text_cache`).
"""

import os
from dataclasses import dataclass
from typing import Callable, List, Sequence, Tuple

import numpy as np

from auditoryhum.console import note
from auditoryhum.defaults import CLAP_TEXT_BATCH_SIZE, ST_BATCH_SIZE
from auditoryhum.errors import ParameterError, UserError
from auditoryhum.errors import MentionError, as_parameter, mention


def unique_texts(texts: Sequence[str]) -> Tuple[List[str], np.ndarray]:
    """Distinct texts in first-seen order, and for each input its index into them."""
    index = {}
    inverse = np.empty(len(texts), dtype=np.int64)
    for i, text in enumerate(texts):
        inverse[i] = index.setdefault(text, len(index))
    return list(index), inverse


# Model types that are no sentence encoder: given as the sentence model (st_model) they would load as a plain
# transformer with mean pooling added and embed labels with a tower never trained for it.
_NOT_SENTENCE_TYPES = ("clap", "clap_text_model", "clap_audio_model", "audio-spectrogram-transformer",
                       "whisper", "wav2vec2", "hubert", "qwen2_audio", "qwen2_5_omni")


def _config_model_type(folder: str) -> str:
    import json

    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return ""
    return str(config.get("model_type", "")) if isinstance(config, dict) else ""


def check_sentence_model(model: str, param: str = "st_model") -> None:
    """Refuse, in one line naming the parameter ``param``, a local folder that is not a
    sentence-transformers model.

    A sentence-transformers folder holds ``modules.json`` (its module stack: transformer,
    pooling, normalisation). Without it, sentence-transformers silently wraps any model in mean
    pooling, so a CLAP or other folder given by mistake would "work" and embed the labels with
    the wrong model. Hub ids are checked after loading (:func:`load_sentence_model`).
    """
    folder = os.path.expanduser(model)
    if not os.path.isdir(folder) or os.path.exists(os.path.join(folder, "modules.json")):
        return
    kind = _config_model_type(folder)
    what = f"a {kind!r} model folder" if kind else "not a sentence-transformers model folder"
    raise ParameterError(param, f"{model!r} is {what} (no modules.json), not a sentence-transformers model; "
                                f"give a sentence-transformers model such as sentence-transformers/all-MiniLM-L6-v2")


def load_sentence_model(model: str, device: str, param: str = "st_model"):
    """Load a sentence-transformers model from a local folder or a Hugging Face hub id.

    Parameters
    ----------
    model : str
        Folder or hub id.
    device : str
        A resolved torch device (:func:`auditoryhum.models.device.resolve_device`).
    param : str, default "st_model"
        The parameter that named ``model``, cited in errors (the command line shows its flag).

    Raises
    ------
    ParameterError
        One line naming ``param`` and the model when it is missing, cannot be loaded, or is not
        a sentence-transformers model (:func:`check_sentence_model`; a hub model whose first
        module is a CLAP or audio model).
    """
    from sentence_transformers import SentenceTransformer

    from auditoryhum.console import progress_enabled
    from auditoryhum.models.loader import check_source, describe_source, first_line

    with as_parameter(param):
        check_source(model, param)
    check_sentence_model(model, param)
    if not progress_enabled():
        import transformers

        transformers.utils.logging.disable_progress_bar()
    try:
        loaded = SentenceTransformer(os.path.expanduser(model), device=device)
    except Exception as exc:  # hub, file and config errors come in many types
        raise MentionError(f"{mention(param)}: cannot load a sentence-transformers model from "
                           f"{describe_source(model)}: {first_line(exc)}") from None
    first = loaded[0] if len(loaded) else None
    kind = str(getattr(getattr(getattr(first, "auto_model", None), "config", None), "model_type", ""))
    if kind in _NOT_SENTENCE_TYPES:
        raise ParameterError(param, f"{model!r} is a {kind!r} model, not a sentence-transformers model; "
                                    f"give a sentence-transformers model such as sentence-transformers/all-MiniLM-L6-v2")
    loaded._auditoryhum_source = model
    return loaded


def _is_missing_label(text: str) -> bool:
    """A kept label that is empty (no usable candidate, or audio that failed): no text to embed."""
    return not text.strip()


def embed_distinct_texts(model, texts: Sequence[str], batch_size: int = ST_BATCH_SIZE,
                         show_progress: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Embed each distinct real text of ``texts`` once.

    Returns
    -------
    vectors : np.ndarray, shape (U, D), float32
        One row per distinct real text.
    inverse : np.ndarray, shape (len(texts),)
        The row of ``vectors`` of each text; -1 for an empty text (a clip with no usable label),
        whose row is NaN, never the embedding of ``""`` (which would put every failed clip into
        one tight cluster). One note says how many.

    Raises
    ------
    UserError
        When the model gives a NaN or infinite embedding for a real text, naming the model.
    """
    missing = np.fromiter((_is_missing_label(t) for t in texts), dtype=bool, count=len(texts))
    if missing.any():
        note(f"{int(missing.sum())} of {len(texts)} rows have no label (empty kept label); their rows are NaN")
    real = [t for t, m in zip(texts, missing) if not m]
    distinct, inverse_real = unique_texts(real)
    if len(distinct) < len(real):
        note(f"embedding {len(distinct)} distinct labels for {len(real)} rows")
    # Renamed in sentence-transformers 5 (the old name warns); only needed when no text is real.
    size = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    if distinct:
        vectors = np.asarray(model.encode(distinct, batch_size=batch_size, convert_to_numpy=True,
                                          show_progress_bar=show_progress), dtype=np.float32)
        bad = np.flatnonzero(~np.all(np.isfinite(vectors), axis=1))
        if bad.size:
            name = getattr(model, "_auditoryhum_source", "the sentence model")
            raise UserError(f"sentence model {name} gives non-finite embeddings for {bad.size} of {len(distinct)} "
                            f"labels (e.g. {distinct[bad[0]]!r}); its weights are broken")
    else:
        vectors = np.zeros((0, int(size() or 0)), dtype=np.float32)
    inverse = np.full(len(texts), -1, dtype=np.intp)
    inverse[~missing] = np.asarray(inverse_real, dtype=np.intp)
    return vectors, inverse


def embed_texts(model, texts: Sequence[str], batch_size: int = ST_BATCH_SIZE, show_progress: bool = False) -> np.ndarray:
    """Embed ``texts`` with a loaded sentence-transformers ``model``: one float32 row per text
    (:func:`embed_distinct_texts`, expanded; NaN rows for empty texts).

    Returns
    -------
    np.ndarray, shape (len(texts), D), float32
    """
    from auditoryhum.io.artefacts import rows_by_index

    vectors, inverse = embed_distinct_texts(model, texts, batch_size, show_progress)
    return rows_by_index(vectors, inverse)


# ---------------------------------------------------------------------------------------
# CLAP text embeddings (features_clap_text.py)

CLAP_TEXT_NAMESPACE = "clap-text"


def clap_model_identity(source: str, param: str = "clap_model") -> str:
    """Identity of the CLAP model ``source`` for the text-embedding cache, without loading it.

    :func:`auditoryhum.models.identity.identity_digest` of its
    :func:`~auditoryhum.models.identity.model_identity` (a folder's file sizes and modification
    times; a hub id and the commit of the snapshot it resolves to). Errors are
    :class:`~auditoryhum.errors.ParameterError` naming ``param`` (default ``"clap_model"``).
    """
    with as_parameter(param):
        return _clap_model_identity(source, param)


def _clap_model_identity(source: str, param: str) -> str:
    from auditoryhum.models.identity import identity_digest, model_identity
    from auditoryhum.models.loader import check_source, describe_source

    folder = os.path.expanduser(source)
    if os.path.isdir(folder):
        if not os.path.isfile(os.path.join(folder, "config.json")):
            raise UserError(f"{param} {folder!r} has no readable config.json; give the folder of a Hugging Face model")
        return identity_digest(model_identity(folder))
    check_source(source, param)
    from transformers.utils import cached_file

    try:
        # Resolves (and fetches, unless offline) the config: the model must exist before its
        # identity is its snapshot's commit.
        cached_file(source, "config.json")
    except Exception as exc:  # hub and file errors come in many types
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MentionError(f"{mention(param)}: cannot find a model at {describe_source(source)}: {reason}") from None
    return identity_digest(model_identity(source))


class ClapTextEncoder:
    """The CLAP text tower: ``ClapModel.get_text_features`` (projected, L2-normalised), batched."""

    def __init__(self, model, tokenizer, device: str, name: str = "the CLAP model"):
        self.name = name
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.dim = int(model.config.text_config.projection_dim)
        self.max_tokens = int(model.config.text_config.max_position_embeddings) - 2  # RoBERTa offsets positions by 2

    @classmethod
    def load(cls, source: str, device: str, param: str = "clap_model") -> "ClapTextEncoder":
        """Load ``ClapModel`` and its tokenizer (via ``ClapProcessor``) from a folder or hub id.

        Errors are :class:`~auditoryhum.errors.ParameterError` naming ``param`` (the parameter
        that named ``source``; the command line shows its flag).
        """
        with as_parameter(param):
            return cls._load(source, device, param)

    @classmethod
    def _load(cls, source: str, device: str, param: str) -> "ClapTextEncoder":
        from transformers import ClapModel, ClapProcessor

        from auditoryhum.console import progress_enabled
        from auditoryhum.models.loader import check_model_type, load_pretrained, load_processor

        check_model_type(source, param, ("clap",), "a CLAP model")
        if not progress_enabled():
            import transformers

            transformers.utils.logging.disable_progress_bar()
        processor = load_processor(ClapProcessor, source, param)
        model = load_pretrained(ClapModel, source, param, device=device)
        return cls(model, processor.tokenizer, device, name=source)

    def encode(self, texts: Sequence[str], batch_size: int = CLAP_TEXT_BATCH_SIZE, show_progress: bool = False) -> np.ndarray:
        """Embed ``texts``: float32 rows, shape (len(texts), dim), in the order given.

        Texts are batched by length, so a batch pads little; the attention mask keeps padding
        out of every text's embedding.
        """
        import torch

        from auditoryhum.console import progress_bar

        rows = np.empty((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        bar = progress_bar(len(texts), desc="CLAP text", unit="text") if show_progress else None
        try:
            for start in range(0, len(order), batch_size):
                chosen = order[start : start + batch_size]
                tokens = self.tokenizer(
                    [texts[i] for i in chosen], padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
                )
                with torch.inference_mode():
                    out = self.model.get_text_features(
                        input_ids=tokens["input_ids"].to(self.device), attention_mask=tokens["attention_mask"].to(self.device)
                    )
                rows[chosen] = out.pooler_output.float().cpu().numpy()
                if bar is not None:
                    bar.update(len(chosen))
        finally:
            if bar is not None:
                bar.close()
        bad = np.flatnonzero(~np.all(np.isfinite(rows), axis=1))
        if bad.size:
            # A NaN row would poison the text cache and every score computed from it.
            raise UserError(f"CLAP model {self.name} gives non-finite text embeddings for {bad.size} of "
                            f"{len(texts)} texts (e.g. {texts[bad[0]]!r}); its weights are broken or overflow")
        return rows


@dataclass
class TextRows:
    """Embeddings of distinct texts, and where they came from."""

    rows: np.ndarray  # float32, one row per text, in the order given
    encoded: int  # texts run through the encoder in this call
    cached: int  # texts found in the cache


def embed_distinct_cached(
    texts: Sequence[str],
    encode: Callable[[List[str]], np.ndarray],
    cache=None,
) -> TextRows:
    """Rows of the distinct ``texts``: from ``cache`` where present, else from ``encode``.

    Parameters
    ----------
    texts : sequence of str
        Distinct texts (see :func:`unique_texts`).
    encode : callable
        ``encode(list_of_texts) -> array (len, D)``; called at most once, with the texts the
        cache lacks, and not at all when it has them all (so a model can be loaded lazily).
    cache : auditoryhum.io.text_cache.TextEmbeddingCache or None
        Where rows are looked up and where new rows are added.
    """
    if len(set(texts)) != len(texts):
        raise ValueError("embed_distinct_cached needs distinct texts; use unique_texts first")
    found = cache.lookup(texts) if cache is not None else {}
    missing = [t for t in texts if t not in found]
    new_rows = np.asarray(encode(missing), dtype=np.float32) if missing else None
    if new_rows is not None and cache is not None:
        cache.add(missing, new_rows)
    if new_rows is not None:
        dim = new_rows.shape[1]
    elif found:
        dim = next(iter(found.values())).shape[0]
    else:
        dim = 0
    rows = np.empty((len(texts), dim), dtype=np.float32)
    new_index = {t: k for k, t in enumerate(missing)}
    for i, text in enumerate(texts):
        if text in found:
            if found[text].shape[0] != dim:
                raise MentionError(
                    f"the text-embedding cache holds {found[text].shape[0]}-d rows but the model gives {dim}-d; "
                    f"delete the cache folder or use {mention('no_cache')}"
                )
            rows[i] = found[text]
        else:
            rows[i] = new_rows[new_index[text]]
    return TextRows(rows, len(missing), len(found))
