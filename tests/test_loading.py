"""Loading safety: local_files_only never touches the network; only Qwen3 checkpoints with safetensors load."""

from __future__ import annotations

import json
import shutil
import socket

import pytest

from qwen3_rag_components import Qwen3EmbedEngine, Qwen3RerankEngine


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """An empty Hugging Face cache, and a record of every name lookup or TCP connection attempt (each one fails)."""
    attempts: list[object] = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError(f"test: network access to {address} attempted")

    def refuse_lookup(host, *args, **kwargs):
        attempts.append(host)
        raise socket.gaierror(f"test: name lookup of {host} attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse_lookup)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return attempts


@pytest.mark.parametrize(
    ("engine_class", "model"),
    [(Qwen3RerankEngine, "Qwen/Qwen3-Reranker-0.6B"), (Qwen3EmbedEngine, "Qwen/Qwen3-Embedding-0.6B")],
)
def test_local_files_only_makes_no_network_call(no_network, engine_class, model):
    with pytest.raises(OSError):
        engine_class.from_pretrained(model, device="cpu", local_files_only=True)
    assert no_network == []


def test_checkpoint_without_safetensors_is_refused(reranker_paths, tmp_path):
    folder = tmp_path / "no-safetensors"
    folder.mkdir()
    for file in reranker_paths["tied"].iterdir():
        if file.suffix != ".safetensors":
            (folder / file.name).write_bytes(file.read_bytes())
    with pytest.raises(OSError, match="safetensors"):
        Qwen3RerankEngine.from_pretrained(str(folder), device="cpu", local_files_only=True)


def test_checkpoint_with_another_activation_is_refused(reranker_paths, tmp_path):
    """The engine computes Qwen3's SiLU MLP itself, so a config with another activation must not load silently."""
    folder = shutil.copytree(reranker_paths["tied"], tmp_path / "gelu")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_act": "gelu"}))
    with pytest.raises(ValueError, match=r"has hidden_act='gelu'; this engine runs Qwen3's 'silu'"):
        Qwen3RerankEngine.from_pretrained(str(folder), device="cpu", local_files_only=True)
