"""Oracle settings: one pydantic-settings model read from `SHARD_*` variables and CLI flags."""

from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def default_database_url() -> str:
    """A SQLite file in the user's data directory: the embedded default, no server."""
    return f"sqlite:///{Path.home() / '.local' / 'share' / 'shard' / 'shard.db'}"


def default_calibration_cache() -> str:
    return str(Path.home() / ".cache" / "shard" / "decode-timings.json")


class OracleSettings(BaseSettings):
    """Everything `shard oracle` can be told; each field is also `SHARD_<NAME>` in the env."""

    model_config = SettingsConfigDict(env_prefix="SHARD_", extra="ignore")

    model: Path | None = Field(
        default=None,
        description="GGUF file to serve; the embedded Gemma 3 270M when not given",
    )
    served_model_name: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "extra names the model answers to (repeatable; comma-separated in the environment), "
            "e.g. llama-3-70b-bitnet"
        ),
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["*"],
        description=(
            "origins whose web pages may call the API (CORS; repeatable, comma-separated in the "
            "environment, empty for none)"
        ),
    )
    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=8000, ge=0, le=65535, description="port to listen on")
    n_ctx: int = Field(
        default=2048, ge=64, description="context length of one sequence (prompt + completion)"
    )
    threads: int = Field(
        default=0,
        ge=0,
        description="llama.cpp CPU threads; 0: all cores, less one for each CPU thread of a "
        "scout drafting on this machine while it is connected (at most half of them)",
    )
    n_gpu_layers: int | None = Field(
        default=None,
        ge=-1,
        description="model layers on the GPU, -1 for all; default: all when llama.cpp was "
        "built with a GPU backend (CUDA, Metal, Vulkan, ...), else 0",
    )
    main_gpu: int = Field(default=0, ge=0, description="the GPU that holds the model")
    parallel: int = Field(
        default=8, ge=1, le=64, description="sequences decoded together in one batch"
    )
    n_batch: int = Field(
        default=512, ge=32, description="most prompt tokens fed to one decode step"
    )
    max_queue: int = Field(
        default=64, ge=0, description="requests that may wait for a free sequence before 503"
    )
    max_request_mb: int = Field(
        default=16, ge=1, description="largest request body in MiB; a larger one is a 413"
    )
    chat_template: str | None = Field(
        default=None,
        description="built-in llama.cpp template name, Jinja text, or a file holding Jinja text",
    )
    log_level: str = Field(default="info", description="uvicorn and shard log level")
    database_url: str = Field(
        default_factory=default_database_url,
        description="SQLAlchemy URL of the store: a SQLite file by default, or postgresql://...",
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="admin key to register at start (environment only: SHARD_API_KEY)",
    )
    completion_retention_days: int = Field(
        default=30, ge=0, description="days stored completions are kept; 0 keeps them forever"
    )
    rate_limit_storage_url: str = Field(
        default="memory://",
        description="where rate-limit counters live: memory:// or redis://host:port",
    )
    rate_limit_chat: str = Field(
        default="10/minute", description="chat requests per key ('off' to disable)"
    )
    rate_limit_scouts: str = Field(default="30/minute", description="scout requests per key")
    rate_limit_system: str = Field(default="100/minute", description="system requests per key")
    rate_limit_scout_connects: str = Field(
        default="20/minute",
        description="scout connections per key (each reconnect counts; refused with 1013)",
    )
    metrics_require_admin: bool = Field(
        default=False, description="make GET /metrics need an admin key"
    )
    rate_limit_restart: str = Field(default="10/hour", description="restarts per key")
    draft_max: int = Field(
        default=16, ge=0, le=64, description="most draft tokens verified per sequence per step"
    )
    ngram_drafts: bool = Field(
        default=True, description="draft from the context itself (n-gram prompt lookup)"
    )
    calibration_cache: str = Field(
        default_factory=default_calibration_cache,
        description=(
            "file keeping the decode timings measured at start, so a restart with the same "
            "model and settings skips measuring them ('off' to measure every time)"
        ),
    )
    prefix_cache: bool = Field(
        default=True,
        description=(
            "reuse the cached prompt prefix a free sequence still holds (multi-turn chats, "
            "shared system prompts); on only where drafts are exact for the model"
        ),
    )
    prefix_cache_tokens: int | None = Field(
        default=None,
        ge=1,
        description=(
            "most prompt tokens free sequences keep cached, least recently used dropped first; "
            "at least --n-ctx, one whole prompt (default: all that --parallel sequences of "
            "--n-ctx hold)"
        ),
    )
    draft_min_acceptance: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="below this recent acceptance rate a scout's drafts are not verified",
    )

    scout_deadline_ms: int = Field(
        default=1000,
        ge=10,
        description="how long a scout has to answer work before it counts as missed",
    )
    scout_max_misses: int = Field(
        default=8, ge=1, description="missed deadlines in a row before a scout is dropped"
    )
    scout_min_acceptance: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="a scout whose drafts are accepted less often is dropped (after 64 tokens)",
    )
    scouts_per_request: int = Field(
        default=1, ge=1, le=16, description="scouts drafting for each sequence"
    )
    golden_ticket_rate: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="share of the live sequences a scout is given that also give it a phantom "
        "sequence (golden tickets that look like live work)",
    )
    ban_threshold: float = Field(
        default=0.3, ge=0.0, le=1.0, description="reputation below which a scout key is banned"
    )
    ban_after_tickets: int = Field(
        default=10, ge=1, description="golden tickets a scout key is judged on before a ban"
    )
    ban_seconds: int = Field(default=3600, ge=0, description="how long a ban lasts; 0 is for good")
    rate_limit_chat_scout_tier: str = Field(
        default="60/minute", description="chat requests per key for keys whose scouts contribute"
    )
    scout_tier_min_tokens: int = Field(
        default=100,
        ge=0,
        description="accepted draft tokens in the window that earn a key the scout tier (0: off)",
    )
    scout_tier_window_minutes: int = Field(
        default=60, ge=1, description="how far back scout contributions count"
    )
    drain_timeout: float = Field(
        default=60.0, ge=0, description="seconds a restart waits for running requests to finish"
    )

    @field_validator("served_model_name", "allowed_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """'a, b' is two names; blanks are dropped, so '' (or `--allowed-origins ''`) is none."""
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list):
            named = (v.strip() if isinstance(v, str) else v for v in value)
            return [name for name in named if name != ""]
        return value

    @model_validator(mode="after")
    def _prefix_cache_holds_a_prompt(self) -> Self:
        """A cache that cannot keep one whole prompt would drop every prompt it is given."""
        tokens = self.prefix_cache_tokens
        if tokens is not None and self.prefix_cache and tokens < self.n_ctx:
            raise ValueError(
                f"--prefix-cache-tokens {tokens} is too small to hold one prompt of up to "
                f"--n-ctx {self.n_ctx} tokens: give at least {self.n_ctx}, or turn the cache "
                "off with --no-prefix-cache"
            )
        return self


class ScoutSettings(BaseSettings):
    """Everything `shard scout` can be told; each field is also `SHARD_SCOUT_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="SHARD_SCOUT_", extra="ignore")

    oracle: str = Field(
        default="http://127.0.0.1:8000", description="the oracle's base URL (http:// or https://)"
    )
    key: str | None = Field(default=None, description="API key the scout joins with")
    draft_model: Path | None = Field(
        default=None,
        description="GGUF draft model with the oracle's tokenizer; the embedded one by default",
    )
    scout_id: str | None = Field(
        default=None, description="a stable name for this scout; host name and a suffix if not"
    )
    threads: int = Field(
        default=0,
        ge=0,
        description="llama.cpp CPU threads; 0: all cores, or 1 when the oracle runs on this "
        "machine (which then decodes with one fewer, if its own --threads was not given; on "
        "fewer than 10 cores the scout then does not start unless given --threads)",
    )
    idle_priority: bool = Field(
        default=False,
        description="draft only on CPU time nothing else wants (Linux SCHED_IDLE), for a "
        "machine used for other work too",
    )
    n_gpu_layers: int | None = Field(
        default=None,
        ge=-1,
        description="model layers on the GPU, -1 for all; default: all when llama.cpp was "
        "built with a GPU backend (CUDA, Metal, Vulkan, ...), else 0",
    )
    main_gpu: int = Field(default=0, ge=0, description="the GPU that holds the model")
    slots: int = Field(default=8, ge=1, le=64, description="sequences whose state is kept")
    n_ctx: int = Field(default=2048, ge=64, description="context length of one sequence")
    reconnect_max_s: float = Field(
        default=30.0, gt=0, description="longest wait between reconnect attempts"
    )
    added_latency_ms: int = Field(
        default=0, ge=0, description="testing aid: delay every draft by this long (slow network)"
    )
    hostile: Literal["random", "corrupt"] | None = Field(
        default=None,
        description="testing aid: 'random' answers work with random token ids, 'corrupt' "
        "with honest drafts in which every fourth position's token is wrong",
    )
    log_level: str = Field(default="info", description="log level")
