"""``auditoryhum run``: the whole pipeline as one resumable command.

The pipeline is a list of :class:`Step`\\ s, each calling one stage function of
:mod:`auditoryhum.stages` with fixed artefact names inside ``out_dir`` (see
:data:`LAYOUT` and ``docs/pipeline.md``). A manifest (``out_dir/manifest.json``) records, for
every finished step, the content fingerprint of each input and output file and the options it
ran with. A step is skipped when its record matches: its options are unchanged, every input
has the recorded content and every output still exists with the recorded content. So an
unchanged rerun does no model work, and a change (new annotations, another k) reruns exactly
the steps whose inputs it changes: downstream steps see new input fingerprints only if an
upstream output really changed.

Crash safety comes from the parts: every artefact is written atomically, the manifest is
rewritten atomically after each step, and the long stages resume from their journals. A run
killed at any moment and rerun finishes with the same bytes as an uninterrupted run. The whole
run holds the lock of the manifest, so two runs on one ``out_dir`` cannot interleave.
"""

import hashlib
import json
import os
import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

from auditoryhum.console import note
from auditoryhum.defaults import DEFAULT_TSNE_METHOD, TSNE_METHODS
from auditoryhum.errors import UserError
from auditoryhum.io.hashing import file_digest
from auditoryhum.models.identity import model_identity
from auditoryhum.stages.label import LABEL_FAMILIES

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1

PathArg = Union[None, str, Sequence[str]]


def paths_digest(value: PathArg) -> Optional[str]:
    """Fingerprint of one file, or of a list of files (their paths and contents, in order);
    ``None`` when a file is missing, so the comparison fails and the step runs. A file's
    fingerprint is its content's (:func:`~auditoryhum.io.hashing.file_digest`), never its size or time."""
    if value is None:
        return "absent"
    if isinstance(value, (str, os.PathLike)):
        return file_digest(os.fspath(value))
    h = hashlib.blake2b(digest_size=16)
    for path in value:
        digest = file_digest(path)
        if digest is None:
            return None
        h.update(os.path.abspath(path).encode("utf-8", "surrogateescape") + b"\0" + digest.encode() + b"\n")
    return h.hexdigest()


@dataclass
class Step:
    """One stage of the pipeline, as the manifest sees it.

    ``inputs`` and ``outputs`` map a role to a file (or a list of files, e.g. the clips);
    ``options`` is everything else that changes the result (JSON-able); ``run()`` calls the
    stage and returns its result (a :class:`~auditoryhum.stages._base.StageResult`) or None.
    ``inputs`` may be given as a callable when the files are only known once upstream steps ran
    (the resampled clips).
    """

    name: str
    what: str
    inputs: Union[Dict[str, PathArg], Callable[[], Dict[str, PathArg]]]
    outputs: Dict[str, PathArg]
    options: Dict[str, Any]
    run: Callable[[], Any]
    #: shown after the step ran (e.g. "Silhouette Score 0.41"); from its result
    summary: Callable[[Any], Optional[str]] = lambda result: None
    #: outputs whose content may legitimately differ between two identical runs are none here:
    #: every stage is deterministic, which is what lets the manifest compare contents.
    resolved_inputs: Dict[str, PathArg] = field(default_factory=dict)

    def input_files(self) -> Dict[str, PathArg]:
        return self.inputs() if callable(self.inputs) else self.inputs


def _canonical(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


class Manifest:
    """The record of finished steps in ``out_dir/manifest.json`` (written atomically)."""

    def __init__(self, out_dir: str):
        self.path = os.path.join(out_dir, MANIFEST_NAME)
        self.steps: Dict[str, Dict[str, Any]] = {}
        try:
            with open(self.path, encoding="utf-8") as f:
                document = json.load(f)
        except FileNotFoundError:
            return
        except (OSError, ValueError, UnicodeDecodeError):
            note(f"the manifest {self.path} is unreadable; every step is checked again from scratch")
            return
        if isinstance(document, dict) and document.get("manifest") == MANIFEST_FORMAT and isinstance(document.get("steps"), dict):
            self.steps = {}
            for name, record in document["steps"].items():
                if _well_formed(record):
                    self.steps[name] = record
                else:
                    # Like a truncated manifest: the record cannot vouch for anything, so the step reruns.
                    note(f"the manifest {self.path} holds a malformed record of step {name}; that step runs again")
        else:
            note(f"the manifest {self.path} is from another version; every step runs again")

    def save(self) -> None:
        from auditoryhum.io.atomic import write_text

        document = {"manifest": MANIFEST_FORMAT, "steps": self.steps}
        write_text(self.path, json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


def _well_formed(record: Any) -> bool:
    """Whether a manifest record has the shape :func:`execute` writes (anything else is hand-edited or
    damaged): a mapping whose options, inputs and outputs are mappings of text digests."""
    if not isinstance(record, dict):
        return False
    for part in ("options", "inputs", "outputs"):
        if not isinstance(record.get(part, {}), dict):
            return False
    for part in ("inputs", "outputs"):
        # A digest is text, or null for a file that was missing when the step was recorded.
        if not all(v is None or isinstance(v, str) for v in record.get(part, {}).values()):
            return False
    return record.get("summary") is None or isinstance(record.get("summary"), str)


def stale_reason(step: Step, record: Optional[Dict[str, Any]], inputs: Dict[str, PathArg]) -> Optional[str]:
    """Why ``step`` must run (one phrase), or None when its record says it is up to date."""
    if record is None:
        return "not run yet"
    if record.get("options") != _canonical(step.options):
        old = record.get("options") or {}
        new = _canonical(step.options)
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        return "options changed: " + ", ".join(changed)
    recorded_inputs = record.get("inputs") or {}
    for role, value in inputs.items():
        if recorded_inputs.get(role) != paths_digest(value):
            return f"input {role} changed"
    if set(recorded_inputs) != set(inputs):
        return "inputs changed"
    recorded_outputs = record.get("outputs") or {}
    for role, value in step.outputs.items():
        digest = paths_digest(value)
        if digest is None:
            return f"output {role} is missing"
        if recorded_outputs.get(role) != digest:
            return f"output {role} was changed since"
    return None


@dataclass
class PlanLine:
    """One line of ``--dry-run``: a step and whether it would run."""

    name: str
    what: str
    state: str  # "up to date", "runs: <reason>", "may run: after <upstream>"


def plan_lines(steps: Sequence[Step], out_dir: str) -> List[PlanLine]:
    """What a run would do, step by step, without running anything.

    A step whose own record is current but which reads an output of a step that will run is
    reported as "may run": whether it does depends on whether that upstream output changes.
    """
    manifest = Manifest(out_dir)
    lines: List[PlanLine] = []
    produced_by: Dict[str, str] = {}
    will_run: set = set()
    for step in steps:
        try:
            inputs = step.input_files()
        except UserError as exc:
            inputs = None
            reason: Optional[str] = f"inputs not available yet ({exc})"
        else:
            reason = stale_reason(step, manifest.steps.get(step.name), inputs)
        upstream = sorted({produced_by[p] for p in _flat(inputs or {}) if p in produced_by and produced_by[p] in will_run})
        if reason is not None:
            state = f"runs: {reason}"
            will_run.add(step.name)
        elif upstream:
            state = f"may run: after {', '.join(upstream)}"
            will_run.add(step.name)
        else:
            state = "up to date"
        for path in _flat(step.outputs):
            produced_by[path] = step.name
        lines.append(PlanLine(step.name, step.what, state))
    return lines


def _flat(files: Dict[str, PathArg]) -> Iterable[str]:
    for value in files.values():
        if value is None:
            continue
        if isinstance(value, (str, os.PathLike)):
            yield os.path.abspath(value)
        else:
            for path in value:
                yield os.path.abspath(path)


def _in_stage(name: str, exc: UserError) -> UserError:
    """``exc`` with the stage named in front; a parameter's error stays one (shown under its flag)."""
    from auditoryhum.errors import ParameterError
    from auditoryhum.stages._base import MentionError, mention

    from auditoryhum.errors import _MENTION

    if isinstance(exc, ParameterError):
        text = exc.text if isinstance(exc, MentionError) else f"{mention(exc.param)} {exc.problem}"
        # A stage parameter that is no option of the run (output_dir, csv3) is named as itself, never
        # shown as a flag auditoryhum run does not have.
        run_options = {f.name for f in fields(RunOptions)}
        text = _MENTION.sub(lambda m: m.group(0) if m.group(1) in run_options else m.group(1), text)
        if _MENTION.search(text):
            return MentionError(f"stage {name}: {text}")
        return UserError(f"stage {name}: {text}")
    return UserError(f"stage {name}: {exc}")


@dataclass
class StepOutcome:
    name: str
    ran: bool
    seconds: float
    summary: Optional[str]
    failures: List[str]


def execute(steps: Sequence[Step], out_dir: str, announce: Callable[[str], None]) -> List[StepOutcome]:
    """Run the stale steps in order, recording each in the manifest as soon as it finished.

    ``announce`` receives one line per step (skipped or run). A step whose stage reports failed
    items (clips that could not be decoded) is recorded without its output fingerprints, so the
    next run retries it (its journal keeps the finished items).
    """
    from auditoryhum import run_log
    from auditoryhum.io.guard import locked_outputs

    os.makedirs(out_dir, exist_ok=True)
    manifest_path = os.path.join(out_dir, MANIFEST_NAME)
    outcomes: List[StepOutcome] = []
    with locked_outputs([manifest_path], holder="auditoryhum run"):
        manifest = Manifest(out_dir)
        for step in steps:
            inputs = step.input_files()
            reason = stale_reason(step, manifest.steps.get(step.name), inputs)
            if reason is None:
                announce(f"[{step.name}] up to date: {step.what}")
                outcomes.append(StepOutcome(step.name, False, 0.0, manifest.steps[step.name].get("summary"), []))
                continue
            announce(f"[{step.name}] {step.what} ({reason})")
            started = time.monotonic()
            try:
                result = step.run()
            except UserError as exc:
                raise _in_stage(step.name, exc) from None
            seconds = time.monotonic() - started
            failures = list(getattr(result, "failures", None) or [])
            summary = step.summary(result)
            record = {
                "what": step.what,
                "options": _canonical(step.options),
                "inputs": {role: paths_digest(value) for role, value in inputs.items()},
                "outputs": {} if failures else {role: paths_digest(value) for role, value in step.outputs.items()},
                "seconds": round(seconds, 3),
                "summary": summary,
                "failures": len(failures),
                # When and with which libraries: here, not in the artefacts (report.html), which must
                # be the same bytes however often the run was interrupted and resumed.
                "finished": run_log.utc_now(),
                "versions": run_log.versions(),
            }
            manifest.steps[step.name] = record
            manifest.save()
            outcomes.append(StepOutcome(step.name, True, seconds, summary, failures))
            if summary:
                announce(f"[{step.name}] {summary}")
    return outcomes


# ---------------------------------------------------------------------------------------
# the plan: which stages run, on which files, with which options

#: The fixed artefact names inside ``out_dir`` (docs/pipeline.md).
LAYOUT = {
    "clips": "clips_16k",
    "labels": "text_labels.csv",
    "clap": "clap.npy",
    "scores": "top_label_scores.csv",
    "review_csv": "review.csv",
    "review_html": os.path.join("review", "review.html"),
    "merged": "text_labels_merged.csv",
    "scores_merged": "top_label_scores_merged.csv",
    "boost": "score_boost.txt",
    "st": "st.npy",
    "sweep": "sweep.csv",
    "sweep_png": "sweep.png",
    "clusters": "clusters.csv",
    "clusters_png": "clusters.png",
    "composite_stats": "composite_stats.txt",
    "taxonomy": "taxonomy.csv",
    "taxonomy_json": "taxonomy.json",
    "report": "report.html",
}

#: The report's parameter -> the LAYOUT artefact it shows (given when a step of the run writes it).
REPORT_INPUTS = {
    "top_label_scores_csv": "scores",
    "selection_csv": "review_csv",
    "scores_with_human_csv": "scores_merged",
    "sweep_csv": "sweep",
    "cluster_csv": "clusters",
    "taxonomy_csv": "taxonomy",
    "tsne_png": "clusters_png",
}

#: The labellers run accepts: the audio-LLM families of :func:`auditoryhum.stages.label.label`, and ``gemini`` (the API).
LABELLERS = (*LABEL_FAMILIES, "gemini")


@dataclass
class RunOptions:
    """The options of ``auditoryhum run`` (one per flag; docs/pipeline.md)."""

    filedir: str
    out_dir: str
    text_label_csv: Optional[str] = None
    labeller: Optional[str] = None
    labeller_model: Optional[str] = None
    resample: bool = False
    clap_model: Optional[str] = None
    st_model: Optional[str] = None
    annotations: Optional[str] = None
    n_clusters: Optional[int] = None
    penalty: Optional[float] = None
    #: the t-SNE of the cluster plot: "sklearn" (the published one) or "opentsne" (fast-tsne extra)
    tsne: str = DEFAULT_TSNE_METHOD
    chat_model: Optional[str] = None
    device: str = "auto"
    batch_size: Optional[int] = None
    #: where the per-clip model stages (labelling, CLAP audio embeddings) run: "local" or "ray"
    engine: str = "local"
    ray_address: Optional[str] = None
    actors: int = 1
    gpus_per_actor: Optional[float] = None
    cpus_per_actor: Optional[float] = None
    verbose: bool = False
    title: str = "AuditoryHuM run"
    #: label through OpenAI-compatible server(s) (vLLM; URLs, comma-separated) serving labeller_model (docs/vllm.md)
    server: Optional[str] = None
    #: name the clusters through server(s) serving chat_model
    chat_server: Optional[str] = None
    #: requests in flight per server stage (default auditoryhum.defaults.SERVER_CONCURRENCY)
    concurrency: Optional[int] = None
    #: the labeller's answers constrained to this regular expression or preset (word_pairs); server only
    format_regex: Optional[str] = None

    def validate(self) -> "RunOptions":
        from auditoryhum import validation
        from auditoryhum.errors import ParameterError

        if not self.filedir:
            raise ParameterError("filedir", "is required (a glob of the audio files)")
        if not self.out_dir:
            raise ParameterError("out_dir", "is required (the folder of every artefact)")
        if (self.text_label_csv is None) == (self.labeller is None):
            raise ParameterError("labeller", "or text_label_csv: give exactly one (label the clips, or use existing labels)")
        if self.labeller is not None:
            validation.one_of(self.labeller, LABELLERS, "labeller")
            if not self.labeller_model:
                raise ParameterError("labeller_model", f"is required with labeller {self.labeller}")
        if self.server is not None and self.labeller in (None, "gemini"):
            raise ParameterError("server", "serves an audio-LLM labeller: give labeller qwen2a, qwen2_5o, qwen3o or "
                                           "gemma3n with it (or leave it out)")
        if self.format_regex is not None and self.server is None:
            raise ParameterError("format_regex", "applies only to labelling through a server; give server too")
        if self.chat_server is not None and self.chat_model is None:
            raise ParameterError("chat_server", "needs chat_model (the name the server serves the namer under)")
        self.concurrency = validation.optional_positive_int(self.concurrency, "concurrency")
        self.n_clusters = validation.optional_positive_int(self.n_clusters, "n_clusters")
        self.batch_size = validation.optional_positive_int(self.batch_size, "batch_size")
        validation.one_of(self.tsne, TSNE_METHODS, "tsne")
        if self.penalty is not None:
            self.penalty = validation.finite_non_negative(self.penalty, "penalty")
        self.engine_kw = validation.engine_options(self.engine, self.ray_address, self.actors, self.gpus_per_actor,
                                                   self.cpus_per_actor, self.verbose)
        return self


def build_steps(opts: RunOptions) -> List[Step]:
    """The stages of a run of ``opts``, in order (nothing runs here)."""
    import auditoryhum as ah
    from auditoryhum.io.audio import expand_glob
    from auditoryhum.io.artefacts import decision_path

    out = opts.out_dir
    at = {key: os.path.join(out, name) for key, name in LAYOUT.items()}
    device = {"device": opts.device}
    batch = {"batch_size": opts.batch_size}
    steps: List[Step] = []

    source_clips = expand_glob(opts.filedir, "filedir")
    if opts.resample:
        from auditoryhum.errors import MentionError, mention
        from auditoryhum.resample import mirror_destinations, overwritten_source

        clips = mirror_destinations(source_clips, at["clips"])
        clash = overwritten_source(source_clips, clips)
        if clash is not None:
            # Said in run's own terms: the stage's output_dir is no flag of auditoryhum run.
            raise MentionError(
                f"stage resample: the resampled copies in {mention('out_dir')} {opts.out_dir} would overwrite the "
                f"clips of {mention('filedir')} (e.g. {clash}); choose an {mention('out_dir')} outside the clips' "
                f"folders or a {mention('filedir')} that does not match the run's own clips_16k")
        steps.append(Step(
            "resample", "convert copies of the clips to 16 kHz mono s16",
            inputs={"filedir": source_clips}, outputs={"clips": clips}, options={},
            run=lambda: ah.resample_clips(source_clips, output_dir=at["clips"]),
            summary=lambda r: ", ".join(f"{n} {status}" for status, n in sorted(r.counts.items())),
        ))
    else:
        clips = source_clips

    # 1. labels
    if opts.labeller == "gemini":
        steps.append(Step(
            "label", f"label the clips with Gemini {opts.labeller_model}",
            inputs={"filedir": clips}, outputs={"text_label_csv": at["labels"]},
            options={"labeller": "gemini", "model": opts.labeller_model},
            run=lambda: ah.label_gemini(clips, opts.labeller_model, at["labels"]),
        ))
    elif opts.labeller is not None and opts.server is not None:
        # The weights live on the server: the manifest knows the served name, the format and the
        # route (the URLs only route requests to the same model).
        steps.append(Step(
            "label", f"label the clips with {opts.labeller} ({opts.labeller_model}) on {opts.server}",
            inputs={"filedir": clips}, outputs={"text_label_csv": at["labels"]},
            options={"labeller": opts.labeller, "model": opts.labeller_model, "route": "server",
                     "format_regex": opts.format_regex},
            run=lambda: ah.label(clips, opts.labeller_model, at["labels"], family=opts.labeller, server=opts.server,
                                 concurrency=opts.concurrency, format_regex=opts.format_regex),
        ))
    elif opts.labeller is not None:
        steps.append(Step(
            "label", f"label the clips with {opts.labeller} ({opts.labeller_model})",
            inputs={"filedir": clips}, outputs={"text_label_csv": at["labels"]},
            options={"labeller": opts.labeller, "model": model_identity(opts.labeller_model), **device, **batch},
            run=lambda: ah.label(clips, opts.labeller_model, at["labels"], family=opts.labeller,
                                 device=opts.device, batch_size=opts.batch_size, **opts.engine_kw),
        ))
    else:
        given = opts.text_label_csv
        steps.append(Step(
            "labels", f"take the labels of {given}",
            inputs={"text_label_csv": given}, outputs={"text_label_csv": at["labels"]}, options={},
            run=lambda: _copy_labels(given, at["labels"], len(clips)),
        ))

    # 2. CLAP audio embeddings and scores of the labels (with and without the annotations)
    def scoring(name: str, labels: str, scores: str, what: str) -> Step:
        if opts.clap_model is None:
            return Step(
                name, f"keep each clip's first usable label of {os.path.basename(labels)} (no CLAP model: scores nan)",
                inputs={"filedir": clips, "text_label_csv": labels}, outputs={"top_label_scores_csv": scores},
                options={"clap_model": None},
                run=lambda: ah.keep_first_labels(clips, labels, scores),
            )
        return Step(
            name, what,
            inputs={"filedir": clips, "clap_npy": at["clap"], "text_label_csv": labels},
            outputs={"top_label_scores_csv": scores},
            options={"clap_model": model_identity(opts.clap_model), **device},
            run=lambda: ah.score_labels(clips, opts.clap_model, at["clap"], labels, scores, device=opts.device),
            summary=lambda r: f"Mean CLAP score: {r.mean_score}",
        )

    if opts.clap_model is not None:
        steps.append(Step(
            "clap", "CLAP audio embedding of every clip",
            inputs={"filedir": clips}, outputs={"clap_npy": at["clap"]},
            options={"clap_model": model_identity(opts.clap_model), **device, **batch},
            run=lambda: ah.embed_audio(clips, opts.clap_model, at["clap"], kind="clap",
                                       device=opts.device, batch_size=opts.batch_size, **opts.engine_kw),
        ))
    steps.append(scoring("scores", at["labels"], at["scores"], "keep each clip's best label by CLAP score"))
    if opts.clap_model is None:
        note("no clap_model: the kept label of each clip is its first usable candidate and scores are nan; "
             "review selection and the score boost are skipped")
    else:
        steps.append(Step(
            "review", "select the worst-scored clips for human review (lowest 1 %) and write the review page",
            inputs={"top_label_scores_csv": at["scores"], "text_label_csv": at["labels"]},
            outputs={"selection_csv": at["review_csv"], "html": at["review_html"]}, options={},
            run=lambda: ah.select_review(at["scores"], at["labels"], selection_csv=at["review_csv"], html=at["review_html"]),
            summary=lambda r: r.summary or None,
        ))
    kept = at["scores"]
    if opts.annotations is not None:
        annotations = opts.annotations
        steps.append(Step(
            "merge", f"merge the human annotations of {annotations} into the labels",
            inputs={"csv1": at["labels"], "csv2": annotations}, outputs={"csv3": at["merged"]}, options={},
            run=lambda: ah.merge_labels(at["labels"], annotations, at["merged"]),
            summary=lambda r: f"{r.n_replaced} of {r.n_lines} lines replaced by annotations",
        ))
        steps.append(scoring("scores_merged", at["merged"], at["scores_merged"],
                             "score the merged labels with CLAP"))
        kept = at["scores_merged"]
        if opts.clap_model is not None:
            steps.append(Step(
                "score_boost", "mean score of the annotated clips without and with human input",
                inputs={"csv1": at["scores"], "csv2": at["scores_merged"], "csv3": annotations},
                outputs={"boost": at["boost"]}, options={},
                run=lambda: _printed_to(at["boost"], ah.score_boost(at["scores"], at["scores_merged"], annotations)),
                summary=lambda r: f"score boost {r.difference:+.4f} over {r.n_used} annotated clips",
            ))

    # 3. label embeddings, the sweep, the clustering, composite statistics and naming
    from auditoryhum.models.bundled import default_sentence_model

    st_model = opts.st_model or default_sentence_model()
    steps.append(Step(
        "st", "sentence embedding of every clip's kept label",
        inputs={"label_csv": kept}, outputs={"st_npy": at["st"]},
        options={"st_model": model_identity(st_model), **device},
        run=lambda: ah.embed_sentences(kept, st_model, at["st"], device=opts.device),
    ))
    penalty = {} if opts.penalty is None else {"penalty": opts.penalty}
    decision = decision_path(at["sweep"])
    steps.append(Step(
        "sweep", "silhouette of every k (Ward), the penalised choice of k",
        inputs={"cluster_npy": at["st"]},
        outputs={"sweep_csv": at["sweep"], "decision_json": decision, "png_plot": at["sweep_png"]},
        options={"algorithm": "ag", **penalty},
        run=lambda: ah.sweep_clusters(at["st"], at["sweep"], at["sweep_png"], **penalty),
        summary=lambda r: f"chosen k {r.chosen_k} (silhouette {r.chosen_silhouette})",
    ))

    def final_k() -> Optional[int]:
        if opts.n_clusters is not None:
            return opts.n_clusters
        from auditoryhum.io.artefacts import read_decision

        document, why = read_decision(at["sweep"])
        if document is None or document.get("chosen_k") is None:
            raise UserError(f"the sweep chose no k ({why or 'no silhouette is defined'}); give n_clusters")
        return int(document["chosen_k"])

    steps.append(Step(
        "cluster", "Ward clustering of the label embeddings at "
                   + (f"k = {opts.n_clusters}" if opts.n_clusters else "the sweep's chosen k"),
        inputs={"cluster_npy": at["st"], **({} if opts.n_clusters else {"decision_json": decision})},
        outputs={"label_csv": at["clusters"], "png_plot": at["clusters_png"]},
        # The default t-SNE stays out of the record: runs recorded before the option stay up to date.
        options={"algorithm": "ag", "n_clusters": opts.n_clusters or "the sweep's chosen k",
                 **({} if opts.tsne == DEFAULT_TSNE_METHOD else {"tsne": opts.tsne})},
        run=lambda: ah.cluster(at["st"], at["clusters"], at["clusters_png"], algorithm="ag", n_clusters=final_k(),
                               tsne=opts.tsne),
        summary=lambda r: f"{r.n_clusters} clusters, Silhouette Score {r.silhouette}",
    ))
    steps.append(Step(
        "composite_stats", "per-cluster label distributions (composite-label prompts)",
        inputs={"label_csv": at["clusters"], "top_label_scores_csv": kept},
        outputs={"composite_stats": at["composite_stats"]}, options={},
        run=lambda: _printed_to(at["composite_stats"], ah.composite_stats(at["clusters"], kept)),
    ))
    if opts.chat_model is not None and opts.chat_server is not None:
        steps.append(Step(
            "taxonomy", f"name every cluster with {opts.chat_model} on {opts.chat_server}",
            inputs={"label_csv": at["clusters"], "top_label_scores_csv": kept},
            outputs={"taxonomy_csv": at["taxonomy"], "json": at["taxonomy_json"]},
            options={"model": opts.chat_model, "route": "server"},
            run=lambda: ah.composite_labels(at["clusters"], kept, at["taxonomy"], model=opts.chat_model,
                                            json=at["taxonomy_json"], server=opts.chat_server,
                                            concurrency=opts.concurrency),
            summary=lambda r: "; ".join(f"{k}: {v}" for k, v in sorted(r.labels.items())),
        ))
    elif opts.chat_model is not None:
        steps.append(Step(
            "taxonomy", f"name every cluster with {opts.chat_model}",
            inputs={"label_csv": at["clusters"], "top_label_scores_csv": kept},
            outputs={"taxonomy_csv": at["taxonomy"], "json": at["taxonomy_json"]},
            options={"model": model_identity(opts.chat_model), **device, **batch},
            run=lambda: ah.composite_labels(at["clusters"], kept, at["taxonomy"], model=opts.chat_model,
                                            json=at["taxonomy_json"], device=opts.device, batch_size=opts.batch_size),
            summary=lambda r: "; ".join(f"{k}: {v}" for k, v in sorted(r.labels.items())),
        ))
    # The report is given every artefact of REPORT_INPUTS that a step of this run writes, and
    # nothing else: derived from the steps, so a stage added or made conditional cannot drift
    # from what the report is told (with annotations and no CLAP model the merged scores exist
    # and the page shows the kept labels after the annotations).
    written = {path for step in steps for path in step.outputs.values() if isinstance(path, str)}
    report_inputs = {param: at[key] if at[key] in written else None for param, key in REPORT_INPUTS.items()}
    report_inputs["annotations"] = opts.annotations
    manifest = os.path.join(out, MANIFEST_NAME)
    steps.append(Step(
        "report", "the run report (one self-contained HTML page)",
        inputs={**report_inputs, "decision_json": decision}, outputs={"html": at["report"]},
        # The manifest is linked from the page, not read (so no input); naming it here also
        # renders once again the pages of runs recorded before the page linked it.
        options={"title": opts.title, "run_manifest": MANIFEST_NAME},
        run=lambda: ah.write_report(at["report"], title=opts.title, run_manifest=manifest, **report_inputs),
    ))
    return steps


def _copy_labels(source: str, target: str, n_clips: int):
    """The user's label file, copied into the run folder (checked line-aligned with the clips)."""
    from auditoryhum.io.artefacts import check_aligned, read_label_file, write_lines
    from auditoryhum.io.guard import guard_stage
    from auditoryhum.stages._base import StageResult

    # The copy is named by the flag that places it (out_dir): "labels" is no flag of auditoryhum run.
    with guard_stage({"text_label_csv": source}, {"out_dir": target}, holder="auditoryhum run"):
        lines = read_label_file(source)
        check_aligned(f"the clips of filedir ({n_clips})", n_clips, f"label file {source}", len(lines))
        write_lines(target, lines)
    return StageResult(outputs={"text_label_csv": target})


def _printed_to(path: str, result):
    """Write what the stage's command prints (``result.report``) to ``path``, as ``> path`` would."""
    from auditoryhum.io.atomic import write_text

    write_text(path, result.report)
    result.outputs[os.path.basename(path)] = path
    return result


def run_pipeline(opts: RunOptions, dry_run: bool = False, announce: Callable[[str], None] = None) -> int:
    """Run (or with ``dry_run`` only plan) the pipeline of ``opts``; return the exit code.

    Returns 1 when some stage reported failed items (their rows are empty/NaN, as the stage
    documents; rerunning retries only those), else 0.
    """
    import sys

    opts.validate()
    announce = announce or (lambda line: print(line, file=sys.stderr, flush=True))
    steps = build_steps(opts)
    if dry_run:
        for line in plan_lines(steps, opts.out_dir):
            print(f"{line.name:<16} {line.state:<40} {line.what}")
        return 0
    outcomes = execute(steps, opts.out_dir, announce)
    failed = [o for o in outcomes if o.failures]
    ran = sum(o.ran for o in outcomes)
    print(f"{ran} of {len(outcomes)} stages ran, {len(outcomes) - ran} were up to date; artefacts in {opts.out_dir}")
    for outcome in failed:
        print(f"stage {outcome.name}: {len(outcome.failures)} item(s) failed; rerun to retry them", file=sys.stderr)
    return 1 if failed else 0



def options_from_args(args) -> RunOptions:
    """:class:`RunOptions` from parsed flags and, with ``--config FILE.toml``, that file.

    The file holds the same options, one key per flag without the dashes (``filedir =
    "clips/*.wav"``, ``resample = true``); a flag given on the command line overrides its key.
    Relative paths in the file are taken relative to the current folder, as flags are.
    """
    import typing

    names = [f.name for f in fields(RunOptions)]
    # run's parser leaves a flag that was not given out of ``args`` (argparse.SUPPRESS, see
    # cli/run.py), so "given" is known exactly: a flag given at its default value
    # (--engine local, --tsne sklearn) still overrides the file. None is never a given value.
    given = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    values: Dict[str, Any] = {}
    if getattr(args, "config", None):
        values.update(read_config(args.config, names, typing.get_type_hints(RunOptions)))
    values.update(given)
    return RunOptions(**{"filedir": values.pop("filedir", ""), "out_dir": values.pop("out_dir", ""), **values})


def _config_type(hint: Any) -> Optional[type]:
    """The TOML value type an option's annotation asks for (``Optional[int]`` -> int), or None (any)."""
    import typing

    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Union and len(args) == 1:
        hint = args[0]
    return hint if hint in (bool, int, float, str) else None


#: How a config file must write a value of each type (the error says it).
_CONFIG_SPELLING = {bool: "true or false (a TOML boolean, without quotes)", int: "a whole number",
                    float: "a number", str: "a string (in quotes)"}


def _toml_value(value: Any) -> str:
    """A config value as the error shows it: its TOML kind and a short repr."""
    kind = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
            dict: "table"}.get(type(value), type(value).__name__)
    shown = json.dumps(value, default=str, ensure_ascii=False)
    return f"the {kind} {shown if len(shown) <= 60 else shown[:57] + '...'}"


def read_config(path: str, known: Sequence[str], types: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The options in a TOML file; an unknown key, a value of the wrong type or a bad file is one
    line naming it.

    ``types`` maps a key to its option's annotation (``bool``, ``Optional[int]``, ...): a value
    must be of that TOML type, booleans must be TOML booleans (``resample = "no"`` is refused,
    not read as true), a whole number is accepted for a float option.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            config = tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except OSError as exc:
        raise UserError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(config) - set(known) - {"config", "dry_run"})
    if unknown:
        raise UserError(f"config file {path}: unknown option(s) {', '.join(unknown)}; "
                        f"the keys are the flags of auditoryhum run without dashes")
    for key, value in config.items():
        want = _config_type((types or {}).get(key))
        if want is None:
            continue
        # bool is an int in Python: checked apart, so true is no number and 1 no boolean.
        ok = (isinstance(value, bool) if want is bool
              else not isinstance(value, bool) and isinstance(value, (int, float) if want is float else want))
        if not ok:
            raise UserError(f"config file {path}: {key} must be {_CONFIG_SPELLING[want]}, got {_toml_value(value)}")
    return {k: v for k, v in config.items() if k in known}
