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

# --- the t-SNE layout of the cluster plots (cluster_*.py --tsne) ---------------------------
#: ``sklearn``: scikit-learn's TSNE with :data:`auditoryhum.recipe.TSNE_PARAMS` (the published
#: plots); ``opentsne``: openTSNE's FFT-accelerated t-SNE (the ``fast-tsne`` extra), faster at
#: large N. Only the plot's layout differs: cluster ids and silhouettes never use it.
TSNE_METHODS = ("sklearn", "opentsne")
DEFAULT_TSNE_METHOD = "sklearn"
#: openTSNE's settings of the toolkit's own; :data:`auditoryhum.clustering.algorithms.OPENTSNE_PARAMS` adds
#: the recipe's (:data:`auditoryhum.recipe.TSNE_PARAMS`: perplexity, early exaggeration, learning
#: rate "auto", random init, seed, metric; 500 iterations in all). scikit-learn's 500 iterations
#: are 250 of early exaggeration (its fixed exploration phase, momentum 0.5) then the rest
#: (momentum 0.8); openTSNE counts the two phases apart. Exact neighbours (scikit-learn's
#: brute-force search, as scikit-learn's TSNE uses): every row's neighbours, affinities and
#: gradient terms are computed by one thread and the FFT step is serial, so the layout is the same
#: bits whatever ``n_jobs`` is (tested across processes and against one thread). Annoy, openTSNE's
#: approximate search from 1,000 rows, builds its trees on threads in an order that varies, and
#: may return a duplicate row in place of the row itself; exact search is O(N^2) in time, though.
#: openTSNE's "auto" learning rate is N / exaggeration per phase (scikit-learn's is N / 48 in both
#: phases, N / 12 in openTSNE's units: the first phase agrees).
OPENTSNE_OPTIONS = {
    "early_exaggeration_iter": 250,  # scikit-learn's TSNE._EXPLORATION_MAX_ITER
    "initial_momentum": 0.5,
    "final_momentum": 0.8,
    "neighbors": "exact",
    "n_jobs": -1,
}
#: From this many rows openTSNE's negative gradient is its FFT interpolation, below it Barnes-Hut:
#: the FFT grid costs about the same per iteration whatever N (10 s for 300 rows here), Barnes-Hut
#: grows with N. Measured on the benchmark's data (2 cores), Barnes-Hut against FFT: 14.7 s / 16.3 s
#: at N = 5,075, 15.5 s / 12.4 s at 7,000, 31.8 s / 22.2 s at 9,968 (openTSNE's own switch: 10,000).
OPENTSNE_FFT_MIN_ROWS = 6000

# --- the cache folder (``--cache_dir``; ``auditoryhum cache``) -------------------------------
#: Largest total size of the array cache (t-SNE layouts, spectral embeddings, Ward trees, the
#: distinct rows' distances, silhouettes, k-means labels) before the least recently used entries
#: are removed. One input of the paper's largest size keeps about 40 MB there (up to 256 MiB of
#: distances), so this holds the grids of about twenty such inputs.
ARRAY_CACHE_MAX_BYTES = 4 * 2**30
#: The environment variable that overrides it: a size (``500M``, ``20G``; K, M, G, T are powers
#: of 1024) or ``none`` for no limit.
ARRAY_CACHE_MAX_SIZE_ENV = "AUDITORYHUM_CACHE_MAX_SIZE"

# --- an OpenAI-compatible server (vLLM) as the labeller or namer (``--server``) --------------
#: Requests in flight at once over all servers (``--concurrency``): vLLM batches whatever is in
#: flight, so a few per server keep it busy; more only queue on the server.
SERVER_CONCURRENCY = 8
#: Seconds one request may take (a loaded server queues requests, so this is generous).
SERVER_TIMEOUT_S = 300.0
#: Seconds the check before any work (``GET /v1/models``, one probe request) may take per server.
SERVER_CHECK_TIMEOUT_S = 10.0
#: Retries of a request after 408, 429, 500, 502, 503, 504, a timeout or a dropped connection.
SERVER_MAX_RETRIES = 4
#: First back-off delay; doubled per retry up to GEMINI_RETRY_MAX_DELAY_S (the same back-off rule).
SERVER_RETRY_BASE_DELAY_S = 1.0
#: Stop the run after this many items in a row failed after their retries (the server is down).
SERVER_MAX_CONSECUTIVE_FAILURES = 10
#: Where the server's API key is read from, first set wins (never a flag: a flag shows in the
#: process list). Sent as ``Authorization: Bearer``; never printed or recorded.
SERVER_API_KEY_ENV_VARS = ("AUDITORYHUM_SERVER_API_KEY", "OPENAI_API_KEY")
#: Named ``--format_regex`` presets. ``word_pairs``: the paper's format, lower-case word pairs
#: separated by ", " (what the published post-processing makes of a well-formed answer).
FORMAT_REGEX_PRESETS = {"word_pairs": r"[a-z]+ [a-z]+(, [a-z]+ [a-z]+)*"}
