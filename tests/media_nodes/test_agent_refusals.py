"""The media node agent's settings, refused before anything starts: node ids, missing
settings, TLS. The agent against a real RabbitMQ and coturn is in tests/e2e."""

from __future__ import annotations

from pathlib import Path

import pytest

from konsil.media_nodes.agent import AgentError, NodeAgent, main
from konsil.media_nodes.coturn import CoturnConfig, CoturnError

BROKER = "amqp://guest:guest@127.0.0.1:1/%2F"  # never reached: everything here is refused first


def test_bad_node_ids_and_empty_settings_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(AgentError, match="node id"):
        NodeAgent("eu", "Bad_Node", BROKER, "k" * 20, "s" * 20, "h", "127.0.0.1", 3478, (50000, 50010))
    config = tmp_path / "konsil.toml"
    config.write_text(
        "[[regions]]\n"
        'id = "eu"\n'
        'jurisdiction = "EU"\n'
        'public_url = "http://127.0.0.1:1"\n'
        'listen = "127.0.0.1:1"\n'
        'database = "sqlite:///x.db"\n'
        'internal_secret = "0123456789abcdef"\n'
        f'broker_url = "{BROKER}"\n'
        'turn_secret = "0123456789abcdefgh"\n'
    )
    assert main(["run", "--region", "eu", "--node-id", "n1", "--config", str(config)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "konsil media-node: regions.eu.media_node_key: missing (needed to run a media node)"
    )
    assert main(["run", "--region", "us", "--node-id", "n1", "--config", str(config)]) == 2
    assert "no region with id 'us'" in capsys.readouterr().err


def test_tls_needs_a_certificate_and_adds_a_turns_url(tmp_path: Path) -> None:
    with pytest.raises(CoturnError, match="tls_cert_file"):
        CoturnConfig("127.0.0.1", 3478, "s" * 20, tls_port=5349)
    with pytest.raises(CoturnError, match="not a readable file"):
        CoturnConfig("127.0.0.1", 3478, "s" * 20, tls_port=5349, tls_cert_file="/nope.crt", tls_key_file="/nope.key")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    with pytest.raises(CoturnError, match="TLS port"):
        CoturnConfig("127.0.0.1", 3478, "s" * 20, tls_port=3478, tls_cert_file=str(cert), tls_key_file=str(key))
    config = CoturnConfig("127.0.0.1", 3478, "s" * 20, tls_port=5349, tls_cert_file=str(cert), tls_key_file=str(key))
    text = config.render(tmp_path)
    assert "tls-listening-port=5349" in text and f"cert={cert}" in text and "no-tlsv1_1" in text
    assert "no-tls\n" not in text and "no-dtls" in text
    assert config.turn_urls("relay.example")[-1] == "turns:relay.example:5349?transport=tcp"
    plain = CoturnConfig("127.0.0.1", 3478, "s" * 20)
    assert "no-tls\n" in plain.render(tmp_path) and len(plain.turn_urls("relay.example")) == 2
