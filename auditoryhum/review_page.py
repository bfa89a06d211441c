"""The review page: one self-contained HTML file for a person to relabel the worst clips.

The page lists the selected clips worst first, each with an audio player, the model's
candidates, the kept label and its score, and a box for the person's labels. It works from
``file://`` with no server: the audio is referenced by paths relative to the page (so the
page and the audio can be zipped together and sent on), edits live in the browser's local
storage, and "Export annotations" downloads the line-aligned annotations file that
``util_merge_csv.py --csv2`` and ``label_*.py --annotations`` read. Style and script are
inline, and a Content-Security-Policy forbids every network request, so the page cannot
fetch anything even by accident.

The template, style sheet and script are package data in ``auditoryhum/assets/``.
"""

import base64
import hashlib
import html
import json
import math
import os
import re
import urllib.parse
from importlib import resources
from pathlib import Path
from typing import Dict, Optional, Sequence

from auditoryhum.io.artefacts import SelectionRow
from auditoryhum.io.atomic import write_text
from auditoryhum.labels import clean_candidate

_PLACEHOLDER = re.compile(r"\{\{([a-z_]+)\}\}")
# Players that read their clip's header (duration) when the page opens. Every one more costs
# the browser a media player at load (1000 of them: ~14 s in headless Chromium on 2 cores, vs
# ~3 s with these 50); the script asks for the next clips' headers as the reviewer moves on.
_PRELOAD_FIRST = 50


def _asset(name: str) -> str:
    return resources.files("auditoryhum").joinpath("assets", name).read_text(encoding="utf-8")


def audio_src(audio_path: str, page_dir: str) -> str:
    """The ``src`` of a clip's player: its path relative to the page's folder, as a URL.

    ``audio_path`` is resolved against the current folder (as every tool resolves the paths
    in a scores file). Each path segment is percent-encoded, so names with spaces, ``#``, ``?``
    or non-ASCII characters load. Where no relative path exists (another drive on Windows),
    the absolute ``file:`` URL is used.

    Parameters
    ----------
    audio_path : str
        The path as written in the scores file.
    page_dir : str
        Folder the HTML file is written to.

    Returns
    -------
    src : str
    """
    target = os.path.abspath(audio_path)
    try:
        relative = os.path.relpath(target, os.path.abspath(page_dir))
    except ValueError:
        return Path(target).as_uri()
    return urllib.parse.quote(relative.replace(os.sep, "/"), safe="/")


def page_identity(rows: Sequence[SelectionRow], n_clips: int) -> str:
    """A short hash of what the page shows; the key its saved edits are stored under.

    Regenerating the same selection gives the same identity (edits carry over); a different
    selection or scores file gives another, so pages never overwrite each other's edits.
    """
    content = json.dumps(
        [n_clips, [[r.line, r.path, r.label, "nan" if math.isnan(r.score) else repr(r.score), r.candidates] for r in rows]],
        ensure_ascii=False,
    )
    return hashlib.sha256(content.encode("utf-8")).hexdigest()[:20]


def export_name(page_path: str) -> str:
    """File name the page's "Export annotations" button suggests: ``<page stem>_annotations.csv``."""
    return f"{Path(page_path).stem}_annotations.csv"


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _score_text(score: float) -> str:
    return "nan" if math.isnan(score) else f"{score:.4f}"


def _clip_html(rank: int, row: SelectionRow, page_dir: str) -> str:
    n = row.line
    kept = row.label.strip()
    chips = []
    seen = set()
    for part in row.candidates.split(","):
        text = " ".join(part.split())
        if not text or text in seen:
            continue
        seen.add(text)
        is_kept = bool(kept) and clean_candidate(text) == kept
        chips.append(
            f'<li><button type="button" class="chip{" kept" if is_kept else ""}" data-text="{_e(text)}" '
            f'aria-label="Add {_e(text)} to your labels{" (the kept label)" if is_kept else ""}">{_e(text)}</button></li>'
        )
    candidates = f'<ul class="candidates">{"".join(chips)}</ul>' if chips else '<span class="kept-none">none</span>'
    kept_html = _e(kept) if kept else '<span class="kept-none">none (no usable candidate)</span>'
    score_class = "score nan" if math.isnan(row.score) else "score"
    score_title = "no usable label" if math.isnan(row.score) else f"{row.score!r}"
    return (
        f'<li class="clip" id="clip-{n}" data-line="{n}" tabindex="-1" aria-labelledby="clip-{n}-title">\n'
        f'  <div class="clip-head">\n'
        f'    <h2 id="clip-{n}-title"><span class="rank">#{rank}</span><span class="line-no">line {n}</span>'
        f'<span class="path">{_e(row.path)}</span></h2>\n'
        f'    <p class="{score_class}" title="{_e(score_title)}">score <strong>{_score_text(row.score)}</strong></p>\n'
        f"  </div>\n"
        f'  <audio controls preload="{"metadata" if rank <= _PRELOAD_FIRST else "none"}" '
        f'src="{_e(audio_src(row.path, page_dir))}" aria-label="Clip on line {n}"></audio>\n'
        f'  <dl class="facts">\n'
        f"    <dt>Kept label</dt><dd>{kept_html}</dd>\n"
        f"    <dt>Model&rsquo;s candidates</dt><dd>{candidates}</dd>\n"
        f"  </dl>\n"
        f'  <label class="box-label" for="labels-{n}">Your labels for line {n} '
        f'<span class="how">(word pairs, separated by commas)</span></label>\n'
        f'  <input type="text" class="labels" id="labels-{n}" autocomplete="off" spellcheck="true" '
        f'placeholder="e.g. dog barking, car horn" aria-describedby="note-{n}">\n'
        f'  <p class="note" id="note-{n}" aria-live="polite"></p>\n'
        f"</li>"
    )


def _json_for_script(value: object) -> str:
    # Inside <script> only "</" could end the element early; escaping <, > and & covers it.
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def csp_hash(text: str) -> str:
    """The Content-Security-Policy source that allows exactly the inline ``text`` (a script or a
    style element's content): ``'sha256-<base64 of the SHA-256 of its UTF-8 bytes>'``. Both pages
    (this one and the run report) allow only their own inline code, so they cannot fetch anything."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def render_review_page(
    rows: Sequence[SelectionRow],
    page_path: str,
    n_clips: int,
    summary: str,
    sources: str = "",
    title: Optional[str] = None,
) -> str:
    """The review page's HTML for ``rows`` (already worst first).

    Parameters
    ----------
    rows : sequence of SelectionRow
        The selected clips, in the order to show them.
    page_path : str
        Where the page will be written; the audio paths are made relative to its folder.
    n_clips : int
        Lines in the whole scores file: the length of the exported annotations file.
    summary : str
        One plain-text sentence under the title (how the clips were chosen).
    sources : str
        Plain text naming the input files.
    title : str, optional
        Page title; default ``"Review: the <n> worst-scored clips"``.

    Returns
    -------
    html : str
    """
    page_dir = os.path.dirname(os.path.abspath(page_path))
    css = _asset("review_page.css")
    js = _asset("review_page.js")
    for name, text, end in (("css", css, "</style"), ("js", js, "</script")):
        if end in text.lower():
            raise ValueError(f"review page {name} asset must not contain {end}")
    csp = "; ".join(
        [
            "default-src 'none'",
            f"script-src {csp_hash(js)}",
            f"style-src {csp_hash(css)}",
            # file: for pages opened from disk, 'self' for the same folder served over http.
            "media-src 'self' file: blob:",
            "img-src data:",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )
    name = export_name(page_path)
    data = {"id": page_identity(rows, n_clips), "n_clips": n_clips, "export_name": name}
    values: Dict[str, str] = {
        "csp": _e(csp),
        "title": _e(title or f"Review: the {len(rows)} worst-scored clip{'s' if len(rows) != 1 else ''}"),
        "summary": _e(summary),
        "sources": _e(sources),
        "n_selected": str(len(rows)),
        "n_clips": str(n_clips),
        "export_name_html": f"<code>{_e(name)}</code>",
        "clips": "\n".join(_clip_html(rank, row, page_dir) for rank, row in enumerate(rows, start=1)),
        "empty": "" if rows else '<p class="empty">No clips were selected, so there is nothing to review.</p>',
        "data": _json_for_script(data),
        "css": css,
        "js": js,
    }
    # One pass over the template: text substituted in is never scanned for placeholders again.
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], _asset("review_page.html"))


def write_review_page(
    page_path: str,
    rows: Sequence[SelectionRow],
    n_clips: int,
    summary: str,
    sources: str = "",
    title: Optional[str] = None,
) -> None:
    """Render the review page (see :func:`render_review_page`) and write it atomically."""
    write_text(page_path, render_review_page(rows, page_path, n_clips, summary, sources, title))
