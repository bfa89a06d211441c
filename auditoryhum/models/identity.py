"""A model's identity: the one rule by which the run manifest, the resume journals and the caches
tell whether the model behind a source changed.

Standard library only at import time (the run plan calls it without loading any model library).
"""

import hashlib
import json
import os
from typing import Any, Dict, Optional

#: Part of every :func:`identity_digest`: raise it when the rule below changes, so that caches
#: keyed by the old rule are never read under the new one.
IDENTITY_RULE = 2


def model_identity(source: Optional[str]) -> Optional[Dict[str, Any]]:
    """What identifies the model behind ``source``, without loading it (JSON-able).

    - a local folder: ``{"folder": <absolute path>, "files": {<relative path>: [size, mtime_ns]}}``
      for every file under it, subfolders included (a sentence-transformers model keeps its
      pooling and its transformer in subfolders); hidden files and folders (``.git``,
      ``.cache``: download bookkeeping) are left out, links are followed (the hub cache's
      files are links to its blobs);
    - a local file (a ``.gguf``): ``{"file": <absolute path>, "size": ..., "mtime_ns": ...}``;
    - anything else is a hub id: ``{"hub_id": source, "snapshot": <commit>}``, the commit of the
      snapshot the local hub cache holds for it (``None`` when none is cached yet), so a new
      snapshot of the same id is another model.

    Sizes and modification times, not the bytes: weights are gigabytes, hashing them on every
    run would cost more than the work it lets a rerun skip, and rewritten weights always get a
    new modification time. ``None`` gives ``None`` (no model).
    """
    if source is None:
        return None
    path = os.path.expanduser(source)
    if os.path.isfile(path):
        st = os.stat(path)
        return {"file": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if not os.path.isdir(path):
        return {"hub_id": source, "snapshot": _cached_snapshot(source)}
    files = {}
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except OSError:  # a dangling link is no part of the model
                continue
            files[os.path.relpath(full, path).replace(os.sep, "/")] = [st.st_size, st.st_mtime_ns]
    return {"folder": os.path.abspath(path), "files": dict(sorted(files.items()))}


def identity_digest(identity: Optional[Dict[str, Any]]) -> str:
    """A short hex digest of :func:`model_identity`'s result: the key of a model's cache folder."""
    text = json.dumps({"rule": IDENTITY_RULE, "identity": identity}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _cached_snapshot(repo_id: str) -> Optional[str]:
    """The commit of the snapshot of ``repo_id`` in the local hub cache (no network), or None."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # not installed, or not a valid repository id: no snapshot to name
        return None
    if not isinstance(found, str):
        return None
    snapshot = os.path.dirname(found)
    # hub cache layout: .../snapshots/<commit>/config.json
    return os.path.basename(snapshot) if os.path.basename(os.path.dirname(snapshot)) == "snapshots" else None
