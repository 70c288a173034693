"""The import graph of hf_mae, read from the source (ast, nothing is imported): no cycles, and no arrow from a
lower layer to a higher one. Models import only torch, transformers and their single-dot siblings, so each
architecture travels to the Hub as remote code."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hf_mae"

# A module may import from its own layer's subpackage and from lower layers, never from a higher one.
LAYERS = {
    "_shipped": 0, "models": 0,
    "processing": 1,
    "data": 2,
    "training": 3, "analysis": 3,
    "_auto": 4,            # registration: the table of every architecture and its processor
    "hub": 5,
    "cli": 6, "_benchmark_moved": 6, "representations": 6, "__init__": 7,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` outside ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
            else:
                stack.append(child)


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """hf_mae modules that ``name`` imports anywhere in its source (module level or inside functions), except
    under ``if TYPE_CHECKING:``, which names types for annotations and imports nothing at run time."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "hf_mae"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "hf_mae":
                continue
            for alias in node.names:   # ``from . import models`` imports the module hf_mae.models
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target)
    return found - {name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _layer(module: str) -> tuple[str, int]:
    part = module.split(".")[1] if "." in module else "__init__"
    assert part in LAYERS, f"{module}: place its folder {part!r} in LAYERS"
    return part, LAYERS[part]


def test_no_arrow_points_up_a_layer():
    upward = []
    for module, targets in _graph().items():
        part, layer = _layer(module)
        for target in targets:
            target_part, target_layer = _layer(target)
            if target_layer > layer or (target_layer == layer and target_part != part):
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_models_import_only_torch_transformers_and_single_dot_siblings():
    allowed_roots = {"torch", "transformers", "huggingface_hub", "safetensors", "__future__", "dataclasses",
                     "typing", "collections", "math", "os", "re", "warnings", "functools", "itertools", "weakref"}
    offenders = []
    for path in (PACKAGE / "models").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                if node.level != 1 or node.module is None:
                    offenders.append(f"{path.name}: from {'.' * node.level}{node.module or ''}")
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] not in allowed_roots]
    assert offenders == []


def test_import_graph_has_no_cycles():
    graph = _graph()
    state: dict[str, int] = {}        # 1 = on the current path, 2 = done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_graph_is_read():
    graph = _graph()
    assert "hf_mae.models.masking" in graph["hf_mae.models.modeling_spectral_gpt"]
    assert "hf_mae.models.pooling" in graph["hf_mae.models.modeling_protein_mae_v5"]
    assert "hf_mae.models" in graph["hf_mae._auto"]


def test_spectral_gpt_remote_code_ships_masking_and_no_other_model(tmp_path):
    import hf_mae  # noqa: F401 - registers the architectures (and with them the remote-code file lists)
    from hf_mae.models import SpectralGPTConfig, SpectralGPTForPreTraining

    config = SpectralGPTConfig(image_size=16, patch_size=8, num_bands=4, band_patch_size=2, hidden_size=16,
                               num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                               decoder_hidden_size=16, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                               decoder_intermediate_size=32)
    SpectralGPTForPreTraining(config).save_pretrained(tmp_path)
    shipped = sorted(path.name for path in tmp_path.glob("*.py"))
    assert "masking.py" in shipped and "modeling_spectral_gpt.py" in shipped
    assert [name for name in shipped if name.startswith("modeling_")] == ["modeling_spectral_gpt.py"]
