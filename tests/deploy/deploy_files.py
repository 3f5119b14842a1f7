"""Readers for the deployment files, shared by tests/deploy: Dockerfiles, compose files
(with Compose's `!reset` / `!override` tags and merge rules), .dockerignore, and the metric
names inside PromQL expressions."""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPONENTS = ("stt", "translate", "llm", "tts", "gateway")
MODEL_SERVICES = ("stt", "translate", "llm", "tts")
# The module each image runs, and the env prefix of its settings.
MODULES = {name: f"services.{name}" for name in MODEL_SERVICES} | {"gateway": "gateway"}
PREFIXES = {name: f"MILO_{name.upper()}_" for name in COMPONENTS}
# Listening settings a test replaces with loopback and free ports (ServiceProcess does the
# gRPC and metrics ones; the gateway's HTTP bridge is set here).
LISTEN_SETTINGS = ("HOST", "PORT", "METRICS_HOST", "METRICS_PORT", "HTTP_HOST", "HTTP_PORT")
TEST_LISTEN_ENV = {"MILO_GATEWAY_HTTP_HOST": "127.0.0.1", "MILO_GATEWAY_HTTP_PORT": "0"}


def tool(name: str) -> str | None:
    """An executable from PATH or from this interpreter's environment (the venv's bin/)."""
    here = Path(sys.executable).parent / name
    return str(here) if here.is_file() else shutil.which(name)


# --- Dockerfiles -------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        out.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    return out


def stages(path: Path) -> list[Stage]:
    """The build stages of a Dockerfile, in order (global ARGs before the first FROM dropped)."""
    result: list[Stage] = []
    for keyword, args in instructions(path.read_text()):
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            result.append(Stage(words[0], name))
        elif result:
            result[-1].instructions.append((keyword, args))
    return result


def global_args(path: Path) -> dict[str, str]:
    """ARGs declared before the first FROM, with their defaults."""
    found: dict[str, str] = {}
    for keyword, args in instructions(path.read_text()):
        if keyword == "FROM":
            break
        if keyword == "ARG":
            name, _, default = args.partition("=")
            found[name] = default
    return found


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for pair in shlex.split(args):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def install_command(stage: Stage) -> list[str]:
    """The words after `sh deploy/install.sh` in the stage's RUN (EXTRA DEVICE SRC)."""
    for args in stage.all("RUN"):
        words = shlex.split(args)
        if "deploy/install.sh" in words:
            return words[words.index("deploy/install.sh") + 1 :]
    raise AssertionError(f"no RUN of deploy/install.sh in stage {stage.name}")


def copy_sources(stage: Stage) -> list[str]:
    """The build-context paths a stage COPYs (COPY --from=... is not from the context)."""
    sources: list[str] = []
    for args in stage.all("COPY"):
        words = [w for w in args.split() if not w.startswith("--")]
        if "--from=" not in args:
            sources += words[:-1]
    return sources


# --- .dockerignore -----------------------------------------------------------------------


def _pattern_matches(pattern: str, rel: str) -> bool:
    """Docker's matching: a pattern matches a path or any of its parent folders."""
    regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
    regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
    parts = rel.split("/")
    return any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1))


def dockerignore_excludes(rel: str, patterns: list[str]) -> bool:
    """True when the context leaves `rel` out (last matching pattern wins, `!` re-includes)."""
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        if _pattern_matches(body.strip("/"), rel):
            excluded = not negate
    return excluded


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def build_context(dest: Path, sources: list[str]) -> None:
    """Copy what `docker build .` would send for `sources`: the .dockerignore applied."""
    patterns = dockerignore_patterns()
    for source in sources:
        src = ROOT / source
        files = [src] if src.is_file() else [p for p in src.rglob("*") if p.is_file()]
        for path in files:
            rel = path.relative_to(ROOT).as_posix()
            if not dockerignore_excludes(rel, patterns):
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest / rel)


# --- compose files -----------------------------------------------------------------------


@dataclass
class Reset:
    """`!reset value`: drop the attribute from the merged model."""

    value: Any


@dataclass
class Override:
    """`!override value`: replace the attribute instead of merging into it."""

    value: Any


class ComposeLoader(yaml.SafeLoader):
    pass


def _tagged(cls: type) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode):
            return cls(loader.construct_mapping(node, deep=True))
        if isinstance(node, yaml.SequenceNode):
            return cls(loader.construct_sequence(node, deep=True))
        return cls(loader.construct_scalar(node))  # type: ignore[arg-type]

    return construct


ComposeLoader.add_constructor("!reset", _tagged(Reset))
ComposeLoader.add_constructor("!override", _tagged(Override))


def load_compose(path: Path) -> dict[str, Any]:
    # ComposeLoader is a SafeLoader with two extra tags: no arbitrary objects.
    return yaml.load(path.read_text(), Loader=ComposeLoader)


def untagged(data: Any) -> Any:
    """The document as the schema sees it: `!reset x` / `!override x` read as plain x."""
    if isinstance(data, Reset | Override):
        return untagged(data.value)
    if isinstance(data, dict):
        return {k: untagged(v) for k, v in data.items()}
    if isinstance(data, list):
        return [untagged(v) for v in data]
    return data


def merge(base: Any, over: Any) -> Any:
    """Compose's merge of an override file: mappings merge, sequences append, scalars replace;
    `!reset` removes, `!override` replaces (extension fields `x-*` are replaced whole)."""
    if isinstance(over, Override):
        return untagged(over.value)
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            if isinstance(value, Reset):
                merged.pop(key, None)
            elif key in merged and not str(key).startswith("x-"):
                merged[key] = merge(merged[key], value)
            else:
                merged[key] = untagged(value)
        return merged
    if isinstance(base, list) and isinstance(over, list):
        return base + untagged(over)
    return untagged(over)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


_DEFAULTED = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}")


def interpolate_defaults(value: str) -> str:
    """`${VAR:-default}` -> default: the value when the user's .env sets nothing."""
    return _DEFAULTED.sub(lambda m: m.group(1), value)


# --- PromQL ------------------------------------------------------------------------------

PROMQL_WORDS = {
    # functions and aggregations the dashboard may use
    "abs",
    "avg",
    "avg_over_time",
    "ceil",
    "clamp_min",
    "clamp_max",
    "count",
    "delta",
    "deriv",
    "floor",
    "histogram_quantile",
    "idelta",
    "increase",
    "irate",
    "label_replace",
    "max",
    "max_over_time",
    "min",
    "min_over_time",
    "quantile",
    "rate",
    "round",
    "sort",
    "sort_desc",
    "sum",
    "sum_over_time",
    "time",
    "topk",
    "bottomk",
    "vector",
    "scalar",
    "absent",
    "changes",
    "resets",
    "last_over_time",
    # keywords
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "and",
    "or",
    "unless",
    "inf",
    "nan",
}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression reads (label matchers, grouping labels, durations and
    strings removed first)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    words = re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text)
    return {w for w in words if w.lower() not in PROMQL_WORDS and not w.startswith("$")}


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = []
    for panel in dashboard.get("panels", []):
        for sub in [panel, *panel.get("panels", [])]:
            exprs += [t["expr"] for t in sub.get("targets", []) if t.get("expr")]
    return exprs


def fnmatch_any(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)
