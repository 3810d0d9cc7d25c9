"""Reference pages generated from the code at build time (mkdocs-gen-files), so they cannot drift.

- reference/cli.md            the typer app, rendered by typer's own doc generator
- reference/http-api.md       each service's OpenAPI (FastAPI's app.openapi(); no model is loaded)
- reference/openapi/*.json    the same specs, downloadable
- reference/configuration.md  the settings models (cascade.config), their code defaults, the shipped
                              configs/default.yaml values and the CASCADE_* variable of every field
- models/<name>.md            the cards shipped beside the reranker and adapter weights
- architecture.md             its layer table filled from pyproject.toml's import-linter contract
- assets/figures/*.png        benchmarks/figures (screenshots the browser tests take)

Nothing here touches the network; importing the services builds their apps without loading models.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import tomllib
import types
import typing
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _md_cell(text: object) -> str:
    """One table cell: no newlines, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


# ---------------------------------------------------------------------------------------------- CLI


def cli_page() -> str:
    import typer
    import typer.main
    from typer.cli import get_docs_for_click

    from cascade.cli import app

    command = typer.main.get_command(app)
    ctx = typer.Context(command, info_name="cascade")
    body = get_docs_for_click(obj=command, ctx=ctx, name="cascade", title="CLI reference")
    # typer's headings start at "#"; the page title is ours, so every command heading moves one level down.
    body = re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", body, flags=re.M)
    body = body.replace("## CLI reference", "", 1).lstrip()
    body = _escape_html(body)
    intro = (
        "# CLI reference\n\n"
        "Generated from the typer app (`cascade.cli.app`) by typer's own doc generator at every docs build, "
        "so every command and flag below is the installed one. `cascade COMMAND --help` prints the same. "
        "Exit codes: [Exit codes and errors](errors.md). Flags override the configuration "
        "([Configuration](configuration.md)).\n\n"
    )
    return intro + body


def _escape_html(markdown: str) -> str:
    """`<name>` in help text is text, not an HTML tag: escape < and > outside code spans and fences."""
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and not line.startswith("```"):
            parts = line.split("`")
            line = "`".join(p.replace("<", "&lt;").replace(">", "&gt;") if i % 2 == 0 else p
                            for i, p in enumerate(parts))
        out.append(line)
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------ OpenAPI


SERVICES = {
    "gateway": ("services.gateway.app", "every route on one URL: the OpenAI audio/chat/speech routes, "
                "`/v1/voice/turn`, the playground and the `/v1/live` WebSocket; `cascade serve gateway`"),
    "asr": ("services.asr.app", "Whisper N-best behind OpenAI's audio API; `cascade serve asr`"),
    "llm": ("services.llm.app", "the LLM: OpenAI completions and chat, rescoring, correction, fusion; "
            "`cascade serve llm`"),
    "tts": ("services.tts.app", "speech: OpenAI's `/v1/audio/speech`; `cascade serve tts`"),
}


def _schema_name(schema: dict | None) -> str:
    """A field's type in a few words: a record's name, a list of ..., or the enum's values."""
    if not schema:
        return ""
    if "$ref" in schema:
        return f"`{schema['$ref'].rsplit('/', 1)[-1]}`"
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return _schema_name(schema["allOf"][0])
    if "anyOf" in schema:
        return " or ".join(dict.fromkeys(filter(None, (_schema_name(s) for s in schema["anyOf"]))))
    if "enum" in schema:
        return ", ".join(f"`{v}`" for v in schema["enum"])
    if schema.get("type") == "array":
        return f"list of {_schema_name(schema.get('items')) or 'items'}"
    if schema.get("contentMediaType") or schema.get("format") == "binary":
        return "file"
    return f"`{schema.get('type', 'object')}`"


def _resolve(schema: dict, spec: dict) -> dict:
    """A body schema with $ref and allOf folded in: {"properties": ..., "required": [...]}."""
    components = spec.get("components", {}).get("schemas", {})
    if "$ref" in schema:
        return _resolve(components.get(schema["$ref"].rsplit("/", 1)[-1], {}), spec)
    props: dict = {}
    required: list = []
    for part in schema.get("allOf", []):
        sub = _resolve(part, spec)
        props.update(sub["properties"])
        required += sub["required"]
    props.update(schema.get("properties", {}))
    required += schema.get("required", [])
    return {"properties": props, "required": required, "description": schema.get("description", "")}


def _field_row(name: str, field: dict, where: str, required: bool) -> tuple[str, ...]:
    default = field.get("default")
    default_text = "" if default is None else f"`{json.dumps(default)}`"
    return (f"`{name}`", where, _schema_name(field), "yes" if required else default_text,
            field.get("description", ""))


def _operation(path: str, method: str, op: dict, spec: dict) -> str:
    out = [f"#### `{method.upper()} {path}`\n"]
    doc = (op.get("description") or op.get("summary") or "").strip()
    if doc:
        out.append(" ".join(doc.split()) + "\n")
    rows = [_field_row(p["name"], {**p.get("schema", {}), "description": p.get("description", "")},
                       p.get("in", ""), bool(p.get("required"))) for p in op.get("parameters") or []]
    for media, content in op.get("requestBody", {}).get("content", {}).items():
        schema = content.get("schema", {})
        where = "form" if media.startswith(("multipart/", "application/x-www-form")) else "JSON"
        if "$ref" in schema and where == "JSON":
            out.append(f"Body: `{schema['$ref'].rsplit('/', 1)[-1]}` ({media}).\n")
        body = _resolve(schema, spec)
        required = set(body["required"])
        rows += [_field_row(n, f, where, n in required) for n, f in body["properties"].items()]
    if rows:
        out.append("| field | in | type | required / default | description |\n|---|---|---|---|---|")
        out.extend("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows)
        out.append("")
    ok, errors = [], []
    for status, resp in op.get("responses", {}).items():
        media = ", ".join(f"{m} {_schema_name(c.get('schema'))}".strip() for m, c in resp.get("content", {}).items())
        if status.startswith(("2", "3")):
            ok.append(f"`{status}`" + (f" {media}" if media else ""))
        else:
            errors.append(status)
    text = "Responses: " + "; ".join(ok)
    if errors:
        text += f"; errors {', '.join(errors)} (`ErrorResponse`, OpenAI's error envelope)"
    out.append(_md_cell(text) + ".\n")
    return "\n".join(out) + "\n"


def http_page() -> str:
    import importlib

    lines = [
        "# HTTP API reference\n",
        "Generated at every docs build from each service's OpenAPI schema (FastAPI's `app.openapi()`), so the "
        "routes, fields and responses below are the code's. A running service serves the same schema at "
        "`/openapi.json` and an interactive page at `/docs`; the files are also here: "
        + ", ".join(f"[{name}](openapi/{name}.json)" for name in SERVICES) + ".\n",
        "How the routes behave (the OpenAI compatibility, streaming, degradation, limits and error envelope) is "
        "in the [services guide](../guides/services.md); the `/v1/live` WebSocket, which OpenAPI cannot "
        "describe, in the [voice agent guide](../guides/voice-agent.md#the-live-protocol). With "
        "`CASCADE_SERVICE__API_KEY` set, `/metrics` and every `/v1` route need `Authorization: Bearer KEY`.\n",
    ]
    from cascade.config import Settings

    specs = {}
    for name, (module, what) in SERVICES.items():
        app = importlib.import_module(module).create_app(Settings())
        spec = specs[name] = app.openapi()
        mkdocs_gen_files_write(f"reference/openapi/{name}.json", json.dumps(spec, indent=2, sort_keys=True))
        lines.append(f"## {name}\n")
        lines.append(f"{what}. Schema: [openapi/{name}.json](openapi/{name}.json).\n")
        by_tag: dict[str, list[str]] = {}
        for path, item in spec.get("paths", {}).items():
            for method, op in item.items():
                if method not in {"get", "post", "put", "delete", "patch"}:
                    continue
                tag = (op.get("tags") or ["routes"])[0]
                by_tag.setdefault(tag, []).append(_operation(path, method, op, spec))
        for tag, ops in by_tag.items():
            lines.append(f"### {name}: {tag}\n")
            lines.extend(ops)
    lines.append(_live_section())
    lines.append(_realtime_section())
    lines.append(_schemas_section(specs))
    return "\n".join(lines)


def _message_table(model: type) -> str:
    """A WebSocket message model's fields: name, type, default, the docstring under the field."""
    import importlib

    module = importlib.import_module(model.__module__)
    docs = _field_docs(Path(module.__file__))
    rows = ["| field | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        default = "" if field.is_required() else _value(_plain(field.get_default(call_default_factory=True)))
        rows.append(f"| `{name}` | {_md_cell(_type_name(field.annotation))} | {'required' if field.is_required() else default} "
                    f"| {_md_cell(docs.get((model.__name__, name), field.description or ''))} |")
    return "\n".join(rows) + "\n"


def _live_section() -> str:
    """`/v1/live` is a WebSocket, which OpenAPI does not describe: its messages come from their pydantic models."""
    import importlib

    from pydantic import BaseModel

    import cascade.types as types_module

    out = ["## gateway: the `/v1/live` WebSocket\n",
           "OpenAPI does not describe WebSockets; these tables are generated from the message models "
           "(`services/gateway/live.py` for the session's own messages, `cascade.types.LiveEvent` for the turn's "
           "events). Besides JSON messages the client sends binary 16 kHz mono PCM16 frames and "
           "`{\"type\": \"end\"}`, and the server follows each `audio` header with one binary message of PCM16. "
           "The protocol in prose, with closes and limits: [voice agent guide](../guides/voice-agent.md#the-live-protocol).\n"]
    models: list[type] = []
    try:
        live = importlib.import_module("services.gateway.live")
        models += [m for m in vars(live).values() if isinstance(m, type) and issubclass(m, BaseModel)
                   and m.__module__ == live.__name__ and "type" in m.model_fields]
    except ImportError:  # the gateway has no live route in this build
        pass
    models += list(typing.get_args(getattr(types_module, "LiveEvent", None)) or [])
    for model in models:
        kind = (typing.get_args(model.model_fields["type"].annotation) or [model.model_fields["type"].default])[0]
        direction = "client -> server" if model.__name__.endswith("Start") else "server -> client"
        out.append(f"### `{kind}` ({direction}): `{model.__name__}`\n")
        if model.__doc__:
            out.append(" ".join(model.__doc__.split()) + "\n")
        out.append(_message_table(model))
    return "\n".join(out)


def _realtime_section() -> str:
    """OpenAI's Realtime API on the gateway: which client events it handles and which server events it sends,
    read from the code (the session's on_<event> handlers; the openai server-event classes it builds)."""
    import importlib

    try:
        realtime = importlib.import_module("services.gateway.realtime")
    except ImportError:  # no Realtime endpoint in this build
        return ""
    client_events = getattr(realtime, "_CLIENT_EVENTS", {})
    session = next((c for c in vars(realtime).values() if isinstance(c, type) and c.__module__ == realtime.__name__
                    and hasattr(c, "handle")), None)
    handled = sorted(k for k in client_events if session and hasattr(session, "on_" + k.replace(".", "_")))
    refused = sorted(k for k in client_events if k not in handled)
    sent = set()
    tree = ast.parse(Path(realtime.__file__).read_text())
    server_module = getattr(realtime, "rse", None)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "rse":
            model = getattr(server_module, node.attr, None)
            field = getattr(model, "model_fields", {}).get("type")
            if field is not None:
                sent.update(typing.get_args(field.annotation) or [field.default])
    doc = (realtime.__doc__ or "").split("\n\n")[0]
    out = ["## gateway: the `/v1/realtime` WebSocket (OpenAI Realtime API)\n", " ".join(doc.split()) + "\n",
           "Generated from `services/gateway/realtime.py`: the client events it handles (one `on_<event>` handler "
           "each) and the server events it sends; event names and payloads are the installed `openai` package's "
           "own types. How to use it: [voice agent guide](../guides/voice-agent.md).\n",
           "**Client events handled:** " + ", ".join(f"`{e}`" for e in handled) + ".\n",
           "**Server events sent:** " + ", ".join(f"`{e}`" for e in sorted(sent)) + ".\n"]
    if refused:
        out.append("Other client events of the API are answered with an `error` event (`unsupported_event`): "
                   + ", ".join(f"`{e}`" for e in refused) + ".\n")
    return "\n".join(out)


def _schemas_section(specs: dict[str, dict]) -> str:
    """The request/response records named above, field by field. cascade's own records (cascade.types) link to
    the Python API page, which documents them from their docstrings."""
    import cascade.types as types_module

    out = ["## Records\n",
           "The bodies named above. cascade's own records (`NBest`, `Correction`, `Transcript`, ...) are the library's "
           "types, the same objects in-process and over HTTP: their fields are in the "
           "[Python API reference](python/types.md). The OpenAI-shaped ones follow.\n"]
    seen: dict[str, tuple[dict, dict]] = {}
    for spec in specs.values():
        for name, schema in spec.get("components", {}).get("schemas", {}).items():
            if not name.startswith("Body_") and name not in seen:
                seen[name] = (schema, spec)
    own = sorted(n for n in seen if hasattr(types_module, n))
    out.append("From `cascade.types`: " + ", ".join(f"[`{n}`](python/types.md#cascade.types.{n})" for n in own) + ".\n")
    for name in sorted(n for n in seen if n not in own):
        schema, spec = seen[name]
        body = _resolve(schema, spec)
        out.append(f"### `{name}`\n")
        if body["description"]:
            out.append(" ".join(body["description"].split()) + "\n")
        if body["properties"]:
            required = set(body["required"])
            out.append("| field | type | required / default | description |\n|---|---|---|---|")
            for field, info in body["properties"].items():
                row = _field_row(field, info, "", field in required)
                out.append("| " + " | ".join(_md_cell(c) for i, c in enumerate(row) if i != 1) + " |")
            out.append("")
        elif "enum" in schema:
            out.append("One of " + _schema_name(schema) + ".\n")
    return "\n".join(out)


# ------------------------------------------------------------------------------------ configuration


def _field_docs(path: Path) -> dict[tuple[str, str], str]:
    """(class, field) -> the docstring written under the field (pydantic does not keep those)."""
    tree = ast.parse(path.read_text())
    docs: dict[tuple[str, str], str] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        body = node.body
        for i, stmt in enumerate(body[:-1]):
            nxt = body[i + 1]
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[(node.name, stmt.target.id)] = nxt.value.value
    return docs


def _type_name(annotation: object) -> str:
    """A settings field's type in plain words: `int`, `str or None`, the values of a Literal."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return ", ".join(f"`{a}`" for a in args)
    if args and typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if annotation is type(None):
        return "`None`"
    name = getattr(annotation, "__name__", None) or str(annotation)
    name = re.sub(r"typing\.|pydantic\.types\.|pathlib\.", "", str(name))
    if args:
        name = re.sub(r"\b(?:[a-z_]\w*\.)+([A-Za-z_]\w*)", r"\1", str(annotation))
    return f"`{name}`"


def _value(value: object) -> str:
    if hasattr(value, "get_secret_value"):
        return "`***`"
    if isinstance(value, Path):
        value = str(value).replace(str(Path.home()), "~")
    if value is None:
        return "`null`"
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return f"`{_md_cell(text)}`" if text != "" else '`""`'


def config_page() -> str:
    import yaml
    from pydantic import BaseModel

    from cascade import config

    docs = _field_docs(Path(config.__file__))
    shipped = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text()) or {}
    out = [
        "# Configuration reference\n",
        "Generated at every docs build from the settings models in `cascade/config.py` (one options object per "
        "stage) and the shipped `configs/default.yaml`, so every key, type and default below is the code's.\n",
        "Where a value comes from, highest first: a command-line flag > a `CASCADE_*` environment variable "
        "(nested with `__`, e.g. `CASCADE_ASR__MODEL=base`) > the YAML file (`CASCADE_CONFIG`, else the shipped "
        "`configs/default.yaml` with `$CASCADE_HOME/config.yaml`, which `cascade tune` writes, laid on top) > the "
        "code default. `cascade config show` prints the effective settings.\n",
        "Every key `section.field` below is also the environment variable `CASCADE_SECTION__FIELD` (e.g. `asr.n_best` "
        "is `CASCADE_ASR__N_BEST`) and the YAML key `field` under `section:`. A **bold** default is what the shipped "
        "`configs/default.yaml` sets where it differs from the code's own default (given in brackets): the bold one "
        "is what the CLI and the services use.\n",
    ]
    top_rows = []
    sections = []
    for name, field in config.Settings.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            sections.append((name, ann, field.default))
        else:
            top_rows.append((name, field))
    out.append("## Top level\n")
    out.append("| key | type | default | description |\n|---|---|---|---|")
    for name, field in top_rows:
        doc = docs.get(("Settings", name), "")
        out.append(f"| `{name}` | {_md_cell(_type_name(field.annotation))} | {_value(field.default)} | {_md_cell(doc)} |")
    out.append("")
    for name, model, default in sections:
        out.append(f"## `{name}`: {model.__name__}\n")
        if model.__doc__ and model.__doc__ != config.Options.__doc__:
            out.append(" ".join(model.__doc__.split()) + "\n")
        ship = shipped.get(name, {}) if isinstance(shipped.get(name), dict) else {}
        out.append("| key | type | default | description |\n|---|---|---|---|")
        for fname, field in model.model_fields.items():
            code_default = getattr(default, fname, field.default)
            default_text = _value(_plain(code_default))
            if fname in ship and ship[fname] != _plain(code_default):
                default_text = f"**{_value(ship[fname])}** (code: {default_text})"
            doc = docs.get((model.__name__, fname), field.description or "")
            out.append(
                f"| `{name}.{fname}` | {_md_cell(_type_name(field.annotation))}{_constraints(field)} | "
                f"{default_text} | {_md_cell(doc)} |"
            )
        out.append("")
    return "\n".join(out)


def _plain(value: object) -> object:
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _constraints(field: object) -> str:
    bits = []
    for meta in getattr(field, "metadata", []):
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(meta, attr, None) is not None:
                bits.append(f"{sign} {getattr(meta, attr)}")
    return f" ({', '.join(bits)})" if bits else ""


# ------------------------------------------------------------------------------------- architecture


def architecture_layers() -> str:
    lint = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    out = []
    for contract in lint["contracts"]:
        if contract["type"] == "layers":
            out.append(f"**{contract['name']}** (highest first; a module may import only from the rows below "
                       "its own; `|` = independent siblings, `:` = may import each other):\n")
            out.append("| layer | modules |\n|---|---|")
            for i, layer in enumerate(contract["layers"], 1):
                mods = ", ".join(f"`cascade.{m.strip()}`" for m in re.split(r"[|:]", layer))
                out.append(f"| {i} | {mods} |")
            out.append("")
        elif contract["type"] == "forbidden":
            ignored = ", ".join(f"`{i}`" for i in contract.get("ignore_imports", []))
            out.append(f"**{contract['name']}**: {', '.join(contract['source_modules'])} must not import "
                       f"{', '.join(contract['forbidden_modules'])}" + (f" (except {ignored})" if ignored else "")
                       + ".\n")
        else:
            out.append(f"**{contract['name']}** (`{contract['type']}`).\n")
    return "\n".join(out)


def benchmark_scripts() -> str:
    """One row per benchmarks/*.py: its command and the first paragraph of its docstring."""
    rows = ["| script | what it measures |", "|---|---|"]
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        doc = ast.get_docstring(ast.parse(script.read_text())) or ""
        first = doc.split("\n\n")[0]
        rows.append(f"| `python benchmarks/{script.name}` | {_md_cell(first)} |")
    return "\n".join(rows) + "\n"


def _fill(page: str, marker: str, text: str) -> None:
    """Replace `<!-- marker -->` in a hand-written page with generated text."""
    with mkdocs_gen_files.open(page, "r") as f:
        body = f.read()
    mkdocs_gen_files_write(page, body.replace(f"<!-- {marker} -->", text))


# --------------------------------------------------------------------------------------------- glue


def mkdocs_gen_files_write(path: str, text: str) -> None:
    with mkdocs_gen_files.open(path, "w") as f:
        f.write(text)


CARDS = {
    "smollm2-mwer": "cascade/rerankers/smollm2-mwer/README.md",
    "atis-domain": "cascade/rerankers/atis-domain/README.md",
    "fusion-mwer": "cascade/rerankers/fusion-mwer/README.md",
    "ger-smollm2": "cascade/adapters/ger-smollm2/README.md",
    "ger-own": "cascade/adapters/ger-own/README.md",
}


def main() -> None:
    mkdocs_gen_files_write("reference/cli.md", cli_page())
    mkdocs_gen_files_write("reference/http-api.md", _escape_html(http_page()))
    mkdocs_gen_files_write("reference/configuration.md", _escape_html(config_page()))
    for name, path in CARDS.items():
        card = (ROOT / path).read_text()
        note = (f"\n\n---\n\n*This card ships beside the weights as `{path}` and is copied here at every docs build. "
                "All bundled models: [Models](index.md).*\n")
        mkdocs_gen_files_write(f"models/{name}.md", card.rstrip() + note)
        mkdocs_gen_files.set_edit_path(f"models/{name}.md", "../" + path)
    _fill("architecture.md", "layers", architecture_layers())
    _fill("benchmarks.md", "benchmark-scripts", benchmark_scripts())
    for png in sorted((ROOT / "benchmarks" / "figures").glob("*.png")):
        with mkdocs_gen_files.open(f"assets/figures/{png.name}", "wb") as f:
            f.write(png.read_bytes())


main()
