"""Reading the lab catalog from disk, with errors that point at the file, the line and the field.

Each ``labs/<id>/lab.yaml`` is composed into a YAML node tree first, so every node keeps its line; the data built from
that tree is validated by :class:`labctl.catalog.models.Lab`, and each validation error is mapped back through the
tree to the line of the offending key (``labs/idle-hunter/lab.yaml:14: budget.thresholds.1.action: Input should be
'notify', 'suspend' or 'terminate'``). Unknown keys are reported on their own line, with the closest known field.
The YAML part is :mod:`labctl.catalog.yamldoc`, shared with the price sheet.

Starter templates (Jinja2, ``StrictUndefined``) are rendered here too, into the YAML documents a provider applies; the
loader renders them once with a sample context when the catalog is loaded, so a broken template is found by
``labctl labs validate``, not by the first learner.
"""

from __future__ import annotations

import functools
import json
import re
import types
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import jinja2
import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node

from labctl.catalog.models import CheckContext, Lab, lab_json_schema
from labctl.catalog.yamldoc import Loc, compose, field_path, line_of, load_all, unknown_field_message
from labctl.catalog.yamldoc import Problem as Problem  # re-exported: labctl.catalog.loader.Problem

LAB_FILE = "lab.yaml"
FLEET_FILE = "fleet.yaml"
SCHEMA_FILE = "lab.schema.json"
CONTEXT_KEYS = ("namespace", "session_id", "lab_id", "learner_id")
_UNDEFINED_NAME = re.compile(r"'(?P<name>[^']+)' is undefined")


class CatalogError(ValueError):
    """A lab file or template is invalid; ``problems`` lists each error with its file, line and field."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (as editors and terminals link it)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --- loading ------------------------------------------------------------------------------------------------------


def load_lab(path: Path, *, manifests_dir: Path | None = None, fleet_file: Path | None = None) -> Lab:
    """Validate one ``lab.yaml``; its id is its directory's name.

    With ``manifests_dir`` the starter and solution templates must exist there; with ``fleet_file`` the node pools
    must exist in it. Raises :class:`CatalogError` naming the file, line and field of every problem.
    """
    source = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError([Problem(source, None, None, f"cannot read: {exc.strerror or exc}")]) from exc
    root, data = compose(text, source, CatalogError)
    if not isinstance(data, dict) or not isinstance(root, MappingNode):
        raise CatalogError([Problem(source, 1, None, "a lab file is a YAML mapping of fields (title, provider, ...)")])
    lab_id = path.parent.name
    written_id = data.get("id", lab_id)
    if written_id != lab_id:
        raise CatalogError([Problem(source, line_of(root, ("id",)), "id",
                                    f"{written_id!r} differs from the directory name {lab_id!r}; the id is the "
                                    "directory name (leave it out, or rename the directory)")])
    context = CheckContext(
        manifests_dir=manifests_dir,
        pool_names=_pool_names(fleet_file) if fleet_file is not None else None,
        pools_source=display_path(fleet_file) if fleet_file is not None else FLEET_FILE,
    )
    try:
        return Lab.model_validate({**data, "id": lab_id}, context=context)
    except ValidationError as exc:
        problems = [_problem(err, root, source, lab_id=lab_id, id_written="id" in data) for err in exc.errors()]
        raise CatalogError(problems) from exc


def load_checked_lab(path: Path, *, manifests_dir: Path, fleet_file: Path | None = None) -> Lab:
    """:func:`load_lab`, then render the lab's templates with a sample context and check the objects they make."""
    lab = load_lab(path, manifests_dir=manifests_dir, fleet_file=fleet_file)
    problems = check_templates(lab, manifests_dir)
    if problems:
        raise CatalogError(problems)
    return lab


def lab_files(labs_dir: Path) -> list[Path]:
    """The ``lab.yaml`` of every lab directory (hidden and ``_``-prefixed directories skipped), sorted by id."""
    return [child / LAB_FILE for child in sorted(labs_dir.iterdir())
            if child.is_dir() and not child.name.startswith((".", "_"))]


def load_catalog(labs_dir: Path, manifests_dir: Path, *, fleet_file: Path | None = None) -> dict[str, Lab]:
    """Every ``labs/<id>/lab.yaml``, validated and with its templates rendered once; id -> lab, sorted by id.

    ``fleet_file`` defaults to ``labs/fleet.yaml`` when it exists. Raises one :class:`CatalogError` with the
    problems of every lab (files other than lab directories, such as ``fleet.yaml`` and ``*.json``, are not labs).
    """
    if not labs_dir.is_dir():
        raise CatalogError([Problem(display_path(labs_dir), None, None, "no such labs directory")])
    if fleet_file is None and (labs_dir / FLEET_FILE).is_file():
        fleet_file = labs_dir / FLEET_FILE
    labs: dict[str, Lab] = {}
    problems: list[Problem] = []
    for path in lab_files(labs_dir):
        if not path.is_file():
            problems.append(Problem(display_path(path.parent), None, None,
                                    f"a lab directory needs a {LAB_FILE} (found none)"))
            continue
        try:
            lab = load_checked_lab(path, manifests_dir=manifests_dir, fleet_file=fleet_file)
        except CatalogError as exc:
            problems.extend(exc.problems)
        else:
            labs[lab.id] = lab
    if problems:
        raise CatalogError(problems)
    return labs


def write_schema(path: Path) -> None:
    """Write the JSON Schema of lab files to ``path`` (``labs/lab.schema.json``, referenced by every lab.yaml)."""
    path.write_text(schema_text(), encoding="utf-8")


def schema_text() -> str:
    return json.dumps(lab_json_schema(), indent=2) + "\n"


# --- templates ----------------------------------------------------------------------------------------------------


def render_starter(lab: Lab, manifests_dir: Path, context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The Kubernetes objects of the lab's starter templates, rendered with ``context``.

    ``context`` gives ``namespace``, ``session_id``, ``lab_id`` and ``learner_id``; a template using anything
    missing raises :class:`CatalogError` naming the template (``StrictUndefined``). Empty documents are skipped.
    """
    return render_templates(lab.starter, manifests_dir, context)


def render_solution(lab: Lab, manifests_dir: Path, context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The objects of the lab's reference solution (for tests and grader self-checks; never given to learners)."""
    return render_templates(lab.solution, manifests_dir, context)


def render_templates(templates: Iterable[str], manifests_dir: Path,
                     context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Render each template (a path relative to ``manifests_dir``) and parse its YAML documents, in order."""
    env = environment(manifests_dir)
    documents: list[dict[str, Any]] = []
    problems: list[Problem] = []
    for name in templates:
        try:
            documents.extend(_render_one(env, name, manifests_dir, context))
        except CatalogError as exc:
            problems.extend(exc.problems)
    if problems:
        raise CatalogError(problems)
    return documents


@functools.cache
def environment(manifests_dir: Path) -> jinja2.Environment:
    """The one Jinja2 environment of a manifests directory: each template is compiled once and kept (Jinja2 checks
    the file's modification time on every use, so an edited template is compiled again)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(manifests_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 -- renders YAML for the Kubernetes API, not HTML
    )
    # Jinja2 has a global named `namespace` (a helper class): without this, a context missing the session's
    # namespace would render "<class 'jinja2.utils.Namespace'>" instead of failing.
    env.globals.pop("namespace", None)
    return env


def sample_context(lab: Lab) -> dict[str, str]:
    """The context :func:`check_templates` renders with (a stand-in for a real session)."""
    return {"namespace": f"lab-{lab.id}-check"[:63], "session_id": "s-check", "lab_id": lab.id,
            "learner_id": "learner-check"}


def check_templates(lab: Lab, manifests_dir: Path) -> list[Problem]:
    """Render the starter and solution templates once; every object needs kind, name and the session namespace."""
    context = sample_context(lab)
    problems: list[Problem] = []
    for kind_of_set, templates in (("starter", lab.starter), ("solution", lab.solution)):
        for name in templates:
            source = display_path(manifests_dir / name)
            try:
                documents = render_templates([name], manifests_dir, context)
            except CatalogError as exc:
                problems.extend(exc.problems)
                continue
            if not documents:
                problems.append(Problem(source, None, None, f"the {kind_of_set} template renders no objects"))
            for index, doc in enumerate(documents):
                problems.extend(_check_object(doc, index, source, context["namespace"]))
    return problems


def _render_one(env: jinja2.Environment, name: str, manifests_dir: Path,
                context: Mapping[str, Any]) -> list[dict[str, Any]]:
    source = display_path(manifests_dir / name)
    try:
        template = env.get_template(name)
        text = template.render(**context)
    except jinja2.TemplateNotFound as exc:
        raise CatalogError([Problem(source, None, None, "template not found")]) from exc
    except jinja2.TemplateSyntaxError as exc:
        raise CatalogError([Problem(source, exc.lineno, None, f"template syntax: {exc.message}")]) from exc
    except jinja2.UndefinedError as exc:
        match = _UNDEFINED_NAME.search(exc.message or "")
        line = _find_line(manifests_dir / name, match["name"]) if match else None
        known = ", ".join(sorted(context)) or "(none)"
        raise CatalogError([Problem(source, line, None,
                                    f"undefined variable: {exc.message} (the context has {known})")]) from exc
    try:
        loaded = load_all(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise CatalogError([Problem(source, None, None,
                                    f"renders invalid YAML (line {line} of the output): {exc.problem}")]) from exc
    documents: list[dict[str, Any]] = []
    for index, doc in enumerate(loaded):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise CatalogError([Problem(source, None, f"document {index}",
                                        "each YAML document must be a Kubernetes object (a mapping)")])
        documents.append(doc)
    return documents


def _check_object(doc: dict[str, Any], index: int, source: str, namespace: str) -> list[Problem]:
    problems: list[Problem] = []
    where = f"document {index}"
    for key in ("apiVersion", "kind"):
        if not isinstance(doc.get(key), str):
            problems.append(Problem(source, None, where, f"missing {key}"))
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        problems.append(Problem(source, None, where, "missing metadata.name"))
        return problems
    where = f"{doc.get('kind')}/{metadata['name']}"
    if metadata.get("namespace") != namespace:
        problems.append(Problem(source, None, where, "metadata.namespace must be {{ namespace }} (the session's)"))
    return problems


def _find_line(path: Path, name: str) -> int | None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    word = re.compile(rf"\{{[{{%].*\b{re.escape(name)}\b")
    return next((number for number, line in enumerate(lines, start=1) if word.search(line)), None)


def _problem(err: Any, root: Node, source: str, *, lab_id: str, id_written: bool) -> Problem:
    loc: Loc = tuple(part for part in err["loc"] if not _is_schema_tag(part))
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = unknown_field_message(loc, _known_fields(loc[:-1]))
    elif err["type"] == "missing":
        message = "required field is missing"
    if loc[:1] == ("id",) and not id_written:
        message += f" (the lab id is its directory name, {lab_id!r})"
        return Problem(source, None, "id", message)
    return Problem(source, line_of(root, loc), field_path(loc), message)


def _is_schema_tag(part: int | str) -> bool:
    """pydantic puts validator names such as ``function-after[...]`` in some locations; they are not fields."""
    return isinstance(part, str) and part != "[key]" and "[" in part and part.endswith("]")


def _known_fields(loc: Loc) -> list[str]:
    """The field names of the model at ``loc`` inside a Lab (empty when ``loc`` is not a model)."""
    annotation: Any = Lab
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if not isinstance(part, str) or part not in annotation.model_fields:
                return []
            annotation = annotation.model_fields[part].annotation
            continue
        origin, args = get_origin(annotation), get_args(annotation)
        if origin is list and isinstance(part, int) and args:
            annotation = args[0]
        elif origin is dict and isinstance(part, str) and len(args) == 2:
            annotation = args[1]
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [name for name in annotation.model_fields if not (annotation is Lab and name == "id")]
    return []


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _pool_names(fleet_file: Path) -> frozenset[str]:
    """The pool names of the fleet file (only the names: the fleet itself is validated by its own tool)."""
    source = display_path(fleet_file)
    try:
        data = yaml.safe_load(fleet_file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogError([Problem(source, None, None, f"cannot read the fleet: {exc.strerror or exc}")]) from exc
    except yaml.YAMLError as exc:
        raise CatalogError([Problem(source, None, None, f"the fleet is not valid YAML: {exc}")]) from exc
    pools = data.get("pools") if isinstance(data, dict) else None
    if not isinstance(pools, list):
        raise CatalogError([Problem(source, None, "pools", "the fleet has no list of pools")])
    return frozenset(p["name"] for p in pools if isinstance(p, dict) and isinstance(p.get("name"), str))
