"""Models and their versions, as the calling tenant sees them (see `service.registry`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as PathParam

from service import registry
from service.api.deps import AdminDep, CallerDep, PartsDep, SessionDep
from service.api.present import version_public
from service.api.schemas import ListOf, ModelCreate, ModelPublic, VersionPublic
from service.problems import Problem, field_problem

router = APIRouter(prefix="/v1/models", tags=["models"])

ModelNameParam = Annotated[str, PathParam(max_length=64)]
VersionParam = Annotated[int, PathParam(ge=1, le=1_000_000)]


@router.post("", status_code=201, response_model=VersionPublic)
def register_model(body: ModelCreate, session: SessionDep, parts: PartsDep, caller: AdminDep) -> VersionPublic:
    """Register a diffusers Stable Diffusion folder on the server as version 1 (admin).

    The folder must lie under one of the model roots (`LETHE_MODEL_ROOTS`); only what lies in it is read.
    The model belongs to the admin's tenant, or to `tenant`; `private` (the default) shows it to
    that tenant alone, `public` to every tenant.
    """
    owner = caller.tenant if body.tenant is None else body.tenant
    if owner not in {key.tenant for key in parts.keys.values()}:
        raise field_problem("tenant", f"no API key belongs to tenant {owner!r}")
    try:
        folder = registry.folder_under_roots(body.source.path, parts.settings.model_root_paths)
        version = registry.register_base(session, parts.storage, body.name, folder, owner=owner,
                                         visibility=body.visibility)  # fmt: skip
    except registry.NameTaken as error:
        raise field_problem(error.field, error.message, status=409, code="name_taken") from None
    except registry.RegistryError as error:
        raise field_problem(error.field, error.message) from None
    return version_public(version)


@router.get("", response_model=ListOf[ModelPublic])
def list_models(session: SessionDep, caller: CallerDep) -> ListOf[ModelPublic]:
    newest = registry.list_models(session, caller.tenant)
    data = [ModelPublic(name=v.model.name, visibility=v.model.visibility, created_at=int(v.model.created_at),
                        newest_version=version_public(v)) for v in newest]  # fmt: skip
    return ListOf[ModelPublic](data=data)


@router.get("/{name}/versions", response_model=ListOf[VersionPublic])
def list_versions(name: ModelNameParam, session: SessionDep, caller: CallerDep) -> ListOf[VersionPublic]:
    versions = registry.list_versions(session, name, caller.tenant)
    if not versions:
        raise Problem(404, f"no model named {name!r}", code="not_found")
    return ListOf[VersionPublic](data=[version_public(v) for v in versions])


@router.get("/{name}/versions/{version}", response_model=VersionPublic)
def get_version(name: ModelNameParam, version: VersionParam, session: SessionDep, caller: CallerDep) -> VersionPublic:
    return version_public(find_version(session, name, version, caller.tenant))


def find_version(session, name: str, version: int, tenant: str):
    found = registry.get_version(session, name, version, tenant)
    if found is None:
        raise Problem(404, f"no version {version} of model {name!r}", code="not_found")
    return found
