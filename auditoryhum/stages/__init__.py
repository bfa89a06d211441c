"""The stage layer: every pipeline stage as one library function of one shape.

``stage(inputs..., *, options...) -> <Stage>Result`` (see :mod:`auditoryhum.stages._base`):
inputs are paths (or lists of clip paths), options are keyword arguments named like the
command's flags with the paper's defaults (:mod:`auditoryhum.recipe`), and the result names the
files written, the numbers the command prints and the items that failed. Each stage checks its
options (:mod:`auditoryhum.validation`) and holds :func:`auditoryhum.io.guard.guard_stage` before
any work. The command-line modules only parse flags, call one stage and print.

Modules: :mod:`~auditoryhum.stages.resample`, :mod:`~auditoryhum.stages.label` (audio LLMs and
Gemini), :mod:`~auditoryhum.stages.embed`, :mod:`~auditoryhum.stages.score` (CLAP label scoring),
:mod:`~auditoryhum.stages.review` (review selection, merge, score boost),
:mod:`~auditoryhum.stages.composite`, and cluster / sweep / report. Their top levels import no
heavy library, so ``import auditoryhum`` stays instant.
"""
