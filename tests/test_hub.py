"""The local Hub (hf_mae/hub), driven only by the real huggingface_hub and transformers clients over HTTP.

Each client scenario runs in its own Python process (tests/hub_clients.py) with a fresh HF_HOME and
HF_ENDPOINT set before huggingface_hub or transformers is imported. Push and pull cover every architecture of
hf_mae._auto.REGISTRY; the remote-code process cannot import hf_mae.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import hf_mae  # noqa: F401
from hf_mae._auto import REGISTRY
from hf_mae.hub.cards import CARD_SPECS, card_spec
from hf_mae.hub.metadata import validate_card
from hf_mae.hub.server import start_server

import hub_clients

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = Path(hub_clients.__file__)


def client_env(endpoint: str, home: Path, *, with_hf_mae: bool = True, xet: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "PYTHONPATH"))}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(home), HF_HUB_OFFLINE="0",
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1")
    if not xet:  # hf_xet is installed: without this the client uploads large files through Xet
        env["HF_HUB_DISABLE_XET"] = "1"
    if with_hf_mae:
        env["PYTHONPATH"] = str(ROOT)
    return env


def start_scenario(name: str, work: Path, endpoint: str, *, isolated: bool = False,
                   xet: bool = False) -> subprocess.Popen:
    """Run hub_clients.<name>(work) in a fresh process; ``isolated``: python -I, run from ``work``, and a
    meta path blocker, so hf_mae cannot be imported however it is installed."""
    home = work / f"hf-home-{name}"
    command = [sys.executable, *(["-I"] if isolated else []), str(CLIENTS), name, str(work)]
    return subprocess.Popen(command, cwd=work if isolated else ROOT, env=client_env(endpoint, home, with_hf_mae=not isolated, xet=xet),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, timeout: float = 300) -> dict:
    output, _ = process.communicate(timeout=timeout)
    results = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert process.returncode == 0 and results, f"client scenario failed:\n{output[-6000:]}"
    return json.loads(results[-1][len("RESULT "):])


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    server = start_server(str(tmp_path_factory.mktemp("hub-root")))
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def pushed(hub, tmp_path_factory):
    """Everything the push scenario published (all architectures); the two loading scenarios then start
    together, each in its own process, and each test waits for its own."""
    work = tmp_path_factory.mktemp("push")
    finish(start_scenario("push", work, hub.url))
    loaders = {"pull": start_scenario("pull", work, hub.url),
               "remote_code": start_scenario("remote_code", work, hub.url, isolated=True)}
    yield work, json.loads((work / "pushed.json").read_text()), loaders
    for process in loaders.values():
        process.kill()
        process.wait()


# -- every architecture ------------------------------------------------------------------------------------
def test_every_registered_architecture_has_a_factory_and_a_card():
    for config_class, models, _ in REGISTRY:
        assert config_class.__name__ in hub_clients.FACTORIES, f"add {config_class.__name__} to tests/hub_clients.py"
        spec = card_spec(config_class.model_type)  # raises if the template is missing
        assert spec.template.endswith(".md")
    assert set(CARD_SPECS) >= {config_class.model_type for config_class, _, _ in REGISTRY}


def test_push_then_pull_in_a_fresh_process_gives_identical_outputs(pushed):
    _, info, loaders = pushed
    assert set(info) == {config_class.model_type.removeprefix("hf_mae_") for config_class, _, _ in REGISTRY}
    report = finish(loaders["pull"])
    for short, modules in report.items():  # the registered hf_mae classes, not remote code
        assert all(module.startswith("hf_mae.") for module in modules), (short, modules)


def test_remote_code_loads_where_hf_mae_cannot_be_imported(pushed):
    _, info, loaders = pushed
    report = finish(loaders["remote_code"])
    assert set(report) == set(info)
    for short, modules in report.items():
        assert modules and all(module.startswith("transformers_modules.") for module in modules), (short, modules)


def test_trainer_pushes_checkpoints_and_hf_mae_push_publishes_the_run(pushed):
    _, info, _ = pushed
    for short, item in info.items():
        trained = set(item["trained_files"])
        assert {"model.safetensors", "config.json", "last-checkpoint/model.safetensors",
                "last-checkpoint/trainer_state.json"} <= trained, trained
        assert any(f.endswith(".py") for f in trained), trained  # the modeling code travels with the weights
        card = set(item["card_files"])
        expected = {"README.md", "config.json", "model.safetensors", "trainer_state.json", "loss_curve.png"}
        if card_spec(f"hf_mae_{short}").reconstruct is not None:
            expected.add("reconstructions.png")
        assert expected <= card, card
        assert not [f for f in card if f.endswith((".bin", ".pt", ".pth")) or f.startswith("checkpoint-")], card
        # the run's processor travels with it: the tokenizer, or the feature extractor
        processor_files = {"AutoTokenizer": {"tokenizer.json", "tokenizer_config.json"},
                           "AutoFeatureExtractor": {"preprocessor_config.json"},
                           None: set()}[hub_clients.FACTORIES[item["config"]].get("processor_auto")]
        assert processor_files <= trained and processor_files <= card, (trained, card)


# -- the protocol, errors included ----------------------------------------------------------------------
def test_protocol_and_errors_through_huggingface_hub(hub, tmp_path):
    assert finish(start_scenario("protocol", tmp_path, hub.url)) == {"ok": True}


def test_validate_yaml_checks_real_things():
    assert validate_card("---\nlicense: apache-2.0\nlibrary_name: transformers\ndatasets: [lab/corn]\n---\n# m") == ([], [])
    assert validate_card("# no metadata")[1] == ["Empty or missing yaml metadata in repo card"]
    errors, _ = validate_card("---\nlicense: apache-2.0\nlanguage: [English]\nbase_model: a/b/c\n"
                              "model-index: [{name: m}]\n---\n")
    assert len(errors) == 3 and any("language" in e for e in errors) and any("base_model" in e for e in errors)
    assert validate_card("---\nlicense: other\nlibrary_name: x\n---\n")[1] == ["license is 'other': add license_name and license_link"]


# -- a server stopped during a push ---------------------------------------------------------------------
class CuttingProxy:
    """A TCP proxy in front of the server. It cuts the connection once during an LFS upload (a network error:
    the client retries) and, during the commit request, kills the server (``on_commit``)."""

    def __init__(self, target_port: int, on_commit):
        self.target_port, self.on_commit = target_port, on_commit
        self.cut_upload = self.cut_commit = False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket):
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            client.close()
            return
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
        buffer, remaining, request, sent = b"", 0, "", 0
        try:
            while data := client.recv(65536):
                while data:
                    if remaining == 0:  # reading the headers of the next request
                        buffer += data
                        if b"\r\n\r\n" not in buffer:
                            data = b""
                            continue
                        head, _, data = buffer.partition(b"\r\n\r\n")
                        upstream.sendall(head + b"\r\n\r\n")
                        buffer, request, sent = b"", head.split(b"\r\n")[0].decode(), 0
                        lengths = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
                        remaining = int(lengths[0].split(b":")[1]) if lengths else 0
                        continue
                    chunk, data = data[:remaining], data[remaining:]
                    upstream.sendall(chunk)
                    remaining, sent = remaining - len(chunk), sent + len(chunk)
                    if sent > 200_000 and request.startswith("PUT") and not self.cut_upload:
                        self.cut_upload = True
                        raise ConnectionAbortedError("network error mid-upload")
                    if sent > 200_000 and "/commit/" in request and not self.cut_commit:
                        self.cut_commit = True
                        self.on_commit()
                        raise ConnectionAbortedError("server killed mid-commit")
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass

    def close(self):
        self.listener.close()


def _serve_cli(root: Path, port: int, *flags: str) -> subprocess.Popen:
    """``hf-mae hub serve`` in its own process; returns once it accepts connections."""
    process = subprocess.Popen([sys.executable, "-m", "hf_mae.cli", "hub", "serve", "--port", str(port),
                                "--root", str(root), *flags], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            assert process.poll() is None, process.stdout.read()
            time.sleep(0.05)
    raise AssertionError("hf-mae hub serve did not start")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_server_killed_during_a_push_shows_nothing_half_written_and_a_retry_succeeds(tmp_path):
    root, port = tmp_path / "root", _free_port()
    server = _serve_cli(root, port)  # hf-mae hub serve, in a process the proxy can kill
    proxy = CuttingProxy(port, on_commit=lambda: os.kill(server.pid, signal.SIGKILL))
    try:
        result = finish(start_scenario("interrupted_push", tmp_path, f"http://127.0.0.1:{proxy.port}"))
        assert proxy.cut_upload and proxy.cut_commit
        assert result["error"], "the push should have failed: the server was killed during the commit"
        server.wait(timeout=10)
    finally:
        proxy.close()
        server.kill()
        server.wait(timeout=10)
    restarted = start_server(str(root), port=port)  # same root: everything before the crash is still there
    try:
        assert not list((root / "tmp").iterdir())  # uploads cut off by the crash are dropped at start
        retried = finish(start_scenario("retry_push", tmp_path, restarted.url))
    finally:
        restarted.shutdown()
        restarted.server_close()
    before = retried["before"]
    assert before["sha"] == result["v1"] and before["files"] == [".gitattributes", "config.json"]
    assert before["config"] == '{"version": 1}' and before["commits"] == [
        "Upload config.json with huggingface_hub", "initial commit"]
    assert retried["after"] == [".gitattributes", "config.json", "model.safetensors", "vocab.txt"]
    assert retried["commits"][0] == "v2" and len(retried["commits"]) == 3


def test_xet_clients_push_to_an_inline_uploads_server_and_get_a_documented_error_otherwise(hub, tmp_path):
    """hf_xet installed, HF_HUB_DISABLE_XET unset: `hf-mae hub serve --inline-uploads` takes the push and gives the
    weights back byte for byte; the default mode refuses the Xet token (the README says which setting to use)."""
    port = _free_port()
    server = _serve_cli(tmp_path / "root", port, "--inline-uploads")
    (tmp_path / "default_endpoint.txt").write_text(hub.url)
    try:
        result = finish(start_scenario("xet_push", tmp_path, f"http://127.0.0.1:{port}", xet=True))
    finally:
        server.kill()
        server.wait(timeout=10)
    assert len(result["sha256"]) == 64
    error = result["default_mode_error"]
    assert error and "501" in error and "xet-write-token" in error, error
    assert "model.safetensors" not in result["default_mode_files"]  # nothing half-pushed
    readme = (ROOT / "README.md").read_text()
    assert "--inline-uploads" in readme and "HF_HUB_DISABLE_XET=1" in readme and "xet-write-token" in readme


def test_dataset_push_to_hub_round_trips(hub, tmp_path):
    """``Dataset.push_to_hub`` (parquet shards, HF_HUB_DISABLE_XET=1) then ``load_dataset`` gives the rows back.

    datasets uploads each shard with ``preupload_lfs_files`` and deletes it before the commit, so the shards
    must travel by LFS (or Xet): with ``--inline-uploads`` (files sent inside the commit) it cannot work."""
    result = finish(start_scenario("dataset_push", tmp_path, hub.url))
    assert result["rows"] == {"smiles": ["CCO", "c1ccccc1", "CC(=O)O"], "value": [0.5, 1.5, 2.5]}
