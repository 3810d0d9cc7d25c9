"""The README and the docs site stay true to the code.

Every command the README and the docs show (in code blocks, inline, and in the figures tables) must still
exist: `cascade` subcommands and each flag they pass, `make` targets, benchmark scripts and their flags,
`CASCADE_*__*` settings. The site must build with `mkdocs build --strict` (a broken link, a missing page or a
reference page that no longer matches the code fails), and every page a user needs is one click from the README.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
# Generated at build time from the code (docs/_gen/reference.py); the files in the repository are stubs.
GENERATED = {"reference/cli.md", "reference/http-api.md", "reference/configuration.md"}
COMMAND_START = re.compile(r"^(?:[A-Z][A-Z0-9_]*=\S*\s+)*(?:~/\.cache/cascade/venv/bin/)?(cascade|make|python)\b")
SETTING_VAR = re.compile(r"\bCASCADE_([A-Z0-9]+(?:_[A-Z0-9]+)*)__([A-Z0-9_]+)\b")


def _docs_pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "_gen" not in p.parts)


def _code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.M | re.S)


def _shell_commands(text: str) -> list[str]:
    """Commands in bash blocks (continuations joined, comments dropped) and in inline code spans."""
    commands = []
    for lang, body in _code_blocks(text):
        if lang not in ("bash", "sh", "console", "shell"):
            continue
        joined = re.sub(r"\\\n\s*", " ", body)
        for line in joined.splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip().removeprefix("$ ")
            for part in re.split(r"\s*(?:&&|;)\s*", line):
                if COMMAND_START.match(part):
                    commands.append(part)
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    for span in re.findall(r"`([^`\n]+)`", prose):
        if COMMAND_START.match(span) and " " in span:
            commands.append(span)
    return commands


def _cli():
    import typer.main

    from cascade.cli import app

    return typer.main.get_command(app)


def _flags(command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        names.update(getattr(param, "opts", []))
        names.update(getattr(param, "secondary_opts", []))
    return names


def _tokens(command: str) -> list[str]:
    try:
        tokens = shlex.split(command)
    except ValueError:
        tokens = command.split()
    while tokens and re.match(r"^[A-Z][A-Z0-9_]*=", tokens[0]):
        tokens.pop(0)
    return tokens


def _check(command: str, cli, makefile: str) -> str | None:
    """None when the command exists as written, else what is wrong."""
    tokens = _tokens(command)
    if not tokens:
        return None
    head = tokens[0].rsplit("/", 1)[-1]
    flags = [t.split("=", 1)[0] for t in tokens[1:] if re.match(r"^-{1,2}[A-Za-z]", t.strip("[]"))]
    flags = [f.strip("[]") for f in flags]
    if head == "cascade":
        cmd, rest = cli, tokens[1:]
        path = ["cascade"]
        while rest and hasattr(cmd, "commands"):
            word = rest[0]
            if word.isupper():  # a placeholder: cascade serve NAME, cascade COMMAND --help
                return None
            if word.startswith("-"):
                rest = rest[1:]
                continue
            sub = cmd.commands.get(word)
            if sub is None:
                if not cmd.commands:
                    break
                return f"`{' '.join(path)} {word}`: no such command"
            cmd, path, rest = sub, path + [word], rest[1:]
        known = _flags(cmd) | _flags(cli)
        unknown = [f for f in flags if f not in known]
        return f"`{' '.join(path)}` has no {', '.join(unknown)}" if unknown else None
    if head == "make":
        targets = [t for t in tokens[1:] if not re.match(r"^[A-Z_]+=", t) and not t.startswith("-")]
        missing = [t for t in targets if not re.search(rf"^{re.escape(t)}:", makefile, flags=re.M)]
        return f"no make target {missing}" if missing else None
    if head == "python" and tokens[1:2] == ["-m"]:  # python -m pytest tests/x.py: the files must exist
        missing = [t for t in tokens[3:] if t.endswith(".py") and not (ROOT / t.split("::")[0]).exists()]
        return f"no such file {missing}" if missing else None
    if head == "python":
        scripts = [t for t in tokens[1:] if t.endswith(".py")]
        if not scripts:
            return None
        script = ROOT / scripts[0]
        if re.search(r"/[A-Z]+\.py$", scripts[0]):  # a placeholder: benchmarks/NAME.py
            return None
        if not script.exists():
            return f"no script {scripts[0]}"
        source = script.read_text()
        unknown = [f for f in flags if f"\"{f}\"" not in source and f"'{f}'" not in source and f != "--help"]
        return f"{scripts[0]} has no {', '.join(unknown)}" if unknown else None
    return None


def _settings_vars(text: str) -> set[str]:
    return {f"CASCADE_{a}__{b}" for a, b in SETTING_VAR.findall(text)}


def _missing_settings(names: set[str]) -> list[str]:
    from cascade.config import Settings

    missing = []
    for name in sorted(names):
        section, field = name.removeprefix("CASCADE_").lower().split("__", 1)
        info = Settings.model_fields.get(section)
        model = getattr(info, "annotation", None)
        if model is None or field not in getattr(model, "model_fields", {}):
            missing.append(name)
    return missing


def _figure_commands(text: str, column: int) -> list[tuple[str, list[str]]]:
    """(row, code spans of its command column) for every body row of the tables between figures markers, or of
    every table whose header has a `command` column."""
    rows = []
    for table in re.findall(r"((?:^\|.*\|\n)+)", text, flags=re.M):
        lines = table.splitlines()
        header = [c.strip() for c in lines[0].strip("|").split("|")]
        if "command" not in header or "figure" not in header:
            continue
        col = header.index("command") if column < 0 else column
        for line in lines[2:]:
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
            rows.append((line, re.findall(r"`([^`]+)`", cells[col]) if col < len(cells) else []))
    return rows


# ------------------------------------------------------------------------------------------------ README


def test_readme_is_short_and_starts_with_the_two_commands():
    lines = README.read_text().splitlines()
    assert len(lines) <= 160, f"README has {len(lines)} lines; the rest belongs in docs/"
    text = "\n".join(line for line in lines if line.startswith("|")).lower()  # the figures table
    stale = [w for w in ("earlier build", "first build", "helper's build", "previous build") if w in text]
    assert not stale, f"older builds' figures belong in docs/changelog.md, not the README: {stale}"
    body = "\n".join(lines[:12])
    assert re.search(r"^make demo\s+#", body, flags=re.M) and re.search(r"^make test\s+#", body, flags=re.M)


def test_every_command_in_the_readme_and_the_docs_exists():
    cli, makefile = _cli(), (ROOT / "Makefile").read_text()
    problems = []
    for page in [README, *_docs_pages()]:
        for command in _shell_commands(page.read_text()):
            problem = _check(command, cli, makefile)
            if problem:
                problems.append(f"{page.relative_to(ROOT)}: {command!r}: {problem}")
    assert not problems, "\n".join(problems)


def test_every_figure_has_a_command_that_exists():
    cli, makefile = _cli(), (ROOT / "Makefile").read_text()
    problems, rows = [], 0
    for page in (README, DOCS / "benchmarks.md"):
        for row, commands in _figure_commands(page.read_text(), -1):
            if "pending" in row.lower() and not commands:
                continue
            rows += 1
            runnable = [c for c in commands if COMMAND_START.match(c)]
            if not runnable:
                problems.append(f"{page.name}: no command in row {row[:80]!r}")
            for command in runnable:
                problem = _check(command, cli, makefile)
                if problem:
                    problems.append(f"{page.name}: {command!r}: {problem}")
    assert rows >= 10, "the figures tables were not found"
    assert not problems, "\n".join(problems)


def test_the_readme_figures_are_on_the_benchmarks_page():
    """The README's table is the short form of docs/benchmarks.md: each of its commands is listed there too."""
    bench = (DOCS / "benchmarks.md").read_text()
    listed = {c for _, commands in _figure_commands(bench, -1) for c in commands}
    missing = [c for _, commands in _figure_commands(README.read_text(), -1) for c in commands
               if COMMAND_START.match(c) and c not in listed]
    assert not missing, f"README figures whose command is not on docs/benchmarks.md: {missing}"


def test_every_setting_the_docs_name_exists():
    names = set()
    for page in [README, *_docs_pages()]:
        names |= _settings_vars(page.read_text())
    assert len(names) > 10
    assert not _missing_settings(names), _missing_settings(names)


def test_python_examples_compile():
    for page in [README, *_docs_pages()]:
        for lang, body in _code_blocks(page.read_text()):
            if lang == "python":
                compile(body, str(page), "exec")


def test_every_page_a_user_needs_is_one_click_from_the_readme():
    text = README.read_text()
    links = {m for m in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text) if not m.startswith(("http", "mailto"))}
    for link in links:
        assert (ROOT / link).exists(), f"README links to {link}, which does not exist"
    needed = {"docs/index.md", "docs/getting-started.md", "docs/benchmarks.md", "docs/architecture.md",
              "docs/changelog.md", "docs/models/index.md"}
    needed |= {f"docs/{p.relative_to(DOCS)}" for p in (DOCS / "guides").glob("*.md")}
    needed |= {f"docs/{p}" for p in GENERATED} | {"docs/reference/python-api.md"}
    assert not needed - links, f"not linked from the README: {sorted(needed - links)}"


# ------------------------------------------------------------------------------------------------ the site


def test_the_site_builds_strictly(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    cli = (site / "reference/cli/index.html").read_text()
    http = (site / "reference/http-api/index.html").read_text()
    config = (site / "reference/configuration/index.html").read_text()
    api = (site / "reference/python/correction/index.html").read_text()
    types = (site / "reference/python/types/index.html").read_text()
    assert "cascade transcribe" in cli and "--n-best" in cli
    assert "/v1/audio/transcriptions" in http and "/v1/chat/completions" in http
    assert "asr.n_best" in config and "llm.backend" in config
    assert "build_corrector" in api and "NBest" in types and "AsrOptions" in types
    assert (site / "reference/openapi/gateway.json").exists()
    assert (site / "assets/figures/playground.png").exists()
