"""Every code block of README.md and docs/ runs (or loads) as written.

* ```python blocks run as scripts, each against a ``layotto serve`` of its own on free ports, reached
  through ``LAYOTTO_GRPC_ENDPOINT``: the embedded defaults, or the config named by a marker line
  ``<!-- snippet: config=docs/examples/x.yaml -->`` just before the block (paths are relative to
  the repository's root, where the runtime and the scripts run). ``backends=redis,etcd`` in the
  marker names the real backends the config needs: skipped when one is unreachable, failed instead
  with LAYOTTO_REQUIRE_BACKENDS=1 (as in CI). ``LAYOTTO_HTTP`` (``http://127.0.0.1:PORT``) is the
  same runtime's HTTP port (the actuator and Dapr's HTTP API).
* ```yaml blocks are loaded: a runtime config by the config loader, each of its components' type
  and metadata checked by the component registry; a Dapr manifest by the manifest loader (a
  Resiliency manifest's spec by the resiliency parser).
* ```toml blocks are parsed.
* ```sh blocks marked ``<!-- snippet: http -->`` run with ``bash -eu`` against a ``layotto serve`` of
  their own on the embedded defaults, reached through ``$LAYOTTO_HTTP`` (``http://127.0.0.1:PORT``,
  Dapr's HTTP API); when the next block of the page is a ```text block, it is the block's exact
  output. Other sh blocks are not run (they start the runtime or install things): each must carry
  ``<!-- snippet: not-run: REASON -->``, and test_blocks_not_run_say_why lists them.
* ```text blocks are output, not code.

A block in any other language, or a sh block without its marker, fails the test.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from layotto.server.components.base import ConfigError
from layotto.server.components.registry import registry_for
from layotto.server.config import DEFAULT_GRPC_ADDRESS, DEFAULT_HTTP_ADDRESS, load
from layotto.server.dapr_manifests import load_manifests, load_resiliency, load_subscriptions
from layotto.server.runtime.resiliency import parse_resiliency

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*snippet:\s*(?P<body>.*?)\s*-->\s*$")
BACKEND_PORTS = {
    "redis": 6379,
    "postgresql": 5432,
    "mysql": 3306,
    "etcd": 2379,
    "zookeeper": 2181,
    "nats": 4222,
    "mosquitto": 1883,
    "rabbitmq": 5672,
    "smtp": 2525,
    "s3": 9000,
}
NOT_CODE = {"text"}
SNIPPET_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Snippet:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    options: dict[str, str] = field(default_factory=dict)
    #: the block right after this one when it is a ```text block (its expected output)
    output: str | None = None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _options(marker: str) -> dict[str, str]:
    if marker.startswith("not-run:"):
        return {"not-run": marker.removeprefix("not-run:").strip()}
    return dict(item.split("=", 1) if "=" in item else (item, "") for item in marker.split())


def extract(path: Path) -> Iterator[Snippet]:
    """Every fenced block of ``path``, with the options of the marker line just before it."""
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, start = len(opening["indent"]), index
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index].strip() != "```":
            body.append(lines[index][indent:])
            index += 1
        marker = MARKER.match(lines[start - 1]) if start > 0 else None
        options = _options(marker["body"]) if marker else {}
        yield Snippet(path, start + 1, opening["lang"], "\n".join(body) + "\n", options)
        index += 1


def with_outputs(snippets: list[Snippet]) -> list[Snippet]:
    """Each block, given the ```text block that follows it in its page as its output."""
    return [
        Snippet(block.path, block.line, block.lang, block.code, block.options, after.code)
        if after is not None and after.path == block.path and after.lang == "text"
        else block
        for block, after in zip(snippets, [*snippets[1:], None], strict=True)
    ]


ALL_BLOCKS = [
    s for s in with_outputs([s for document in DOCUMENTS for s in extract(document)]) if s.lang not in NOT_CODE
]
SNIPPETS = [s for s in ALL_BLOCKS if "not-run" not in s.options]
NOT_RUN = [s for s in ALL_BLOCKS if "not-run" in s.options]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _require_backends(snippet: Snippet) -> None:
    names = [n for n in snippet.options.get("backends", "").split(",") if n]
    missing = [n for n in names if not _reachable(BACKEND_PORTS[n])]
    if missing:
        message = f"{snippet.where} needs {', '.join(missing)} (start them with scripts/backends up)"
        if os.environ.get("LAYOTTO_REQUIRE_BACKENDS") == "1":
            pytest.fail(message)
        pytest.skip(message)


class Runtime:
    """A ``layotto serve`` of its own for one snippet, as a new user would start it."""

    def __init__(self, config: str | None, data_dir: Path) -> None:
        self.data_dir = data_dir
        grpc_port, http_port = _free_port(), _free_port()
        args = [
            str(Path(sys.executable).parent / "layotto"),
            "serve",
            "--grpc-address",
            f"127.0.0.1:{grpc_port}",
            "--http-address",
            f"127.0.0.1:{http_port}",
            "--data-dir",
            str(data_dir),
            *(["-c", config] if config else []),
        ]
        self.endpoint = f"127.0.0.1:{grpc_port}"
        self.http = f"http://127.0.0.1:{http_port}"
        with (data_dir / "runtime.log").open("wb") as log:
            self._process = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not (_reachable(grpc_port) and _reachable(http_port)):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"layotto serve ({config or 'defaults'}) did not start:\n{_tail(data_dir)}")
            time.sleep(0.1)

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _tail(data_dir: Path) -> str:
    return "\n".join((data_dir / "runtime.log").read_text(errors="replace").splitlines()[-20:])


def _run_python(snippet: Snippet, data_dir: Path) -> None:
    config = snippet.options.get("config")
    if config is not None:
        assert (ROOT / config).is_file(), f"{snippet.where}: the marker names {config}, which does not exist"
    _require_backends(snippet)
    runtime = Runtime(config, data_dir)
    try:
        env = {**os.environ, "LAYOTTO_GRPC_ENDPOINT": runtime.endpoint, "LAYOTTO_HTTP": runtime.http}
        _run_script(snippet, data_dir / "snippet.py", env)
    finally:
        runtime.stop()


def _run_http_sh(snippet: Snippet, data_dir: Path) -> None:
    runtime = Runtime(None, data_dir)
    try:
        done = _run_script(snippet, data_dir / "snippet.sh", {**os.environ, "LAYOTTO_HTTP": runtime.http}, "bash")
    finally:
        runtime.stop()
    if snippet.output is not None:
        assert done.stdout.strip() == snippet.output.strip(), f"{snippet.where}: the output is not the page's"


def _run_script(
    snippet: Snippet, script: Path, env: dict[str, str], interpreter: str = sys.executable
) -> subprocess.CompletedProcess[str]:
    script.write_text(snippet.code)
    command = [interpreter, "-eu", str(script)] if interpreter == "bash" else [interpreter, str(script)]
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=SNIPPET_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{snippet.where}: the snippet ran longer than {SNIPPET_TIMEOUT_SECONDS} s")
    if done.returncode != 0:
        pytest.fail(f"{snippet.where}: the snippet failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    return done


def _check_runtime_config(snippet: Snippet, text: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "config.yaml"
        path.write_text(text)
        try:
            config = load(path)
            for block, components in config.components.items():
                for name, component in components.items():
                    cls = registry_for(block).get(component.type, f"{block}.{name}")
                    if not component.secret_refs:  # referenced metadata arrives at start-up
                        cls.spec.parse_metadata(component.metadata, f"{block}.{name}.metadata")
        except ConfigError as error:
            pytest.fail(f"{snippet.where}: the config block does not load: {error}")


def _check_yaml(snippet: Snippet) -> None:
    document = yaml.safe_load(snippet.code)
    assert isinstance(document, dict), f"{snippet.where}: a yaml block is a mapping"
    if "apiVersion" not in document:
        _check_runtime_config(snippet, snippet.code)
        return
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "manifest.yaml").write_text(snippet.code)
        try:
            load_manifests(Path(directory))
            scopes = document.get("scopes") or [""]
            for where, raw in load_resiliency(Path(directory), scopes[0]):
                parse_resiliency(raw, where)
            load_subscriptions(Path(directory))
        except ConfigError as error:
            pytest.fail(f"{snippet.where}: the Dapr manifest does not load: {error}")


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.where for s in SNIPPETS])
def test_snippet(snippet: Snippet, tmp_path: Path) -> None:
    if snippet.lang == "python":
        _run_python(snippet, tmp_path)
    elif snippet.lang == "yaml":
        _check_yaml(snippet)
    elif snippet.lang == "toml":
        tomllib.loads(snippet.code)
    elif snippet.lang == "sh" and "http" in snippet.options:
        _run_http_sh(snippet, tmp_path)
    else:
        pytest.fail(
            f"{snippet.where}: a ```{snippet.lang or '(no language)'} block is neither run nor loaded;"
            " mark it <!-- snippet: not-run: REASON --> or give it a language the test knows"
        )


#: what a snippet may import besides the standard library: the SDK and what it installs
SDK_MODULES = {"layotto", "grpc", "google"}


def _imported(code: str) -> set[str]:
    """The top-level modules ``code`` imports (absolute imports only)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(
    "snippet", PYTHON := [s for s in SNIPPETS if s.lang == "python"], ids=[s.where for s in PYTHON]
)
def test_a_snippet_needing_more_than_the_sdk_says_so(snippet: Snippet) -> None:
    """A reader who installed the SDK can run the snippet, or its marker's ``requires=a,b`` names
    the other packages and its page has the ``pip install`` line for them."""
    extra = _imported(snippet.code) - set(sys.stdlib_module_names) - SDK_MODULES
    declared = set(filter(None, snippet.options.get("requires", "").split(",")))
    assert extra <= declared, f"{snippet.where} imports {sorted(extra - declared)}: say requires= in its marker"
    page = snippet.path.read_text()
    for package in sorted(declared):
        install = re.search(rf"pip install [^`\n]*\b{re.escape(package)}\b", page)
        assert install, f"{snippet.where} requires {package}: its page gives no pip install line with it"


#: what each variable the test sets is when a reader runs the snippet: the embedded defaults' addresses
READER_ADDRESSES = {"LAYOTTO_GRPC_ENDPOINT": DEFAULT_GRPC_ADDRESS, "LAYOTTO_HTTP": f"http://{DEFAULT_HTTP_ADDRESS}"}


def _environment_reads(code: str) -> list[tuple[str, str | None]]:
    """(variable, its fallback) for each ``os.environ.get``, ``os.getenv`` or ``os.environ[...]`` of
    a variable in READER_ADDRESSES; the fallback is None where the code gives none."""
    reads: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            key, fallback = node.slice, None
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.environ.get", "os.getenv") and node.args:
            key = node.args[0]
            fallback = ast.literal_eval(node.args[1]) if len(node.args) > 1 else None
        else:
            continue
        if isinstance(key, ast.Constant) and key.value in READER_ADDRESSES:
            reads.append((key.value, fallback))
    return reads


@pytest.mark.parametrize("snippet", PYTHON, ids=[s.where for s in PYTHON])
def test_a_snippet_reaches_the_embedded_defaults_without_the_test_s_variables(snippet: Snippet) -> None:
    """The test runs each snippet with LAYOTTO_GRPC_ENDPOINT and LAYOTTO_HTTP set to its runtime's
    free ports; a reader runs it without them, against `scripts/dev serve`. So a snippet that reads
    one falls back to the embedded defaults' address, or the reader's run fails where the test's passes."""
    for variable, fallback in _environment_reads(snippet.code):
        assert fallback == READER_ADDRESSES[variable], (
            f"{snippet.where} reads {variable} with the fallback {fallback!r}: a reader has no {variable},"
            f" so it should be os.environ.get({variable!r}, {READER_ADDRESSES[variable]!r})"
        )


def test_a_page_with_http_blocks_tells_the_reader_to_set_layotto_http() -> None:
    """The ```sh blocks the test runs reach the runtime through $LAYOTTO_HTTP, which the test sets
    and a reader has not: each page with such blocks says how to set it."""
    export = f"export LAYOTTO_HTTP={READER_ADDRESSES['LAYOTTO_HTTP']}"
    for path in sorted({s.path for s in SNIPPETS if s.lang == "sh" and "http" in s.options}):
        assert export in path.read_text(), f"{path.relative_to(ROOT)} runs curl on $LAYOTTO_HTTP: say `{export}`"


def test_blocks_not_run_say_why() -> None:
    """The blocks that are not run are only sh blocks, each with its reason (printed with -v)."""
    for snippet in NOT_RUN:
        assert snippet.lang == "sh", f"{snippet.where}: only sh blocks may be marked not-run"
        assert snippet.options["not-run"], f"{snippet.where}: a not-run marker gives its reason"
        print(f"not run: {snippet.where}: {snippet.options['not-run']}")


def test_the_example_configs_load() -> None:
    """Every config under docs/examples/ is one a snippet or a page names; each loads."""
    examples = sorted((ROOT / "docs" / "examples").glob("*.yaml"))
    assert examples
    for path in examples:
        snippet = Snippet(path, 1, "yaml", path.read_text())
        _check_runtime_config(snippet, snippet.code)


def test_the_configuration_page_agrees_with_the_code(tmp_path: Path) -> None:
    """Its error examples are what `layotto serve` prints; its section and manifest lists are the code's."""
    from layotto.server.config import _LAYOTTO_ONLY_SECTIONS
    from layotto.server.dapr_manifests import DAPR_BLOCKS

    page = (ROOT / "docs" / "configuration.md").read_text()
    configs = {
        "cassandra": "state:\n  orders:\n    type: cassandra\n",
        "colour": "state:\n  orders:\n    type: sqlite\n    metadata: {colour: red}\n",
    }
    for text in configs.values():
        (tmp_path / "my.yaml").write_text(text)
        done = subprocess.run(
            [str(Path(sys.executable).parent / "layotto"), "serve", "-c", "my.yaml", "--data-dir", str(tmp_path)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr.count("\n") == 1, "a config error is one line"
        assert done.stderr.strip() in page, f"docs/configuration.md should show: {done.stderr.strip()}"
    assert "`config_store`" in page and "(`config_store`" not in page
    for section in _LAYOTTO_ONLY_SECTIONS:
        assert f"`{section}`" in page, f"docs/configuration.md should list the refused section {section}"
    for prefix in DAPR_BLOCKS:
        assert f"`{prefix}.*`" in page, f"docs/configuration.md should list the Dapr manifest type {prefix}.*"
    for flag in _serve_flags():
        assert re.search(rf"`[^`\n]*{re.escape(flag)}\b", page), f"docs/configuration.md's flag table lacks {flag}"


def _serve_flags() -> list[str]:
    """The long options of `layotto serve`, as its --help lists them."""
    from layotto.server.cli import _parser

    (commands,) = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return [
        o for a in commands.choices["serve"]._actions for o in a.option_strings if o.startswith("--") and o != "--help"
    ]
