"""Tiny randomly initialised audio LLMs of the four labelling families, saved like real checkpoints.

No weights can be downloaded on the test machines, so each builder makes a model of the real
class (``Qwen2AudioForConditionalGeneration``, ``Qwen2_5OmniThinkerForConditionalGeneration``,
``Qwen3OmniMoeThinkerForConditionalGeneration``, ``Gemma3nForConditionalGeneration``) from its
own configuration class with tiny sizes, with a working processor (the family's real feature
extractor, a small byte-level BPE tokenizer in the family's tokenizer class, the family's chat
template), and saves both with ``save_pretrained``; the scripts load the folder exactly as they
would load a cloned checkpoint.

Each family is saved twice:

* ``random``: the random weights as built. It emits gibberish that depends on the audio and
  the prompt, up to the 64-token limit: good for batch invariance, resume and failure tests.
* ``known``: the same model made to answer every prompt with :data:`KNOWN_RESPONSE`, so the
  post-processing and the label file are checked on real strings: its attention outputs are
  zeroed (each position then sees only its own token) and its output layer is solved so that
  the prompt's last token and each response token are followed by the next one
  (:func:`make_known_responder`).
"""

import json
from pathlib import Path
from typing import Dict, List, Tuple

KNOWN_RESPONSE = "Birds chirping.\nWind-Noise!"
KNOWN_LABEL = "birds chirping, windnoise"  # KNOWN_RESPONSE after the published post-processing

_CORPUS = [KNOWN_RESPONSE] * 6 + [
    "Describe the auditory scene using word pairs. Separate each pair with a comma.",
    "Describing an auditory scene.",
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving "
    "auditory and visual inputs, as well as generating text and speech.",
    "system user assistant model Audio 1: dog barking, traffic noise, people talking, rain falling",
]

FAMILY_KEYS = ("qwen2a", "qwen2_5o", "qwen3o", "gemma3n")
# Weight scale of the tiny text models. The default 0.02 gives such flat logits that the random
# model's answer hardly depends on the prompt; 0.2 makes both the audio and a human hint
# change it, which the annotation and batching tests need to be meaningful.
RANDOM_INIT_STD = 0.2


# ---------------------------------------------------------------------------------------
# tokenizers


def _qwen_bpe(corpus: List[str], vocab_size: int = 420) -> Tuple[Dict[str, int], List[Tuple[str, str]]]:
    """Vocabulary and merges of a byte-level BPE trained with Qwen's own pre-tokenizer."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(corpus, trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    return dict(state["vocab"]), merges


def _qwen_tokenizer(specials: List[str], named: Dict[str, str]):
    """A ``Qwen2Tokenizer`` with the given special tokens appended after the BPE vocabulary.

    ``named`` maps keyword arguments ending in ``_token`` (``audio_token`` ...) to special
    tokens; the processors read them as ``tokenizer.audio_token`` / ``audio_token_id``.
    """
    from transformers import Qwen2Tokenizer

    vocab, merges = _qwen_bpe(_CORPUS)
    for token in specials:
        vocab[token] = len(vocab)
    extra = [t for t in specials if t not in named.values() and t != "<|endoftext|>"]
    return Qwen2Tokenizer(
        vocab=vocab, merges=merges, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens=extra, **named,
    )


# ---------------------------------------------------------------------------------------
# the "known" variant


def _last_prompt_token(processor, family_key: str) -> int:
    """Id of the last token of a templated prompt (the token the first answer token follows)."""
    from auditoryhum.models.families import get_family
    from auditoryhum.models.labeller import render_prompts, user_prompt

    text = render_prompts(processor, get_family(family_key), [user_prompt()], ["clip.wav"])[0]
    return processor.tokenizer(text, add_special_tokens=False)["input_ids"][-1]


def make_known_responder(model, processor, family_key: str, end_token_id: int, text: str = KNOWN_RESPONSE, scale: float = 20.0) -> None:
    """Make ``model`` answer every prompt of ``family_key`` with ``text`` then ``end_token_id`` (in place).

    With every attention output projection of the language model zeroed, no token sees any
    other: the final hidden state at a position is a fixed function of that position's token
    (the feed-forward, AltUp, Laurel and per-layer-input paths are all per token). The hidden
    states of the prompt's last token and of the response tokens are computed once, and the
    output layer is solved (least squares, exact when they are linearly independent) so that
    each of them gives its successor a logit of ``scale`` and every other token a logit of 0.
    """
    import torch

    tokenizer = processor.tokenizer
    chain = [_last_prompt_token(processor, family_key)] + tokenizer(text, add_special_tokens=False)["input_ids"] + [end_token_id]
    sources, targets = chain[:-1], chain[1:]
    if len(set(sources)) != len(sources):
        raise ValueError(f"the known response repeats a token ({tokenizer.convert_ids_to_tokens(sources)}); choose another text")
    head = model.get_output_embeddings()
    if head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr():
        raise ValueError("tie_word_embeddings must be False in the tiny config")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "language_model." in name and "self_attn.o_proj" in name:
                param.zero_()
        captured = []
        hook = head.register_forward_hook(lambda module, args, output: captured.append(args[0]))
        try:
            model(input_ids=torch.tensor([sources]), attention_mask=torch.ones(1, len(sources), dtype=torch.long))
        finally:
            hook.remove()
        hidden = captured[0][0].double()  # (len(sources), hidden size)
        logits = torch.zeros(len(sources), head.weight.shape[0], dtype=torch.float64)
        logits[torch.arange(len(sources)), torch.tensor(targets)] = scale
        weight = (torch.linalg.pinv(hidden) @ logits).T  # hidden @ weight.T == logits
        head.weight.copy_(weight.to(head.weight.dtype))
        if getattr(head, "bias", None) is not None:
            head.bias.zero_()


def _save_variants(model, processor, folder: Path, family_key: str, end_token_id: int) -> Dict[str, Path]:
    folder = Path(folder)
    random_dir, known_dir = folder / "random", folder / "known"
    model.save_pretrained(random_dir)
    processor.save_pretrained(random_dir)
    make_known_responder(model, processor, family_key, end_token_id)
    model.save_pretrained(known_dir)
    processor.save_pretrained(known_dir)
    return {"random": random_dir, "known": known_dir}


# ---------------------------------------------------------------------------------------
# Qwen2-Audio

#: Text attention of the tiny models built for vLLM (``vllm=True``): its CPU attention kernels
#: take head sizes 32, 64, 80, ... only (8 and 16 fail at the first forward with "Unsupported CPU
#: attention configuration"), so the 64-wide text model gets 2 heads of 32 instead of 4 of 16.
VLLM_TEXT_HEADS = {"num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 32}


def _text_heads(vllm: bool) -> Dict[str, int]:
    return dict(VLLM_TEXT_HEADS) if vllm else {"num_attention_heads": 4, "num_key_value_heads": 2}



def build_qwen2_audio(folder, seed: int = 0, vllm: bool = False) -> Dict[str, Path]:
    """Tiny ``Qwen2AudioForConditionalGeneration`` (Whisper front end, 128 mel bins, 30 s) in
    ``folder/random`` and ``folder/known``. ``vllm``: text attention heads of size 32 (2 x 32),
    since vLLM's CPU attention takes no head size below 32 (:data:`VLLM_TEXT_HEADS`)."""
    import torch
    from transformers import (
        GenerationConfig, Qwen2AudioConfig, Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor,
        WhisperFeatureExtractor,
    )

    tokenizer = _qwen_tokenizer(
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"],
        {"audio_token": "<|AUDIO|>", "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>"},
    )
    # chat_template=None: the processor's own template, the one Qwen2-Audio-7B-Instruct ships.
    processor = Qwen2AudioProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=128), tokenizer=tokenizer)
    config = Qwen2AudioConfig(
        audio_config=dict(
            d_model=32, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64,
            num_mel_bins=128, max_source_positions=1500,  # 1500 = 30 s: the encoder's fixed input
        ),
        text_config=dict(
            model_type="qwen2", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
            num_hidden_layers=2, max_position_embeddings=2048, **_text_heads(vllm),
            tie_word_embeddings=False, initializer_range=RANDOM_INIT_STD,
        ),
        audio_token_index=tokenizer.audio_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2AudioForConditionalGeneration(config).eval()
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config = GenerationConfig(eos_token_id=[end, tokenizer.pad_token_id], pad_token_id=tokenizer.pad_token_id)
    return _save_variants(model, processor, folder, "qwen2a", end)


# ---------------------------------------------------------------------------------------
# Qwen2.5-Omni thinker

# The chat template Qwen2.5-Omni-7B ships (an audio item renders as <|audio_bos|><|AUDIO|><|audio_eos|>).
QWEN2_5_OMNI_CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}{% set image_count = namespace(value=0) %}"
    "{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_bos|><|IMAGE|><|vision_eos|>"
    "{% elif content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}{% if add_audio_id %}Audio {{ audio_count.value }}: {% endif %}"
    "<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_bos|><|VIDEO|><|vision_eos|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_QWEN_OMNI_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>",
                       "<|IMAGE|>", "<|VIDEO|>", "<|vision_bos|>", "<|vision_eos|>", "<|vision_pad|>"]


def build_qwen2_5_omni(folder, seed: int = 0, vllm: bool = False) -> Dict[str, Path]:
    """Tiny ``Qwen2_5OmniThinkerForConditionalGeneration`` (the text-generating part of
    Qwen2.5-Omni, which the labeller loads) with the Omni processor, in ``folder/random`` and
    ``folder/known``. Its Whisper front end keeps the real checkpoints' 300 s window. ``vllm``:
    text heads of 32 (:data:`VLLM_TEXT_HEADS`, mrope sections [8, 4, 4])."""
    import torch
    from transformers import (
        GenerationConfig, Qwen2_5OmniProcessor, Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration,
        Qwen2VLImageProcessor, Qwen2VLVideoProcessor, WhisperFeatureExtractor,
    )

    tokenizer = _qwen_tokenizer(_QWEN_OMNI_SPECIALS, {
        "audio_token": "<|AUDIO|>", "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>",
        "image_token": "<|IMAGE|>", "video_token": "<|VIDEO|>", "vision_bos_token": "<|vision_bos|>",
        "vision_eos_token": "<|vision_eos|>",
    })
    processor = Qwen2_5OmniProcessor(
        image_processor=Qwen2VLImageProcessor(), video_processor=Qwen2VLVideoProcessor(),
        feature_extractor=WhisperFeatureExtractor(feature_size=128, chunk_length=300),
        tokenizer=tokenizer, chat_template=QWEN2_5_OMNI_CHAT_TEMPLATE,
    )
    ids = tokenizer.convert_tokens_to_ids
    hidden = 64
    config = Qwen2_5OmniThinkerConfig(
        audio_config=dict(d_model=32, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64,
                          num_mel_bins=128, max_source_positions=1500, n_window=100, output_dim=hidden),
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=hidden,
                           fullatt_block_indexes=[0]),
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=128, num_hidden_layers=2,
            max_position_embeddings=4096, **_text_heads(vllm),
            # mrope_section must sum to head_dim / 2 (head_dim 16 here, 32 for vLLM; [16, 24, 24] for 128 in the real model)
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                             "mrope_section": [8, 4, 4] if vllm else [2, 3, 3]},
            tie_word_embeddings=False, initializer_range=RANDOM_INIT_STD,
        ),
        audio_token_index=ids("<|AUDIO|>"), image_token_index=ids("<|IMAGE|>"), video_token_index=ids("<|VIDEO|>"),
        audio_start_token_id=ids("<|audio_bos|>"), audio_end_token_id=ids("<|audio_eos|>"),
        vision_start_token_id=ids("<|vision_bos|>"), vision_end_token_id=ids("<|vision_eos|>"),
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2_5OmniThinkerForConditionalGeneration(config).eval()
    end = ids("<|im_end|>")
    model.generation_config = GenerationConfig(eos_token_id=[end, tokenizer.pad_token_id], pad_token_id=tokenizer.pad_token_id)
    return _save_variants(model, processor, folder, "qwen2_5o", end)


# ---------------------------------------------------------------------------------------
# Qwen3-Omni-MoE thinker

# Qwen3-Omni's template, reduced to what an audio + text conversation uses: an audio item
# renders as <|audio_start|><|audio_pad|><|audio_end|>.
QWEN3_OMNI_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' or 'audio' in content %}<|audio_start|><|audio_pad|><|audio_end|>"
    "{% elif content['type'] == 'image' or 'image' in content %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_qwen3_omni(folder, seed: int = 0, vllm: bool = False) -> Dict[str, Path]:
    """Tiny ``Qwen3OmniMoeThinkerForConditionalGeneration`` (a 4-expert, 2-per-token MoE text
    model with interleaved multimodal RoPE, as the real config) with the Omni processor, in
    ``folder/random`` and ``folder/known``. ``vllm``: text heads of 32 (mrope sections
    [8, 4, 4]) and the vision settings vLLM's loader reads (``image_size``,
    ``apply_vit_abs_pos_embed``, as the real config has them)."""
    import torch
    from transformers import (
        GenerationConfig, Qwen2VLImageProcessor, Qwen2VLVideoProcessor, Qwen3OmniMoeProcessor,
        Qwen3OmniMoeThinkerConfig, Qwen3OmniMoeThinkerForConditionalGeneration, WhisperFeatureExtractor,
    )

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_start|>", "<|audio_pad|>", "<|audio_end|>",
                "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tokenizer = _qwen_tokenizer(specials, {
        "audio_token": "<|audio_pad|>", "audio_bos_token": "<|audio_start|>", "audio_eos_token": "<|audio_end|>",
        "image_token": "<|image_pad|>", "video_token": "<|video_pad|>", "vision_bos_token": "<|vision_start|>",
        "vision_eos_token": "<|vision_end|>",
    })
    processor = Qwen3OmniMoeProcessor(
        image_processor=Qwen2VLImageProcessor(patch_size=16), video_processor=Qwen2VLVideoProcessor(patch_size=16),
        feature_extractor=WhisperFeatureExtractor(feature_size=128, chunk_length=300),
        tokenizer=tokenizer, chat_template=QWEN3_OMNI_CHAT_TEMPLATE,
    )
    ids = tokenizer.convert_tokens_to_ids
    hidden = 64
    config = Qwen3OmniMoeThinkerConfig(
        audio_config=dict(d_model=32, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64,
                          num_mel_bins=128, max_source_positions=1500, n_window=50, n_window_infer=800,
                          output_dim=hidden, downsample_hidden_size=16),
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=hidden,
                           num_position_embeddings=16, deepstack_visual_indexes=[0],
                           **({"image_size": 64, "apply_vit_abs_pos_embed": True} if vllm else {})),
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=128, num_hidden_layers=2,
            max_position_embeddings=4096, **(dict(VLLM_TEXT_HEADS) if vllm else
                                             {"num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16}),
            num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, decoder_sparse_step=1,
            # interleaved multimodal RoPE as the real config ([24, 20, 20] for head_dim 128)
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                             "mrope_section": [8, 4, 4] if vllm else [4, 2, 2],
                             "interleaved": True, "mrope_interleaved": True},
            tie_word_embeddings=False, initializer_range=RANDOM_INIT_STD,
        ),
        audio_token_id=ids("<|audio_pad|>"), image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        audio_start_token_id=ids("<|audio_start|>"), vision_start_token_id=ids("<|vision_start|>"),
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen3OmniMoeThinkerForConditionalGeneration(config).eval()
    end = ids("<|im_end|>")
    model.generation_config = GenerationConfig(eos_token_id=[end, tokenizer.pad_token_id], pad_token_id=tokenizer.pad_token_id)
    return _save_variants(model, processor, folder, "qwen3o", end)


# ---------------------------------------------------------------------------------------
# Gemma-3n

# Gemma-3n's chat template, reduced to text and audio items: the system message becomes the
# start of the first user turn, an audio item renders as <audio_soft_token> (which the
# processor expands to 188 soft tokens between <start_of_audio> and <end_of_audio>).
GEMMA3N_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] is string -%}{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- else -%}{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}{%- endif -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if message['role'] == 'assistant' -%}{%- set role = 'model' -%}{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'audio' -%}{{ '<audio_soft_token>' }}"
    "{%- elif item['type'] == 'image' -%}{{ '<image_soft_token>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)
GEMMA3N_MM_VOCAB = 8  # tokens in each of the vision and audio soft-token ranges (128 in the real model)


def _gemma_tokenizer(vllm: bool = False):
    """A ``GemmaTokenizer`` (byte-fallback BPE on "▁"-joined text) with Gemma-3n's fixed layout:
    specials, the 256 byte tokens and the BPE pieces first (the text vocabulary), then the
    vision soft-token range (``<end_of_image>`` at its start, ``<image_soft_token>`` next), then
    the audio soft-token range (``<end_of_audio>``, ``<audio_soft_token>``): the model embeds
    every id at or above the audio range's start with its audio embedder and pads audio with
    the last id of the vocabulary, so the ranges must sit exactly there."""
    from tokenizers import Tokenizer, models, normalizers, trainers
    from transformers import GemmaTokenizer

    head = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>",
            "<start_of_image>", "<start_of_audio>"]
    vocab = {t: i for i, t in enumerate(head)}
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.Replace(" ", "\u2581")
    bpe.train_from_iterator(_CORPUS, trainers.BpeTrainer(vocab_size=300, show_progress=False))
    state = json.loads(bpe.to_str())["model"]
    for piece, _ in sorted(state["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(piece, len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    if vllm:
        # vLLM's Gemma-3n input processing looks up "\n", "\n\n", "\n\n\n" and "\n\n\n\n" as
        # single tokens (the real tokenizer has them): pieces with the merges that produce them.
        for piece in ("\n", "\n\n", "\n\n\n", "\n\n\n\n"):
            vocab.setdefault(piece, len(vocab))
        merges += [("\n", "\n"), ("\n\n", "\n"), ("\n\n", "\n\n")]
    text_vocab = len(vocab)
    vision = ["<end_of_image>", "<image_soft_token>"] + [f"<vision_soft_{k}>" for k in range(2, GEMMA3N_MM_VOCAB)]
    audio = ["<end_of_audio>", "<audio_soft_token>"] + [f"<audio_soft_{k}>" for k in range(2, GEMMA3N_MM_VOCAB)]
    for token in vision + audio:
        vocab[token] = len(vocab)
    extra = ["<start_of_turn>", "<end_of_turn>"] + vision[2:] + audio[2:]
    tokenizer = GemmaTokenizer(
        vocab=vocab, merges=merges, extra_special_tokens=extra,
        boi_token="<start_of_image>", eoi_token="<end_of_image>", image_token="<image_soft_token>",
        boa_token="<start_of_audio>", eoa_token="<end_of_audio>", audio_token="<audio_soft_token>",
    )
    assert len(tokenizer) == text_vocab + 2 * GEMMA3N_MM_VOCAB, (len(tokenizer), text_vocab)
    return tokenizer, text_vocab


def build_gemma3n(folder, seed: int = 0, vllm: bool = False) -> Dict[str, Path]:
    """Tiny ``Gemma3nForConditionalGeneration`` (AltUp, Laurel, per-layer inputs, KV sharing,
    a tiny USM audio tower giving 188 soft tokens per 30 s, a small timm vision tower) with the
    Gemma-3n processor, in ``folder/random`` and ``folder/known``. ``vllm``: tied input and output
    embeddings (vLLM's Gemma-3n always ties them, as the real checkpoints do) and single-token
    newline runs in the tokenizer; only ``random`` then (the ``known`` variant solves the output
    layer, which tying forbids)."""
    import torch
    from transformers import (
        Gemma3nAudioFeatureExtractor, Gemma3nConfig, Gemma3nForConditionalGeneration, Gemma3nProcessor,
        GenerationConfig, SiglipImageProcessor,
    )

    tokenizer, text_vocab = _gemma_tokenizer(vllm)
    ids = tokenizer.convert_tokens_to_ids
    vision_offset, audio_offset = text_vocab, text_vocab + GEMMA3N_MM_VOCAB
    processor = Gemma3nProcessor(
        feature_extractor=Gemma3nAudioFeatureExtractor(), image_processor=SiglipImageProcessor(),
        tokenizer=tokenizer, chat_template=GEMMA3N_CHAT_TEMPLATE, audio_seq_length=188, image_seq_length=256,
    )
    layers = 2
    config = Gemma3nConfig(
        text_config=dict(
            vocab_size=len(tokenizer), vocab_size_per_layer_input=text_vocab, hidden_size=64, intermediate_size=128,
            num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
            hidden_size_per_layer_input=8, altup_num_inputs=2, laurel_rank=4, sliding_window=4096 if vllm else 32,
            layer_types=["sliding_attention", "full_attention"], num_kv_shared_layers=0,
            activation_sparsity_pattern=[0.0, 0.0] if vllm else [0.95, 0.0], max_position_embeddings=2048,
            pad_token_id=ids("<pad>"), eos_token_id=ids("<eos>"), bos_token_id=ids("<bos>"),
            tie_word_embeddings=vllm, initializer_range=RANDOM_INIT_STD,
        ),
        audio_config=dict(
            hidden_size=32, conf_num_attention_heads=2, conf_num_hidden_layers=1, sscp_conv_channel_size=[8, 4],
            input_feat_size=128, vocab_size=GEMMA3N_MM_VOCAB, vocab_offset=audio_offset,
        ),
        vision_config=dict(architecture="test_efficientnet", hidden_size=256, vocab_size=GEMMA3N_MM_VOCAB,
                           vocab_offset=vision_offset),
        audio_soft_tokens_per_image=188, vision_soft_tokens_per_image=256,
        boi_token_id=ids("<start_of_image>"), eoi_token_id=ids("<end_of_image>"), image_token_id=ids("<image_soft_token>"),
        boa_token_id=ids("<start_of_audio>"), eoa_token_id=ids("<end_of_audio>"), audio_token_id=ids("<audio_soft_token>"),
        tie_word_embeddings=vllm,
    )
    torch.manual_seed(seed)
    model = Gemma3nForConditionalGeneration(config).eval()
    end = ids("<end_of_turn>")
    model.generation_config = GenerationConfig(eos_token_id=[end, ids("<eos>")], pad_token_id=ids("<pad>"), bos_token_id=ids("<bos>"))
    if vllm:
        model.save_pretrained(Path(folder) / "random")
        processor.save_pretrained(Path(folder) / "random")
        return {"random": Path(folder) / "random"}
    return _save_variants(model, processor, folder, "gemma3n", end)


# ChatML, as Qwen2.5-Instruct writes it (a text-only chat model has no processor template).
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_text_chat(folder, seed: int = 0) -> Path:
    """A tiny text-only ``Qwen2ForCausalLM`` chat model (ChatML template, text heads of 32, so
    vLLM can serve it) in ``folder``: a server without audio input, and a plain namer."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = _qwen_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], {})
    tokenizer.chat_template = CHATML_TEMPLATE
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         max_position_embeddings=2048, tie_word_embeddings=False, initializer_range=RANDOM_INIT_STD,
                         **VLLM_TEXT_HEADS)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config = GenerationConfig(eos_token_id=[end, tokenizer.pad_token_id], pad_token_id=tokenizer.pad_token_id)
    folder = Path(folder)
    if not (folder / "config.json").exists():
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return folder


BUILDERS = {
    "qwen2a": build_qwen2_audio,
    "qwen2_5o": build_qwen2_5_omni,
    "qwen3o": build_qwen3_omni,
    "gemma3n": build_gemma3n,
}


def tiny_model(base: Path, family_key: str, variant: str = "known", vllm: bool = False) -> Path:
    """Folder of the tiny ``family_key`` model (``variant`` ``random`` or ``known``), built on first use under ``base``.
    ``vllm``: the variant vLLM can serve (see the builders' ``vllm`` option), in ``<family>_vllm``."""
    folder = Path(base) / (f"{family_key}_vllm" if vllm else family_key)
    if not (folder / variant / "config.json").exists():
        if vllm:
            BUILDERS[family_key](folder, vllm=True)
        else:
            BUILDERS[family_key](folder)
    if vllm and family_key in FULL_OMNI:
        # vLLM's registry has the published composite Omni models, not a bare thinker.
        model_type, architecture = FULL_OMNI[family_key]
        full = folder / f"{variant}_full"
        if not (full / "config.json").exists():
            as_full_omni_checkpoint(folder / variant, full, model_type, architecture)
        return full
    return folder / variant


#: How the published Omni checkpoints are laid out: composite model type and architecture.
FULL_OMNI = {"qwen2_5o": ("qwen2_5_omni", "Qwen2_5OmniModel"),
             "qwen3o": ("qwen3_omni_moe", "Qwen3OmniMoeForConditionalGeneration")}


def as_full_omni_checkpoint(thinker_folder: Path, dest: Path, model_type: str, architecture=None) -> Path:
    """Repackage a saved tiny thinker the way the published Omni checkpoints are laid out: a
    composite ``config.json`` (``model_type`` ``qwen2_5_omni`` / ``qwen3_omni_moe``, and
    ``architectures`` when given: vLLM picks its model class by it) holding the
    ``thinker_config``, and the thinker's weights under the ``thinker.`` prefix."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(thinker_folder, dest)
    config = json.loads((dest / "config.json").read_text())
    composite = {"model_type": model_type, "thinker_config": config, "enable_audio_output": False}
    if architecture:
        composite["architectures"] = [architecture]
    (dest / "config.json").write_text(json.dumps(composite, indent=2))
    weights = load_file(str(dest / "model.safetensors"))
    save_file({f"thinker.{k}": v for k, v in weights.items()}, str(dest / "model.safetensors"), metadata={"format": "pt"})
    return dest
