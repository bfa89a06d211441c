"""The toolkit's own defaults: one light module, the one definition every user imports."""

from pathlib import Path

from auditoryhum.cli import COMMANDS, build_parser
from conftest import REPO


# --- the toolkit's own defaults: one light module, the one definition ---

# defaults.py name -> the (module, name) places that take it from auditoryhum.defaults under
# their own name (aliases kept for callers): each must be the very same object, not a copy.
ALIASES = {
    "TSNE_METHODS": [("auditoryhum.clustering.algorithms", "TSNE_METHODS"), ("auditoryhum.stages.cluster", "TSNE_METHODS"),
                     ("auditoryhum.pipeline", "TSNE_METHODS")],
    "DEFAULT_TSNE_METHOD": [("auditoryhum.stages.cluster", "DEFAULT_TSNE_METHOD"), ("auditoryhum.pipeline", "DEFAULT_TSNE_METHOD")],
    "OPENTSNE_OPTIONS": [("auditoryhum.clustering.algorithms", "OPENTSNE_OPTIONS")],
    "OPENTSNE_FFT_MIN_ROWS": [("auditoryhum.clustering.algorithms", "OPENTSNE_FFT_MIN_ROWS")],
    "ARRAY_CACHE_MAX_BYTES": [("auditoryhum.io.array_cache", "ARRAY_CACHE_MAX_BYTES")],
    "ARRAY_CACHE_MAX_SIZE_ENV": [("auditoryhum.io.array_cache", "ARRAY_CACHE_MAX_SIZE_ENV")],
    "LABELLER_BATCH_SIZE": [("auditoryhum.models.labeller", "DEFAULT_BATCH_SIZE")],
    "LONG_AUDIO_CHOICES": [("auditoryhum.models.labeller", "LONG_AUDIO_CHOICES")],
    "TOWER_BATCH_SIZE": [("auditoryhum.models.tower_embed", "DEFAULT_BATCH_SIZE")],
    "CHAT_BATCH_SIZE": [("auditoryhum.models.chat", "DEFAULT_BATCH_SIZE")],
    "CHAT_MAX_NEW_TOKENS": [("auditoryhum.models.chat", "DEFAULT_MAX_NEW_TOKENS"),
                            ("auditoryhum.stages.composite", "DEFAULT_MAX_NEW_TOKENS")],
    "COMPOSITE_TOP_LABELS": [("auditoryhum.stages.composite", "DEFAULT_TOP_LABELS"),
                             ("auditoryhum.composite", "DEFAULT_TOP_LABELS")],
    "CLAP_TEXT_BATCH_SIZE": [("auditoryhum.stages.score", "CLAP_TEXT_BATCH_SIZE")],
    "ST_BATCH_SIZE": [("auditoryhum.stages.embed", "ST_BATCH_SIZE")],
    "GEMINI_INLINE_MAX_BYTES": [("auditoryhum.models.gemini", "INLINE_MAX_BYTES")],
    "GEMINI_TIMEOUT_S": [("auditoryhum.models.gemini", "DEFAULT_TIMEOUT_S")],
    "GEMINI_MAX_RETRIES": [("auditoryhum.models.gemini", "DEFAULT_MAX_RETRIES")],
    "GEMINI_RETRY_BASE_DELAY_S": [("auditoryhum.models.gemini", "DEFAULT_RETRY_BASE_DELAY_S")],
    "GEMINI_RETRY_MAX_DELAY_S": [("auditoryhum.models.gemini", "RETRY_MAX_DELAY_S")],
    "GEMINI_SERVER_RETRY_DELAY_CAP_S": [("auditoryhum.models.gemini", "SERVER_RETRY_DELAY_CAP_S")],
    "GEMINI_MAX_CONSECUTIVE_FAILURES": [("auditoryhum.models.gemini", "DEFAULT_MAX_CONSECUTIVE_FAILURES")],
    "GEMINI_CONCURRENCY": [("auditoryhum.models.gemini", "DEFAULT_CONCURRENCY")],
    "GEMINI_FILE_PROCESSING_TIMEOUT_S": [("auditoryhum.models.gemini", "FILE_PROCESSING_TIMEOUT_S")],
    "GEMINI_DELETE_ATTEMPTS": [("auditoryhum.models.gemini", "DELETE_ATTEMPTS")],
    "GEMINI_DELETE_MAX_WAIT_S": [("auditoryhum.models.gemini", "DELETE_MAX_WAIT_S")],
    "GEMINI_API_KEY_ENV_VARS": [("auditoryhum.models.gemini", "API_KEY_ENV_VARS")],
    "GEMINI_BASE_URL_ENV_VAR": [("auditoryhum.models.gemini", "BASE_URL_ENV_VAR")],
    "BITS_CHOICES": [("auditoryhum.stages.resample", "BITS_CHOICES")],
    "RESAMPLER_CHOICES": [("auditoryhum.resample", "RESAMPLERS")],
    "DEFAULT_RESAMPLER": [("auditoryhum.resample", "DEFAULT_RESAMPLER")],
    **{name: [("auditoryhum.models.server", name)] for name in (
        "SERVER_CONCURRENCY", "SERVER_TIMEOUT_S", "SERVER_CHECK_TIMEOUT_S", "SERVER_MAX_RETRIES",
        "SERVER_RETRY_BASE_DELAY_S", "SERVER_MAX_CONSECUTIVE_FAILURES", "SERVER_API_KEY_ENV_VARS",
        "FORMAT_REGEX_PRESETS")},
}
# Defaults still defined twice (none now); each must equal ours until switched to an import.
STILL_DEFINED_TWICE = {}


def _literal_assignments(module: str) -> set:
    """Names a module binds at top level to a value of its own (``X = 5``, ``X = {...}``), as
    opposed to importing them or binding another name (``X = Y``)."""
    import ast
    import importlib.util

    origin = importlib.util.find_spec(module).origin
    tree = ast.parse(Path(origin).read_text(encoding="utf-8"), origin)
    names = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if targets and not isinstance(node.value, (ast.Name, ast.Attribute)):
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def test_defaults_have_one_definition_and_every_alias_is_the_same_object():
    import importlib

    from auditoryhum import defaults

    public = sorted(n for n in vars(defaults) if n.isupper())
    assert public == sorted(ALIASES), "every default is checked, and only defaults"
    for name, places in ALIASES.items():
        ours = getattr(defaults, name)
        for module, there in places:
            theirs = getattr(importlib.import_module(module), there)
            assert theirs is ours, (name, module, there, theirs, ours)
            # Taken, not redefined: an equal literal there (``there = 5``) would drift unseen.
            assert there not in _literal_assignments(module), (name, module, there)
    for name, (module, there) in STILL_DEFINED_TWICE.items():
        theirs = getattr(importlib.import_module(module), there)
        assert theirs == getattr(defaults, name) and type(theirs) is type(getattr(defaults, name)), (name, module, there)
        assert there in _literal_assignments(module), f"{module}.{there} now imported: move it to ALIASES"
    # The paper's Gemini decoding has one definition, in the recipe, and is the client's.
    from auditoryhum import recipe
    from auditoryhum.models import gemini

    assert gemini.GENERATION_CONFIG is recipe.GEMINI_GENERATION_CONFIG
    assert recipe.GEMINI_GENERATION_CONFIG == {"max_output_tokens": 1024, "temperature": 0.0, "top_p": 1.0, "seed": 100}
    assert "GENERATION_CONFIG" not in _literal_assignments("auditoryhum.models.gemini")
    # The first line of an error: one definition (engine.common), importable from the loader too.
    from auditoryhum.engine.common import first_line
    from auditoryhum.models import loader

    assert loader.first_line is first_line
    assert loader.first_line(ValueError("bad\nmore")) == "bad" and loader.first_line(KeyError()) == "KeyError"
    # The resampler's formats are the keys of its sample-format table; the CLI offers exactly these.
    from auditoryhum.resample import SAMPLE_FORMATS

    assert tuple(SAMPLE_FORMATS) == defaults.BITS_CHOICES
    parser = build_parser(next(c for c in COMMANDS if c.name == "resample"))
    choices = {a.dest: (tuple(a.choices or ()), a.default) for a in parser._actions}
    assert choices["bits"][0] == defaults.BITS_CHOICES
    assert choices["resampler"] == (defaults.RESAMPLER_CHOICES, defaults.DEFAULT_RESAMPLER)


def test_help_texts_show_the_defaults_module_values():
    """The parsers read auditoryhum.defaults directly; their defaults and help show its values."""
    from auditoryhum import defaults

    def parser_of(name):
        return build_parser(next(c for c in COMMANDS if c.name == name))

    gemini = {a.dest: a for a in parser_of("label-gemini")._actions}
    assert gemini["max_retries"].default == defaults.GEMINI_MAX_RETRIES
    assert gemini["timeout"].default == defaults.GEMINI_TIMEOUT_S
    assert gemini["concurrency"].default == defaults.GEMINI_CONCURRENCY
    assert gemini["inline_max_bytes"].default == defaults.GEMINI_INLINE_MAX_BYTES
    assert f"${defaults.GEMINI_BASE_URL_ENV_VAR}" in gemini["base_url"].help
    label = {a.dest: a for a in parser_of("label-qwen2a")._actions}
    assert tuple(label["long_audio"].choices) == defaults.LONG_AUDIO_CHOICES
    assert "cuda 8, mps 2, cpu 2" in label["batch_size"].help
    tower = {a.dest: a for a in parser_of("features-qwen2a")._actions}
    assert "cuda 16, mps 4, cpu 4" in tower["batch_size"].help
    composite = {a.dest: a for a in parser_of("composite")._actions}
    assert composite["top_labels"].default == defaults.COMPOSITE_TOP_LABELS
    assert "1024-token budget" in composite["max_new_tokens"].help and "64 with --prompt" in composite["max_new_tokens"].help


def test_defaults_module_imports_nothing():
    import ast

    source = (REPO / "auditoryhum" / "defaults.py").read_text()
    assert not [n for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.Import, ast.ImportFrom))]
