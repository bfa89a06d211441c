"""Tiny randomly initialised AST and CLAP models for the tests, saved like real checkpoints.

No weights can be downloaded on the test machines, so each builder makes a model of the real
class with a small configuration, a working feature extractor / tokenizer, and saves both
with ``save_pretrained`` into a folder that the scripts load exactly as they would load a
cloned checkpoint. Building, saving and loading take a few seconds on a laptop CPU.

* AST: ``ASTForAudioClassification`` + ``ASTFeatureExtractor`` with a 1.28 s window
  (``max_length`` 128 frames, equal in the config and the extractor, as the model requires).
* CLAP: ``ClapModel`` + ``ClapProcessor`` (``ClapFeatureExtractor`` at 48 kHz with the real
  10 s window and 64 mel bins, which the audio tower's shape requires, and a RoBERTa tokenizer
  with its specials at ids 0-4), fused (``truncation="fusion"``) or unfused
  (``truncation="rand_trunc"``) like the two kinds of published checkpoint.
"""

import json
from pathlib import Path

# Words the tiny tokenizer learns merges for; any other text still tokenizes (byte-level BPE).
_CORPUS = [
    "birds chirping, wind noise, traffic hum, people talking, dog barking, rain falling",
    "engine idling, footsteps walking, water flowing, music playing, car horn, crowd cheering",
]
TINY_PROJECTION_DIM = 16
TINY_AST_HIDDEN = 32


def _roberta_tokenizer():
    """A byte-level BPE tokenizer in RoBERTa's class with ``<s> <pad> </s> <unk> <mask>`` at ids 0-4."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import RobertaTokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(_CORPUS * 4, trainer)
    state = json.loads(bpe.to_str())["model"]
    vocab = state["vocab"]
    assert [vocab[s] for s in specials] == [0, 1, 2, 3, 4]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    return RobertaTokenizer(vocab=vocab, merges=merges)


def build_tiny_clap(folder, fused: bool, seed: int = 0) -> Path:
    """Save a tiny random ``ClapModel`` and its ``ClapProcessor`` to ``folder``; returns the folder.

    ``fused`` gives a feature-fusion audio tower (``enable_fusion``, ``fusion_type="aff_2d"``,
    as ``laion/clap-htsat-fused``) and a feature extractor with ``truncation="fusion"``;
    otherwise an unfused tower with ``truncation="rand_trunc"``.
    """
    import torch
    import transformers
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor

    transformers.utils.logging.disable_progress_bar()

    tokenizer = _roberta_tokenizer()
    config = ClapConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=40,
            projection_dim=TINY_PROJECTION_DIM,
        ),
        audio_config=dict(
            # The tower's output width is the patch-embedding width times 2^(stages - 1).
            patch_embeds_hidden_size=16,
            hidden_size=32,
            depths=[1, 1],
            num_attention_heads=[2, 2],
            num_hidden_layers=2,
            enable_fusion=fused,
            fusion_type="aff_2d" if fused else None,
            projection_dim=TINY_PROJECTION_DIM,
        ),
        projection_dim=TINY_PROJECTION_DIM,
    )
    torch.manual_seed(seed)
    model = ClapModel(config).eval()
    extractor = ClapFeatureExtractor(truncation="fusion" if fused else "rand_trunc")
    folder = Path(folder)
    ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


def build_tiny_ast(folder, seed: int = 0) -> Path:
    """Save a tiny random ``ASTForAudioClassification`` and its ``ASTFeatureExtractor`` to ``folder``."""
    import torch
    import transformers
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    transformers.utils.logging.disable_progress_bar()

    max_length = 128  # frames of 10 ms: the extractor pads or cuts every clip to 1.28 s
    config = ASTConfig(
        hidden_size=TINY_AST_HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_length=max_length,
        num_mel_bins=128,
        num_labels=3,
    )
    torch.manual_seed(seed)
    model = ASTForAudioClassification(config).eval()
    folder = Path(folder)
    ASTFeatureExtractor(max_length=max_length, num_mel_bins=128).save_pretrained(folder)
    model.save_pretrained(folder)
    return folder
