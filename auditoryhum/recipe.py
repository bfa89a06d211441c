"""The paper's recipe in one place: every constant the published method fixes.

A light module (no imports beyond the standard library), read by the library, the command
line (defaults shown in ``--help``), the run log and the report. The source of each value is
the published recipe; ``docs/recipe.md`` lists them with where each comes from. Change a value
here and every front end follows; nothing else in the package may redefine one.
"""

# --- determinism ----------------------------------------------------------------------------
#: Seed of every random step (labellers, chat models, k-means, spectral embedding, t-SNE).
SEED = 100

# --- labelling (label_*.py) -------------------------------------------------------------------
#: The user prompt of the published recipe; a human hint is appended after one space.
PROMPT = "Describe the auditory scene using word pairs. Separate each pair with a comma."
#: System message of the Qwen2-Audio and Gemma-3n labellers.
SCENE_SYSTEM_PROMPT = "Describing an auditory scene."
#: System message of the Qwen Omni labellers: the identity prompt they are trained with.
QWEN_OMNI_SYSTEM_PROMPT = (
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving "
    "auditory and visual inputs, as well as generating text and speech."
)
#: Decoding of the published labellers: greedy (no sampling, one beam), at most 64 new tokens,
#: KV cache. temperature=1.0 is what the published scripts pass; with do_sample=False it only
#: overrides a checkpoint's own sampling temperature, whose presence would warn.
LABEL_GENERATION_SETTINGS = {"max_new_tokens": 64, "do_sample": False, "num_beams": 1, "use_cache": True,
                             "temperature": 1.0}
#: Decoding of the published Gemini labeller, label_google_gen_ai_cloud.py (its
#: GenerateContentConfig): at most 1024 output tokens, temperature 0.0, top_p 1.0, seed 100.
GEMINI_GENERATION_CONFIG = {"max_output_tokens": 1024, "temperature": 0.0, "top_p": 1.0, "seed": 100}

# --- the method's later revision (docs/revision-2.md) -------------------------------------------
# Read from Australian-Future-Hearing-Initiative/prism-ml, folder prism-ml-auditoryhum/.
#: User prompt of the revision's captions (``--task caption``): README "Use llama.cpp to caption
#: audio" and auditoryhum_test_2_provided_labels_captions.sh at commit b098f36; no system turn.
CAPTION_PROMPT = "Describe the auditory scene."
#: The revision's composite-naming system text (``composite_label.py --system_prompt neutral``),
#: quoted exactly from composite_label_qwen2_5o.py (variable ``system_role``) at commit
#: b098f36fefa8e918a56fe5756158c2873938a24e.
NEUTRAL_SYSTEM_PROMPT = (
    "You are a neutral, objective informational engine. Provide factual, completely unbiased responses. "
    "Do not use conversational filler, greetings, pleasantries, or concluding remarks. Answer the user's "
    "prompt directly, using clear and structured language. If a topic is controversial or lacks consensus, "
    "present the main viewpoints neutrally without taking a side."
)
#: Longest answer of the revision's composite_label_qwen2_5o.py (``max_new_tokens = 64``): the
#: default of ``composite_label.py --prompt`` (cluster naming keeps its own default).
REVISION_COMPOSITE_MAX_NEW_TOKENS = 64

# --- resampling (util_resample.py) --------------------------------------------------------------
#: The published target: 16 kHz, mono, signed 16-bit.
RESAMPLE_RATE = 16000
RESAMPLE_CHANNELS = 1
RESAMPLE_BITS = "s16"

# --- label scoring (features_clap_text.py) ------------------------------------------------------
#: A candidate label is cut to its first this many words (the published rule).
LABEL_WORD_LIMIT = 2

# --- MFCC baseline (features_mfcc.py) -----------------------------------------------------------
MFCC_SAMPLING_RATE = 16000
MFCC_PARAMS = {"n_mfcc": 20, "n_fft": 2048, "hop_length": 512, "win_length": 2048}

# --- clustering (cluster_*.py) ------------------------------------------------------------------
KMEANS_PARAMS = {"init": "k-means++", "max_iter": 300, "random_state": SEED}
SPECTRAL_EMBEDDING_PARAMS = {"n_components": 2, "affinity": "nearest_neighbors", "n_neighbors": 30,
                             "random_state": SEED}
HDBSCAN_PARAMS = {"min_samples": 2, "cluster_selection_epsilon": 0.0001}
TSNE_PARAMS = {
    "n_components": 2,
    "perplexity": 35.0,
    "early_exaggeration": 12.0,
    "learning_rate": "auto",
    "max_iter": 500,
    "n_iter_without_progress": 100,
    "metric": "euclidean",
    "init": "random",
    "random_state": SEED,
}

# --- choosing k (cluster_sweep.py) --------------------------------------------------------------
#: Provisional default of lambda in ``adjusted(k) = silhouette(k) - lambda * k``: the paper ties
#: lambda to AIC; its exact formula is not published.
SWEEP_PENALTY = 0.001
SWEEP_K_MIN = 2
SWEEP_K_MAX = 840

# --- human in the loop (util_select_review.py) --------------------------------------------------
#: The paper's "lowest 1 %" of CLAP scores.
REVIEW_FRACTION = 0.01
