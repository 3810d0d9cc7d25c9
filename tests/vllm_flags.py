"""Extract the flags `vllm serve` accepts from a vLLM wheel's own source (no vLLM import needed).

vLLM builds its serve parser from string literals in `engine/arg_utils.py`
(`add_argument("--enable-lora", ...)`) and from the dataclass fields of
`FrontendArgs`/`BaseFrontendArgs` (`--lora-modules` <- `lora_modules`). This reads both
with `ast` and writes tests/data/vllm-serve-flags.txt, which tests/test_compose.py
checks the compose file's vLLM command against. Regenerate when the image tag changes:

    pip download --no-deps -d /tmp/w vllm==X.Y.Z
    python tests/vllm_flags.py /tmp/w/vllm-X.Y.Z-*.whl
"""

from __future__ import annotations

import ast
import re
import sys
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parent / "data" / "vllm-serve-flags.txt"
SOURCES = ("vllm/engine/arg_utils.py", "vllm/entrypoints/common/cli_args.py")
FRONTEND_CLASSES = {"BaseFrontendArgs", "FrontendArgs"}


def flags_from_source(source: str) -> set[str]:
    tree = ast.parse(source)
    flags: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            flags |= {a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
                      and a.value.startswith("-")}
        if isinstance(node, ast.ClassDef) and node.name in FRONTEND_CLASSES:
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    flags.add("--" + item.target.id.replace("_", "-"))
    return flags


def main(wheel: str) -> None:
    version = re.search(r"vllm-([^-]+)-", Path(wheel).name).group(1)  # type: ignore[union-attr]
    with zipfile.ZipFile(wheel) as zf:
        flags = set().union(*(flags_from_source(zf.read(name).decode()) for name in SOURCES))
    OUT.write_text(f"# vllm=={version}: flags of `vllm serve`, extracted by tests/vllm_flags.py\n"
                   + "".join(f"{f}\n" for f in sorted(flags)))
    print(f"{len(flags)} flags of vllm {version} -> {OUT}")


if __name__ == "__main__":
    main(sys.argv[1])
