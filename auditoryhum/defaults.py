"""The toolkit's own defaults: settings that are not the paper's recipe.

The published recipe's constants (seed, prompts, decoding, clustering) live in
:mod:`auditoryhum.recipe`. This module holds what the toolkit chose itself: batch sizes per
device, client timeouts and retries, the resamplers offered. Parsers read them for ``--help``,
so this module imports nothing: ``auditoryhum --help`` must not load NumPy.
"""

# --- resampling (util_resample.py) --------------------------------------------------------
#: Sample formats, ffmpeg's names (``-sample_fmt``); the keys of
#: :data:`auditoryhum.resample.SAMPLE_FORMATS`.
BITS_CHOICES = ("u8", "s16", "s32", "flt", "dbl")
#: ``ffmpeg``: the filter of ffmpeg's default resampler (the recipe's audio); ``soxr``: soxr HQ.
RESAMPLER_CHOICES = ("ffmpeg", "soxr")
DEFAULT_RESAMPLER = "ffmpeg"

# --- audio-LLM labellers (label_*.py) ------------------------------------------------------
#: Clips per generate call, per device (4-bit weights on a GPU leave room for eight).
LABELLER_BATCH_SIZE = {"cuda": 8, "mps": 2, "cpu": 2}
#: What a labeller does with a clip longer than the model's audio window.
LONG_AUDIO_CHOICES = ("truncate", "window")

# --- audio-tower embeddings (features_qwen2a.py, features_gemma3n.py) ---------------------
#: Clips per forward pass, per device.
TOWER_BATCH_SIZE = {"cuda": 16, "mps": 4, "cpu": 4}

# --- text embeddings -------------------------------------------------------------------------
#: Candidate texts per forward pass of the CLAP text encoder (features_clap_text.py).
CLAP_TEXT_BATCH_SIZE = 64
#: Labels per forward pass of the sentence model (features_st.py).
ST_BATCH_SIZE = 32

# --- composite naming (composite_label.py) ------------------------------------------------
#: Prompts per generate call of the chat model, per device.
CHAT_BATCH_SIZE = {"cuda": 16, "mps": 4, "cpu": 4}
#: New tokens the chat model may generate for one composite label.
CHAT_MAX_NEW_TOKENS = 32
#: Most frequent labels of a cluster shown in its composite-label prompt.
COMPOSITE_TOP_LABELS = 5

# --- the Gemini client (label_google_gen_ai_cloud.py) -------------------------------------
#: Largest clip sent inline: requests must stay under 20 MB and inline bytes travel base64
#: encoded (4/3 larger), so 12 MB of audio leaves room for the prompt. Larger clips are uploaded.
GEMINI_INLINE_MAX_BYTES = 12_000_000
GEMINI_TIMEOUT_S = 120.0
GEMINI_MAX_RETRIES = 6
#: First back-off delay; doubled per retry up to GEMINI_RETRY_MAX_DELAY_S (before jitter).
GEMINI_RETRY_BASE_DELAY_S = 2.0
GEMINI_RETRY_MAX_DELAY_S = 60.0
#: A delay the server asks for is honoured up to this long.
GEMINI_SERVER_RETRY_DELAY_CAP_S = 300.0
GEMINI_MAX_CONSECUTIVE_FAILURES = 10
GEMINI_CONCURRENCY = 1
#: How long an uploaded file may stay PROCESSING before its clip fails.
GEMINI_FILE_PROCESSING_TIMEOUT_S = 300.0
#: Tries of deleting an uploaded file, and the longest wait between them.
GEMINI_DELETE_ATTEMPTS = 3
GEMINI_DELETE_MAX_WAIT_S = 5.0
#: Where the key and an alternative endpoint are read from (GOOGLE_API_KEY wins when both are set).
GEMINI_API_KEY_ENV_VARS = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
GEMINI_BASE_URL_ENV_VAR = "GOOGLE_GEMINI_BASE_URL"
