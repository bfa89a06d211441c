"""The audio-LLM families, as data: the one table the labelling engine and the tower embeddings read.

The four published labellers differ only in the values below (model class, system prompt,
which audio front end, where the audio tower sits); everything else, the prompt, the
decoding settings and the post-processing, is shared and lives in
:mod:`auditoryhum.models.labeller`. This module imports no heavy library at import time, so
the command line can list the families without loading torch.
"""

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

# The published prompt and system messages (one definition: auditoryhum.recipe).
from auditoryhum.recipe import CAPTION_PROMPT, PROMPT, QWEN_OMNI_SYSTEM_PROMPT, SCENE_SYSTEM_PROMPT  # noqa: F401


def system_then_audio_and_text(system_prompt: str, user_prompt: str, audio_ref: str) -> List[Dict[str, Any]]:
    """The published two-message conversation: a system message, then a user message holding
    the audio followed by the text prompt.

    ``audio_ref`` only names the clip (the chat templates render an audio item as a placeholder
    and never read it); the samples go to the processor separately. An empty ``system_prompt``
    (``--system_prompt ""``, ``--task caption``) leaves the system message out: the conversation
    is the user turn only, as the revision's caption prompt is written.
    """
    user = {
        "role": "user",
        "content": [
            {"type": "audio", "audio": audio_ref},
            {"type": "text", "text": user_prompt},
        ],
    }
    if not system_prompt:
        return [user]
    return [{"role": "system", "content": [{"type": "text", "text": system_prompt}]}, user]


def _whisper_window_seconds(processor) -> float:
    # The Whisper extractor pads or cuts every clip to n_samples (chunk_length seconds): 30 s
    # for Qwen2-Audio; Qwen2.5-Omni checkpoints set their own chunk_length.
    fe = processor.feature_extractor
    return fe.n_samples / fe.sampling_rate


def _gemma3n_window_seconds(processor) -> float:
    # Gemma3nAudioFeatureExtractor.__call__ truncates at max_length=480_000 samples by default
    # (30 s at 16 kHz), and the processor always inserts 188 audio soft tokens, i.e. 30 s.
    import inspect

    fe = processor.feature_extractor
    max_length = inspect.signature(fe.__call__).parameters["max_length"].default
    return max_length / fe.sampling_rate


_CHATML_SYSTEM = "<|im_start|>system\n"
_CHATML_END = "<|im_end|>\n"


def drop_default_system_turn(text: str) -> str:
    """``text`` without the system turn a ChatML template opens it with (``<|im_start|>system
    ... <|im_end|>``); text that does not start with one is returned unchanged.

    Only called for a conversation that has no system message, so such a turn is the
    template's default, not the user's.
    """
    if text.startswith(_CHATML_SYSTEM):
        end = text.find(_CHATML_END)
        if end >= 0:
            return text[end + len(_CHATML_END):]
    return text


@dataclass(frozen=True)
class Family:
    """One audio-LLM family: everything the shared engine needs to know about it.

    ``model_class`` and ``processor_class`` name classes of ``transformers`` (resolved with
    :meth:`load_class` and :meth:`load_processor_class`).
    ``model_types`` are the ``config.json`` model types a checkpoint of this family may have.
    ``tower_path`` is the attribute path from the loaded model to its audio tower.
    ``window_seconds(processor)`` is how much of a clip the front end reads (``None``: all of it).
    ``pad_seconds(processor)`` is the length the front end pads every clip to: the published
    recipe calls the processor with ``padding="max_length"``, which also makes a clip's
    features independent of its batch neighbours. A clip longer than that which the front end
    does not cut cannot share a batch (its features would be longer than the others').
    ``reads_real_frames_only``: the model takes only the frames ``feature_attention_mask``
    marks as real (the Qwen Omni thinkers), so padding beyond them can be trimmed
    (:func:`auditoryhum.models.labeller.trimmed_pad_length`).
    """

    key: str
    title: str
    model_flag: str
    model_class: str
    model_types: Tuple[str, ...]
    system_prompt: str
    tower_path: str
    window_seconds: Optional[Callable[[Any], float]]
    pad_seconds: Callable[[Any], float]
    reads_real_frames_only: bool = False
    processor_class: str = "AutoProcessor"  # every family's checkpoint names its own processor
    conversation: Callable[[str, str, str], List[Dict[str, Any]]] = system_then_audio_and_text

    @property
    def model_dest(self) -> str:
        """The argparse attribute of :attr:`model_flag` (``--qwen2a_model`` -> ``qwen2a_model``)."""
        return self.model_flag.lstrip("-")

    @property
    def what(self) -> str:
        return f"a {self.title} model"

    def load_class(self):
        import transformers

        return getattr(transformers, self.model_class)

    def load_processor_class(self):
        import transformers

        return getattr(transformers, self.processor_class)

    def audio_tower(self, model):
        """The audio tower module of a loaded model of this family."""
        module = model
        for part in self.tower_path.split("."):
            module = getattr(module, part)
        return module

    def build_conversation(self, user_prompt: str, audio_ref: str) -> List[Dict[str, Any]]:
        return self.conversation(self.system_prompt, user_prompt, audio_ref)

    def render_conversation(self, processor, user_prompt: str, audio_ref: str) -> str:
        """The chat-templated text of one clip's conversation, ending with the generation prompt.

        With an empty :attr:`system_prompt` the text has no system turn at all: the ChatML
        templates of Qwen2-Audio and the Qwen Omni models write a default one (``You are a
        helpful assistant.``) when the conversation has none, and that turn is removed here
        (:func:`drop_default_system_turn`), so the model sees the user turn only, as the
        revision's caption prompt is written. Gemma-3n's template adds none.
        """
        text = processor.apply_chat_template(self.build_conversation(user_prompt, audio_ref),
                                             add_generation_prompt=True, tokenize=False)
        return text if self.system_prompt else drop_default_system_turn(text)


FAMILIES: Dict[str, Family] = {
    f.key: f
    for f in (
        Family(
            key="qwen2a",
            title="Qwen2-Audio",
            model_flag="--qwen2a_model",
            model_class="Qwen2AudioForConditionalGeneration",
            model_types=("qwen2_audio",),
            system_prompt=SCENE_SYSTEM_PROMPT,
            tower_path="model.audio_tower",
            window_seconds=_whisper_window_seconds,
            pad_seconds=_whisper_window_seconds,
        ),
        Family(
            key="qwen2_5o",
            title="Qwen2.5-Omni",
            model_flag="--qwen2_5o_model",
            model_class="Qwen2_5OmniThinkerForConditionalGeneration",
            model_types=("qwen2_5_omni", "qwen2_5_omni_thinker"),
            system_prompt=QWEN_OMNI_SYSTEM_PROMPT,
            tower_path="model.audio_tower",
            window_seconds=_whisper_window_seconds,
            pad_seconds=_whisper_window_seconds,
            reads_real_frames_only=True,
        ),
        Family(
            key="qwen3o",
            title="Qwen3-Omni",
            model_flag="--qwen3o_model",
            model_class="Qwen3OmniMoeThinkerForConditionalGeneration",
            model_types=("qwen3_omni_moe", "qwen3_omni_moe_thinker"),
            system_prompt=QWEN_OMNI_SYSTEM_PROMPT,
            tower_path="model.audio_tower",
            window_seconds=None,  # its processor reads whole clips (truncation=False)
            pad_seconds=_whisper_window_seconds,
            reads_real_frames_only=True,
        ),
        Family(
            key="gemma3n",
            title="Gemma-3n",
            model_flag="--gemma3n_model",
            model_class="Gemma3nForConditionalGeneration",
            model_types=("gemma3n",),
            system_prompt=SCENE_SYSTEM_PROMPT,
            tower_path="model.audio_tower",
            window_seconds=_gemma3n_window_seconds,
            pad_seconds=_gemma3n_window_seconds,
        ),
    )
}


def get_family(key: str) -> Family:
    """The family registered under ``key`` (``qwen2a``, ``qwen2_5o``, ``qwen3o``, ``gemma3n``)."""
    return FAMILIES[key]
