"""The registry of models and their immutable versions.

Publishing is two-phase: first every file goes to storage as a content-addressed blob (a
component the parent already has is not stored again), with no database transaction open;
then ONE short transaction inserts the version with its file list, status `ready`, and ends
the job that made it `succeeded` if that job still runs under the publishing worker's
lease (a cancel or a lost lease wins: nothing is inserted). A crash before that commit
leaves blobs nobody points to, never a visible half version. A job publishes at most one
version (the unique `job_id` column), so publishing again for the same job returns the same
version.

Tenancy: a base belongs to a tenant (its owner) and is `private` (only the owner sees it, its
versions, and may run jobs on it) or `public` (every tenant does); the versions a job makes
belong to the job's tenant. Names are per tenant, in a namespace that public models share: a
public name is unique among all models and a private one cannot shadow it, so a name means
one model for each tenant. Versions are numbered per tenant: version 1 is the base, and each
tenant's jobs number theirs 2, 3, ... (N+1, N the newest version that tenant sees), so that a
tenant's numbers show no trace of other tenants' jobs; a version's `parent` is 1 or a version
of the same tenant.

Registering a base reads a folder on the server that a remote admin named, so it reads only
what lies in it: `folder_under_roots` keeps the path (resolved) under the configured model
roots; inside, a symbolic link is followed only to a regular file inside the same folder
(any other is refused), special files (FIFOs, devices, sockets) are refused and never
opened, and every file is opened without following a link on any part of its path (each
folder by `O_NOFOLLOW` relative to its parent's descriptor) and checked with `fstat` to be a
regular file, so that a link swapped in after the check is refused, not followed.

Which folders are taken is the library's question (`unlearning.folders`, no torch): a pipeline
class of a family Lethe trains (SD 1.x/2.x, SDXL base; not SD3, Flux or the SDXL refiner), its
components present, safetensors weights (pickle-only components are refused). Once the listing
has refused links that leave the folder, that check reads only names; the index it parses is
the one read above, without following links.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath

from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service import jobs
from service.models import PRIVATE, PUBLIC, Blob, Job, Model, ModelVersion, VersionFile
from service.storage import Storage
from unlearning import InvalidInput, folders

READY = "ready"
VISIBILITIES = (PRIVATE, PUBLIC)
NAME = re.compile(r"^[a-z0-9._-]{1,64}$")
MANIFEST = "manifest.json"
INDEX = "model_index.json"
METRICS = "evaluation/metrics.json"
MAX_PUBLISH_RACES = 5
MAX_INDEX_BYTES = 1 << 20
ADAPTER_FIELDS = ("diffusers", "kohya", "rank", "alpha", "target_modules")  # of the manifest's `lora` record
NO_FOLLOW = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
# Opening a FIFO for reading blocks until a writer comes; O_NONBLOCK returns at once instead.
FILE_FLAGS = NO_FOLLOW | os.O_NONBLOCK
FOLDER_FLAGS = NO_FOLLOW | os.O_DIRECTORY
# Re-opening /proc/self/fd/N opens the very file the descriptor holds (Linux), so the storage,
# which takes a path, reads the file that was checked and not whatever the path names now.
OPEN_FILES = Path("/proc/self/fd")


class RegistryError(ValueError):
    """Bad input to the registry; `.field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


class NameTaken(RegistryError):
    def __init__(self, name: str):
        super().__init__("name", f"a model named {name!r} already exists")


# -- reading -----------------------------------------------------------------------------------


def models_visible_to(tenant: str):
    """Models a tenant may see: the public ones and its own."""
    return or_(Model.visibility == PUBLIC, Model.owner == tenant)


def visible_to(tenant: str):
    """Versions a tenant may see (with `Model` joined): of the models it sees, the base and its own versions."""
    return and_(models_visible_to(tenant), or_(ModelVersion.tenant.is_(None), ModelVersion.tenant == tenant))


def version_visibility(version: ModelVersion) -> str:
    """Who sees `version`: every tenant (`public`: a public model's base) or one (`private`)."""
    return PUBLIC if version.tenant is None and version.model.visibility == PUBLIC else PRIVATE


def find_model(session: Session, name: str, tenant: str) -> Model | None:
    """The model `name` means to `tenant` (at most one: see the module docstring), if any."""
    return session.scalars(select(Model).where(Model.name == name, models_visible_to(tenant))).first()


def get_version(session: Session, name: str, version: int | None, tenant: str) -> ModelVersion | None:
    """Version `version` of model `name` (None: the newest) if `tenant` may see it."""
    query = select(ModelVersion).join(Model).where(Model.name == name, visible_to(tenant))
    if version is None:
        query = query.order_by(ModelVersion.version.desc()).limit(1)
    else:
        query = query.where(ModelVersion.version == version)
    return session.scalars(query).first()


def list_versions(session: Session, name: str, tenant: str) -> list[ModelVersion]:
    query = select(ModelVersion).join(Model).where(Model.name == name, visible_to(tenant))
    return list(session.scalars(query.order_by(ModelVersion.version.desc())))


def list_models(session: Session, tenant: str) -> list[ModelVersion]:
    """The newest version `tenant` sees of every model it sees, by model name."""
    newest = (
        select(ModelVersion.model_id, func.max(ModelVersion.version).label("version"))
        .join(Model)
        .where(visible_to(tenant))
        .group_by(ModelVersion.model_id)
        .subquery()
    )
    query = (
        select(ModelVersion)
        .join(newest, (ModelVersion.model_id == newest.c.model_id) & (ModelVersion.version == newest.c.version))
        .join(Model)
        .where(visible_to(tenant))  # the newest number of a model is also another tenant's: keep the one seen
        .order_by(Model.name)
    )
    return list(session.scalars(query))


# -- writing -----------------------------------------------------------------------------------


def folder_under_roots(path: str, roots: Sequence[Path]) -> Path:
    """The real folder `path` names, if it lies under one of `roots` (both resolved: links, `..`)."""
    if not roots:
        raise RegistryError("source.path", "registration by server path is off: no model roots are configured "
                                           "(LETHE_MODEL_ROOTS names the folders it may read)")
    if not os.path.isabs(path):
        raise RegistryError("source.path", f"must be an absolute path on the server but is {path!r}")
    folder = Path(os.path.realpath(path))
    if not any(folder.is_relative_to(os.path.realpath(root)) for root in roots):
        shown = ", ".join(str(root) for root in roots)
        resolved = "" if str(folder) == os.path.normpath(path) else f" (it resolves to {str(folder)!r})"
        raise RegistryError("source.path", f"{path!r} is not under a model root{resolved}; LETHE_MODEL_ROOTS: {shown}")
    return folder


def register_base(
    session: Session, storage: Storage, name: str, folder: Path, *, owner: str | None, visibility: str
) -> ModelVersion:
    """Register the diffusers folder `folder` (on this server) as version 1 of a new model.

    The model belongs to tenant `owner` and is `private` (only `owner` sees it) or `public`
    (every tenant does; `owner` may be None). Its name must not collide with a model some
    tenant already sees under that name (see the module docstring): NameTaken otherwise.
    Only what lies in the folder is read (see the module docstring); `folder` itself is trusted
    here, so a path from a remote caller goes through `folder_under_roots` first.
    """
    if not NAME.match(name):
        raise RegistryError("name", f"must be 1-64 of a-z 0-9 - _ . but is {name!r}")
    if visibility not in VISIBILITIES:
        raise RegistryError("visibility", f"must be one of {', '.join(VISIBILITIES)} but is {visibility!r}")
    if visibility == PRIVATE and owner is None:
        raise RegistryError("tenant", "a private model needs an owner tenant")
    model = Model(name=name, owner=owner, visibility=visibility, created_at=time.time())
    taken = session.scalar(select(Model.id).where(_name_clashes_with(model)).limit(1)) is not None
    _end_read(session)  # the insert below begins its own transaction, after the upload
    if taken:
        raise NameTaken(name)
    files, family = _upload_folder(storage, Path(os.path.realpath(folder)))
    version = ModelVersion(
        model=model, version=1, parent=None, status=READY, tenant=None, job_id=None,
        concepts_erased=[], method=None, evaluation=None, created_at=model.created_at,
        family=family, trainable=None, adapter=None,
    )  # fmt: skip
    try:
        _insert_model_if_its_name_is_free(session, model)
        session.add(version)
        _attach_files(session, version, files)
        session.commit()
    except IntegrityError:
        session.rollback()
        raise NameTaken(name) from None
    return version


def publish_version(
    session: Session,
    storage: Storage,
    model: str,
    parent_version: int,
    job_id: str,
    folder: Path,
    concepts_erased: list[str],
    method: str,
    worker: str | None = None,
) -> ModelVersion | None:
    """Publish the out folder of `unlearning.erase` as the next version of `model` in the job's
    tenant's line (N+1, N the newest version that tenant sees), status ready.

    No transaction is open while files go to storage: a short one reads the job and the
    model before, another inserts the version after. With `worker`, that last transaction
    also ends the job `succeeded` (its result: this version), but only if the job is still
    `running` under `worker`'s lease; otherwise (cancelled meanwhile, or the lease lost)
    nothing is inserted and None is returned. Without `worker` the job row is left as it is.

    The version belongs to the job's tenant, and `model` is the model that name means to that
    tenant. Idempotent per job: a second call for the same
    `job_id` returns the version the first one made. The folder's manifest.json is stored
    with the version number and parent this publish actually gave.
    """
    existing, tenant, model_id = _publish_target(session, model, job_id)
    if existing is not None:
        return existing
    folder = Path(folder)
    files = upload_files(storage, folder, skip=(MANIFEST,))
    lineage = dict(name=model, parent=parent_version, job_id=job_id, concepts_erased=concepts_erased, method=method)
    row = dict(model_id=model_id, parent=parent_version, status=READY, tenant=tenant, job_id=job_id,
               concepts_erased=list(concepts_erased), method=method, evaluation=_read_metrics(folder),
               **_made_how(folder))
    for _ in range(MAX_PUBLISH_RACES):
        number = _newest_number(session, model_id, tenant) + 1
        _end_read(session)
        manifest = _store_manifest(storage, folder, lineage | {"version": number})
        try:
            return _insert_version(session, ModelVersion(version=number, created_at=time.time(), **row),
                                   files | {MANIFEST: manifest}, worker, model)
        except _LostRace:
            existing = _version_of_job(session, job_id)
            _end_read(session)
            if existing is not None:
                return existing
    raise RuntimeError(f"could not publish a version of {model!r}: too many concurrent publishes")


def upload_files(storage: Storage, folder: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[str, int]]:
    """Store every file under `folder` as a blob: {relative posix path: (sha256, size)}.

    No database access: blobs nobody points to yet are harmless.
    """
    files = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and relative not in skip:
            files[relative] = storage.put_file(path)
    return files


class _LostRace(Exception):
    """Another publish of the same model by the same tenant took the version number first."""


def _name_clashes_with(model: Model):
    """Models whose name some tenant would confuse with `model`'s: every model of that name for
    a public one; for a private one, the owner's and the public ones."""
    same_name = Model.name == model.name
    if model.visibility == PUBLIC:
        return same_name
    return and_(same_name, or_(Model.visibility == PUBLIC, Model.owner == model.owner))


def _insert_model_if_its_name_is_free(session: Session, model: Model) -> None:
    """Insert `model`, and refuse it (NameTaken, nothing written) if a model of a clashing name exists.

    A clash spans owners, which no unique constraint says, so registrations take turns: on
    PostgreSQL a lock on the models table that only writers of it wait for (a publish's
    `FOR UPDATE` does not); on SQLite the insert takes the database's one write lock. Either
    way a registration that waited sees the one before it, committed.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE models IN SHARE ROW EXCLUSIVE MODE"))
    session.add(model)
    session.flush()
    clash = select(Model.id).where(_name_clashes_with(model), Model.id != model.id).limit(1)
    if session.scalar(clash) is not None:
        session.rollback()
        raise NameTaken(model.name)


def _publish_target(session: Session, model: str, job_id: str) -> tuple[ModelVersion | None, str, int]:
    """(the job's version if it has one, the job's tenant, the id of the model `model` means
    to that tenant), in a read that ends here."""
    existing = _version_of_job(session, job_id)
    tenant = session.scalar(select(Job.tenant).where(Job.id == job_id))
    found = find_model(session, model, tenant) if tenant is not None else None
    model_id = None if found is None else found.id
    _end_read(session)
    if existing is None and tenant is None:
        raise RegistryError("job_id", f"no job {job_id!r}")
    if existing is None and model_id is None:
        raise RegistryError("model", f"no model named {model!r}")
    return existing, tenant, model_id


def _insert_version(session, version: ModelVersion, files, worker: str | None, model: str) -> ModelVersion | None:
    """One short transaction: the version row and its files, and (with `worker`) the job's end."""
    # FOR UPDATE serialises publishes of one model on PostgreSQL; SQLite serialises writers.
    session.execute(select(Model.id).where(Model.id == version.model_id).with_for_update())
    if _newest_number(session, version.model_id, version.tenant) != version.version - 1:
        session.rollback()
        raise _LostRace
    result = {"model": model, "version": version.version}
    if worker is not None and not jobs.mark_succeeded(session, version.job_id, worker, result):
        session.rollback()
        return None
    try:
        session.add(version)
        _attach_files(session, version, files)  # its lookups flush the version row: a lost race may show here
        session.commit()
    except IntegrityError:
        session.rollback()
        raise _LostRace from None
    return version


def _newest_number(session: Session, model_id: int, tenant: str) -> int:
    """The newest version number of the model that `tenant` sees: its own newest, or the base's 1."""
    line = or_(ModelVersion.tenant.is_(None), ModelVersion.tenant == tenant)
    return session.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model_id, line)) or 0


def _end_read(session: Session) -> None:
    """End the transaction a read began (nothing was written); loaded rows stay readable."""
    session.commit()


def _version_of_job(session: Session, job_id: str) -> ModelVersion | None:
    return session.scalar(select(ModelVersion).where(ModelVersion.job_id == job_id))


def _upload_folder(storage: Storage, folder: Path) -> tuple[dict[str, tuple[str, int]], str]:
    """Check the pipeline folder `folder` and store each of its files:
    ({relative posix path: (sha256, size)}, the pipeline's family)."""
    root = _open_folder(folder)
    try:
        index = _read_index(root, folder)
        sources = _folder_files(root, folder)
        family = _check_pipeline_folder(folder, index)
        return {path: _store_opened(storage, root, folder, source) for path, source in sources.items()}, family
    finally:
        os.close(root)


def _open_folder(folder: Path) -> int:
    try:
        return os.open(folder, FOLDER_FLAGS)
    except OSError:
        raise RegistryError("source.path", f"{str(folder)!r} is not a folder on the server") from None


def _folder_files(root: int, folder: Path) -> dict[str, str]:
    """{path of each file in the folder: the path inside the folder its bytes are read from}.

    The two differ only for a symbolic link, which must lead to a regular file inside the folder.
    """
    files = {}
    for path, entry in _walk(root, PurePosixPath()):
        if entry.is_symlink():
            files[path] = _link_target_inside(folder, path)
        elif entry.is_file(follow_symlinks=False):
            files[path] = path
        else:
            raise RegistryError("source.path", f"{path} is {_kind(entry.stat(follow_symlinks=False).st_mode)}, "
                                               "not a regular file: refused")
    return dict(sorted(files.items()))


def _walk(folder_fd: int, prefix: PurePosixPath) -> Iterator[tuple[str, os.DirEntry]]:
    """(relative posix path, entry) of every non-folder under the folder open as `folder_fd`, links not followed."""
    with os.scandir(folder_fd) as entries:
        entries = list(entries)
    for entry in entries:
        path = prefix / entry.name
        if entry.is_dir(follow_symlinks=False):
            child = _open_inside(folder_fd, entry.name, FOLDER_FLAGS, path.as_posix())
            try:
                yield from _walk(child, path)
            finally:
                os.close(child)
        else:
            yield path.as_posix(), entry


def _link_target_inside(folder: Path, path: str) -> str:
    """Where the link `path` leads, relative to `folder`, if that is a regular file inside it."""
    target = Path(os.path.realpath(folder / path))
    if not target.is_relative_to(folder):
        leads = "to outside the folder"
    elif target.is_dir():
        leads = "to a folder"
    elif not target.exists():
        leads = "that leads nowhere"
    elif not target.is_file():
        leads = "to a special file"
    else:
        return target.relative_to(folder).as_posix()
    raise RegistryError("source.path", f"{path} is a symbolic link {leads}: refused (only links to "
                                       "regular files inside the folder are followed)")


def _open_file(root: int, source: str) -> int:
    """A descriptor on the regular file `source` under `root`, following no link on the way."""
    *folders, name = source.split("/")
    parent = root
    try:
        for part in folders:
            child = _open_inside(parent, part, FOLDER_FLAGS, source)
            if parent != root:
                os.close(parent)
            parent = child
        fd = _open_inside(parent, name, FILE_FLAGS, source)
    finally:
        if parent != root:
            os.close(parent)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RegistryError("source.path", f"{source} is not a regular file: refused")
    return fd


def _open_inside(parent: int, name: str, flags: int, shown: str) -> int:
    try:
        return os.open(name, flags, dir_fd=parent)
    except OSError as error:
        # ELOOP or ENOTDIR: a symbolic link took its place after the folder was listed.
        raise RegistryError("source.path", f"{shown} cannot be opened without following a link "
                                           f"({error.strerror}): refused") from None


def _store_opened(storage: Storage, root: int, folder: Path, source: str) -> tuple[str, int]:
    fd = _open_file(root, source)
    try:
        return storage.put_file(OPEN_FILES / str(fd) if OPEN_FILES.is_dir() else folder / source)
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"))
    return next((name for test, name in kinds if test(mode)), "a special file")


def _read_index(root: int, folder: Path) -> dict:
    """The folder's model_index.json, read before anything else and without following a link out."""
    with os.fdopen(_open_file(root, _index_source(root, folder)), "rb") as index:
        text = index.read(MAX_INDEX_BYTES)
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise RegistryError("source.path", f"{folder / INDEX} is not a JSON object")
    return parsed


def _check_pipeline_folder(folder: Path, index: dict) -> str:
    """The family of the pipeline in `folder` (already listed: no link leads out of it), if Lethe
    can train it: the library's check, which reads names only; `index` is its model_index.json."""
    try:
        family = folders.pipeline_family(folder, index)
        folders.weights_variant(folder, family, allow_pickle=False, opt_in=None)
    except InvalidInput as error:
        raise RegistryError("source.path", error.message) from None
    return family.name


def _index_source(root: int, folder: Path) -> str:
    try:
        mode = os.stat(INDEX, dir_fd=root, follow_symlinks=False).st_mode
    except FileNotFoundError:
        raise RegistryError("source.path", f"{str(folder)!r} is not a diffusers folder: no {INDEX}") from None
    return _link_target_inside(folder, INDEX) if stat.S_ISLNK(mode) else INDEX


def _store_manifest(storage: Storage, folder: Path, lineage: dict) -> tuple[str, int]:
    source = folder / MANIFEST
    manifest = json.loads(source.read_text()) if source.is_file() else {}
    manifest.update(lineage)
    with tempfile.TemporaryDirectory() as temp:
        path = Path(temp) / MANIFEST
        path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
        return storage.put_file(path)


def _made_how(folder: Path) -> dict:
    """What the result folder's manifest says of how it was made: the pipeline family, what the
    job trained, and a LoRA erasure's adapter (its files' paths, rank, alpha, target modules)."""
    manifest = _read_json(folder / MANIFEST)
    if not isinstance(manifest, dict):
        manifest = {}
    config, adapter = manifest.get("config"), manifest.get("lora")
    return {
        "family": _text(manifest.get("family")),
        "trainable": _text(config.get("trainable")) if isinstance(config, dict) else None,
        "adapter": {key: adapter.get(key) for key in ADAPTER_FIELDS} if isinstance(adapter, dict) else None,
    }


def _text(value) -> str | None:
    return value if isinstance(value, str) and value else None


def _read_json(path: Path):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


def _read_metrics(folder: Path) -> dict | None:
    metrics = _read_json(folder / METRICS)
    if metrics is None:
        return None
    return metrics if isinstance(metrics, dict) else {"metrics": metrics}


def _attach_files(session: Session, version: ModelVersion, files: dict[str, tuple[str, int]]) -> None:
    now = time.time()
    for sha256, size in set(files.values()):
        # A blob row may exist already (shared component) or appear concurrently: merge is an upsert by key.
        if session.get(Blob, sha256) is None:
            session.merge(Blob(sha256=sha256, size=size, created_at=now))
    for path, (sha256, size) in files.items():
        version.files.append(VersionFile(path=path, sha256=sha256, size=size))
