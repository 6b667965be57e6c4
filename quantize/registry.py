"""The generators a workspace serves: its own exported LM plus chat models users register.

`WORKSPACE/models/registry.json` lists the GGUF chat models added with `ragkiln models add PATH
[--name N]` (any llama.cpp chat model: Llama 3.x, Qwen2.5, Phi, Mistral, Gemma, ...); the settings
may name more (`server.generators = "name=path,..."`). The workspace's own model is the newest
export under gguf/ (`server.generator`: 'auto', a file, or 'none'). Each entry records what its GGUF
header says (architecture, context length, whether it carries a chat template, size) and whether it
is ragkiln's own QA format (an embedded `ragkiln.prompt_format`) or a chat model answered through its
own template. The file is replaced atomically; files are never copied (llama.cpp mmaps them).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from common.artifacts import atomic_write_text
from common.errors import ArtifactCorrupt, Conflict, InvalidInput, NotFound
from common.settings import Settings

REGISTRY_FILE = Path("models") / "registry.json"
REGISTRY_VERSION = 1
GGUF_PREFERENCE = ("q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0", "f16", "f32")
RESERVED = ("ragkiln",)  # the OpenAI alias of the default generator
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")


@dataclass(frozen=True)
class GgufInfo:
    architecture: str
    context_length: int | None
    chat_template: bool
    size_bytes: int
    title: str  # general.name
    ragkiln: bool  # ragkiln's QA prompt format embedded (`ragkiln.prompt_format`): answered in that format


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: str
    source: str  # "workspace" (the own export), "registry" (models add) or "settings" (server.generators)
    info: GgufInfo

    @property
    def kind(self) -> str:
        """"ragkiln" (its QA prompt format) or "chat" (its own chat template)."""
        return "ragkiln" if self.info.ragkiln else "chat"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kind": self.kind}


def read_gguf_info(path: Path) -> GgufInfo:
    """What a GGUF header says; InvalidInput when the file is not a GGUF llama.cpp could serve."""
    from gguf import GGUFReader

    path = Path(path).expanduser()
    if not path.is_file():
        raise NotFound(f"{path} is not a file")
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise InvalidInput(f"{path} is not a GGUF file (no GGUF magic)")
    try:
        reader = GGUFReader(path)
    except Exception as e:  # noqa: BLE001 - gguf raises ValueError/struct errors on a damaged header
        raise ArtifactCorrupt(f"{path}: unreadable GGUF header ({e})") from e

    def field(key: str) -> Any:
        f = reader.get_field(key)
        return None if f is None else f.contents()

    arch = field("general.architecture")
    if not isinstance(arch, str):
        raise InvalidInput(f"{path} names no general.architecture")
    ctx = field(f"{arch}.context_length")
    template = field("tokenizer.chat_template")
    return GgufInfo(architecture=arch, context_length=int(ctx) if isinstance(ctx, int) else None,
                    chat_template=isinstance(template, str) and bool(template.strip()),
                    size_bytes=path.stat().st_size, title=str(field("general.name") or path.stem),
                    ragkiln=reader.get_field("ragkiln.prompt_format") is not None)


def workspace_generator(settings: Settings) -> Path | None:
    """The GGUF file `server.generator` names; 'auto' picks the newest export in the workspace."""
    spec = settings.server.generator.strip()
    if spec.lower() == "none":
        return None
    if spec.lower() != "auto":
        p = Path(spec).expanduser()
        if not p.is_file():
            raise NotFound(f"server.generator {spec} is not a file")
        return p
    root = Path(settings.home).expanduser() / "gguf"
    if not root.is_dir():
        return None
    exports = sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime, reverse=True)
    for d in exports:
        for t in GGUF_PREFERENCE:
            f = d / f"model-{t}.gguf"
            if f.is_file():
                return f
    return None


def own_model_id(path: Path) -> str:
    """`<export dir>-<type>` for a ragkiln export (tiny-lm-q8_0), else the file's stem."""
    path = Path(path)
    return f"{path.parent.name}-{path.stem.removeprefix('model-')}" if path.stem.startswith("model-") else path.stem


def parse_generator_map(spec: str) -> dict[str, str]:
    """`server.generators` ("name=path,name2=path2") as a dict; InvalidInput naming the bad entry."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, sep, path = part.partition("=")
        if not sep or not _NAME.match(name.strip()) or not path.strip():
            raise InvalidInput(f"server.generators: {part!r} is not NAME=PATH")
        out[name.strip()] = path.strip()
    return out


def parse_overrides(spec: str) -> dict[str, bool]:
    """`server.generative` ("name=true,name2=false") as a dict."""
    out: dict[str, bool] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep or value.strip().lower() not in ("true", "false"):
            raise InvalidInput(f"server.generative: {part!r} is not NAME=true or NAME=false")
        out[name.strip()] = value.strip().lower() == "true"
    return out


def _registry_path(settings: Settings) -> Path:
    return Path(settings.home).expanduser() / REGISTRY_FILE


def _read_registry(settings: Settings) -> list[dict[str, str]]:
    p = _registry_path(settings)
    if not p.is_file():
        return []
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        models = doc["models"]
        assert isinstance(models, list) and all(isinstance(m, dict) and "name" in m and "path" in m for m in models)
    except (ValueError, KeyError, TypeError, AssertionError) as e:
        raise ArtifactCorrupt(f"{p} is not a model registry ({e}); fix or delete it") from e
    return models


def _write_registry(settings: Settings, models: list[dict[str, str]]) -> None:
    atomic_write_text(_registry_path(settings),
                      json.dumps({"format_version": REGISTRY_VERSION, "models": models}, indent=2) + "\n")


def model_name_for(path: Path) -> str:
    """A default name: the file's stem, lower-cased, characters other than [a-z0-9._-] as '-'."""
    name = re.sub(r"[^a-z0-9._-]+", "-", Path(path).stem.lower()).strip("-.") or "model"
    return name[:100]


def add_model(settings: Settings, path: Path, name: str | None = None) -> ModelEntry:
    """`ragkiln models add`: validate the GGUF, record it under a unique name (Conflict when taken)."""
    path = Path(path).expanduser().resolve()
    info = read_gguf_info(path)
    name = name.strip() if name else model_name_for(path)
    if not _NAME.match(name) or name.lower() in RESERVED:
        raise InvalidInput(f"model name {name!r}: letters, digits and . _ : - (not {', '.join(RESERVED)})")
    taken = {m.name.lower() for m in list_models(settings, check_files=False)}
    if name.lower() in taken:
        raise Conflict(f"a model named {name!r} is already served; pick another with --name or remove it first")
    models = _read_registry(settings)
    models.append({"name": name, "path": str(path)})
    _write_registry(settings, models)
    return ModelEntry(name, str(path), "registry", info)


def remove_model(settings: Settings, name: str) -> dict[str, str]:
    """`ragkiln models remove NAME`: forget a registered model (its file stays where it is)."""
    models = _read_registry(settings)
    keep = [m for m in models if m["name"] != name]
    if len(keep) == len(models):
        raise NotFound(f"no registered model named {name!r} (`ragkiln models list`)")
    _write_registry(settings, keep)
    return next(m for m in models if m["name"] == name)


def list_models(settings: Settings, check_files: bool = True) -> list[ModelEntry]:
    """Every generator this workspace serves: its own model first (the default), then the registry's,
    then `server.generators`'. A registered file that went missing is NotFound when `check_files`."""
    out: list[ModelEntry] = []
    own = workspace_generator(settings)
    if own is not None:
        out.append(ModelEntry(own_model_id(own), str(own), "workspace", _info_or_stub(own, check_files)))
    for m in _read_registry(settings):
        out.append(ModelEntry(m["name"], m["path"], "registry", _info_or_stub(Path(m["path"]), check_files)))
    for name, p in parse_generator_map(settings.server.generators).items():
        out.append(ModelEntry(name, str(Path(p).expanduser()), "settings", _info_or_stub(Path(p), check_files)))
    return out


def _info_or_stub(path: Path, check: bool) -> GgufInfo:
    if check:
        return read_gguf_info(path)
    return GgufInfo("unknown", None, False, 0, Path(path).stem, False)


def describe_models(settings: Settings) -> list[dict[str, Any]]:
    """`ragkiln models list`: each model with its header facts, or the problem reading it."""
    rows: list[dict[str, Any]] = []
    for m in list_models(settings, check_files=False):
        row: dict[str, Any] = {"name": m.name, "path": m.path, "source": m.source}
        try:
            info = read_gguf_info(Path(m.path))
            row.update(asdict(info), kind="ragkiln" if info.ragkiln else "chat", problem=None)
        except (NotFound, InvalidInput, ArtifactCorrupt) as e:
            row.update(kind=None, problem=str(e))
        rows.append(row)
    return rows


def verification_for(settings: Settings, path: Path) -> dict[str, Any] | None:
    """The `quantize verify` result of a ragkiln export: its verify.json, else the build's verify stage for it."""
    from quantize.export import read_export
    from quantize.service import read_verification

    gguf_dir = Path(path).parent
    try:
        sha = read_export(gguf_dir).source_sha256
    except Exception:  # noqa: BLE001 - a file outside an export directory (ManifestMismatch, NotFound, ...)
        sha = None
    rec = read_verification(gguf_dir, sha)
    if rec is not None:
        return rec
    state = Path(settings.home).expanduser() / "build" / "state.json"
    try:
        verify = json.loads(state.read_text(encoding="utf-8"))["stages"]["verify"]["outputs"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    same = isinstance(verify, dict) and verify.get("gguf_dir") and \
        Path(verify["gguf_dir"]).resolve() == gguf_dir.resolve()
    return verify if same else None


def file_type(path: Path) -> str | None:
    """The quantization type of an exported file by its name (model-q8_0.gguf -> q8_0)."""
    stem = Path(path).stem
    return stem.removeprefix("model-") if stem.startswith("model-") else None
