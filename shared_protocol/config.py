"""The schema of `swarm.toml`: one file, sections by concern, every default spelled out.

Unknown keys are errors (a typo must not silently fall back to a default), and so are
bad values; `load_config` names the offending key. Secrets never appear here: a channel
section names where to read them (`env:NAME`, `file:/path`; see `secrets`).
"""

from __future__ import annotations

import ipaddress
import math
import re
import tomllib
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from ._base import NonEmpty, ProtocolModel
from .consensus import DEFAULT_DEADLINE_S, DEFAULT_QUORUM, HUMAN_SEAT, RULE_REVIEWERS, valid_quorum
from .decisions import ApprovalThresholds
from .privacy import PrivacyConfig
from .secrets import SECRET_FIELD, SECRET_LITERAL, SecretRef, SecretsConfig, is_credential_variable
from .wake import DiscordConfig, EmailConfig, EscalationConfig, NtfyConfig, TwilioConfig

_DATABASE_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://.*")

DEFAULT_DENIED_PATHS = (".env*", "*.pem", "*.key", "id_rsa*", "id_ed25519*", "id_ecdsa*")
DEFAULT_READ_ONLY_PATHS = (
    ".git",
    # Swarm's and the IDEs' own config, and what editors run when a folder opens (tasks, settings, dev containers)
    "swarm.toml",
    ".mcp.json",
    ".cursor",
    ".claude",
    ".vscode",
    "*.code-workspace",
    ".idea",
    ".devcontainer",
    ".devcontainer.json",
    # what CI, git and the shell run or obey on the host
    ".github",
    ".gitlab-ci.yml",
    ".gitlab",
    ".circleci",
    ".buildkite",
    "Jenkinsfile",
    "bitbucket-pipelines.yml",
    "azure-pipelines.yml",
    "azure-pipelines.yaml",
    ".azure-pipelines",
    ".travis.yml",
    ".drone.yml",
    ".woodpecker*",
    "appveyor.yml",
    ".appveyor.yml",
    ".pre-commit-config.yaml",
    ".husky",
    "lefthook.yml",
    "lefthook.yaml",
    "lefthook-local.yml",
    ".lefthook*",
    ".envrc",
    ".gitattributes",
    ".gitmodules",
    # what package managers obey when the host installs or runs scripts
    ".npmrc",
    ".yarnrc",
    ".yarnrc.yml",
    ".pnpmfile.cjs",
    "pip.conf",
    ".pypirc",
    # what build tools on the host run: cargo's runner and rustc wrapper, yarn's checked-in release and plugins (its
    # cache and install state stay writable), the Gradle and Maven wrappers
    ".cargo",
    ".yarn/releases",
    ".yarn/plugins",
    "gradle/wrapper",
    ".mvn",
    # which paths count as build artifacts (uncounted): not the agent's to widen
    ".gitignore",
)


class WorkspaceConfig(ProtocolModel):
    path: str = Field(
        default="", description="Absolute workspace path; empty: --workspace, else the current directory."
    )
    max_read_bytes: int = Field(default=1024 * 1024, gt=0)
    max_write_bytes: int = Field(default=1024 * 1024, gt=0)


class LimitsConfig(ProtocolModel):
    max_files_per_action: int = Field(default=10, ge=0)
    max_api_calls_per_action: int = Field(default=1000, ge=0)
    max_usd_per_action: float = Field(default=100.0, ge=0)
    calls_per_minute: int = Field(default=100, ge=0)
    file_mods_per_hour: int = Field(default=50, ge=0)
    usd_per_hour: float = Field(default=10.0, ge=0)
    breaker_consecutive_failures: int = Field(default=5, ge=1)
    breaker_breaches: int = Field(default=3, ge=1, le=256)
    breaker_window_s: int = Field(default=300, ge=1)
    breaker_cooldown_s: int = Field(default=60, ge=1)


class PolicyConfig(ProtocolModel):
    mode: Literal["live", "shadow"] = "live"
    denied_paths: list[str] = Field(default_factory=lambda: list(DEFAULT_DENIED_PATHS))
    read_only_paths: list[str] = Field(default_factory=lambda: list(DEFAULT_READ_ONLY_PATHS))
    approval_min_files: int = Field(default=5, ge=1, description="This many files in one action need consensus.")
    approval_min_usd: float = Field(default=50.0, ge=0, description="This much money in one action needs consensus.")
    human_above_usd: float = Field(default=50.0, ge=0, description="More money than this needs a human.")
    human_below_confidence: float = Field(
        default=0.70, ge=0, le=1, description="A stated confidence below this needs a human."
    )
    approve_irreversible: bool = Field(
        default=False,
        description="Actions Swarm cannot undo (a command's network requests) need an approved decision first.",
    )
    decision_deadline_s: int = Field(
        default=3600,
        gt=0,
        description="Unanswered decisions are denied (expired) after this: silence is never consent.",
    )
    cumulative_window_s: int = Field(
        default=600,
        ge=0,
        description="The approval threshold also holds for the distinct files the body changed within this "
        "window (any of its processes or clients, across restarts), so work split into small actions needs the "
        "approval one action would; 0: per action only.",
    )


DEFAULT_ARTIFACT_PATHS = (
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".tox",
    "*.egg-info",
    "node_modules",
    ".venv",
    "build",
    "dist",
    "target",
    ".coverage",
)
DEFAULT_ENV_DIRS = (".venv", "node_modules")
DEFAULT_SANDBOX_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TZ", "SOURCE_DATE_EPOCH")


class SandboxConfig(ProtocolModel):
    backend: Literal["auto", "bwrap-overlay", "copy"] = Field(
        default="auto", description="auto: the overlay backend, else copy-staging; commands never run unsandboxed."
    )
    toolchain_paths: list[str] = Field(
        default_factory=list[str],
        description="Host paths exposed read-only; empty: system dirs, selected /etc files and the running Python.",
    )
    extra_toolchain_paths: list[str] = Field(default_factory=list[str], description="Added to the toolchain paths.")
    env_allow: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SANDBOX_ENV), description="Environment variables passed to commands."
    )
    default_timeout_s: float = Field(default=120.0, gt=0)
    max_timeout_s: float = Field(default=600.0, gt=0)
    cpu_seconds: int = Field(default=60, gt=0)
    memory_mb: int = Field(default=2048, gt=0)
    max_processes: int = Field(default=256, gt=0)
    max_file_mb: int = Field(default=256, gt=0)
    max_open_files: int = Field(default=1024, gt=0)
    max_write_mb: int = Field(
        default=512,
        gt=0,
        description="What one command may write to the workspace (its staged changes, in memory until applied); "
        "a command that fills it is refused and nothing of it is applied.",
    )
    max_write_inodes: int = Field(
        default=50_000, gt=0, description="Files, directories and deletions one command may stage."
    )
    max_tmp_mb: int = Field(default=512, gt=0, description="Size of a command's private /tmp (in memory).")
    max_tmp_inodes: int = Field(default=50_000, gt=0, description="Files and directories in a command's /tmp.")
    max_held_runs: int = Field(
        default=8, ge=0, description="Staged runs kept for a pending approval at once; the oldest goes first."
    )
    max_held_mb: int = Field(default=1024, ge=0, description="...and the memory they may hold together.")
    max_output_bytes: int = Field(
        default=1_000_000,
        gt=0,
        description="What is kept of each stream of a command (read back with read_command_output); the rest is "
        "dropped and the result says truncated.",
    )
    reply_head_bytes: int = Field(
        default=4096, ge=0, description="What run_command's result shows of each stream from its start..."
    )
    reply_tail_bytes: int = Field(
        default=12_288,
        ge=0,
        description="...and from its end (where a test summary or the last error is); the middle is left out, "
        "marked with where it is, and read back with read_command_output.",
    )
    progress_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="How often a running command reports progress (time, bytes of output) to a client that asked.",
    )
    artifact_paths: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ARTIFACT_PATHS),
        description="Names applied without counting toward the blast radius (git-ignored paths too).",
    )
    staging_dir: str = Field(default="", description="Where staged changes wait; empty: the system temp dir.")
    allowed_domains: list[str] = Field(
        default_factory=list[str],
        description="Hosts a command with network=true may reach through the body's proxy ('*.x' for subdomains, "
        "'host:port' to pin a port, 'preset:pypi' or 'preset:npm' for a package registry's hosts); empty: commands "
        "get no network.",
    )
    pinned_hosts: dict[str, str] = Field(
        default_factory=dict[str, str],
        description="Host (or host:port) -> the address (IP or IP:port) the proxy connects to for it, without DNS. "
        "The only way to reach a loopback, private or link-local address (a local package index); the host must "
        "also be allowed by allowed_domains.",
    )
    python: str = Field(
        default="",
        description="What `python` and `python3` run in the sandbox: a version ('3.12', from pyenv's or the "
        "system's) or an absolute path; empty: what the workspace declares (.python-version, requires-python), "
        "else the system's python3.",
    )
    env_dirs: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ENV_DIRS),
        description="Workspace directories that hold installed dependencies (a virtualenv, node_modules): each "
        "lives in Swarm's state, outside the workspace, mounted there read-write for commands; what a command "
        "writes in it is never applied to the workspace nor counted.",
    )

    @field_validator("allowed_domains")
    @classmethod
    def _known_presets(cls, domains: list[str]) -> list[str]:
        for entry in domains:
            if entry.startswith(PRESET_PREFIX) and entry.removeprefix(PRESET_PREFIX) not in DOMAIN_PRESETS:
                known = ", ".join(PRESET_PREFIX + name for name in DOMAIN_PRESETS)
                raise ValueError(f"unknown preset {entry!r} (known: {known})")
        return domains

    @field_validator("env_allow")
    @classmethod
    def _no_credentials(cls, names: list[str]) -> list[str]:
        credentials = [name for name in names if is_credential_variable(name)]
        if credentials:
            raise ValueError(
                f"{', '.join(credentials)}: a secret provider's credentials are never passed to commands "
                "(VAULT_*, AWS_*, SWARM_TOKEN)"
            )
        return names

    @field_validator("pinned_hosts")
    @classmethod
    def _pins_are_addresses(cls, pins: dict[str, str]) -> dict[str, str]:
        for host, address in pins.items():
            name, _ = split_host_port(host)
            if not _HOST_NAME.fullmatch(name):
                raise ValueError(f"{host!r} is not a host name or address (with an optional :port)")
            ip, _ = split_host_port(address)
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise ValueError(f"{host!r}: {address!r} is not an IP address (or IP:port)") from None
        return pins

    @field_validator("env_dirs")
    @classmethod
    def _plain_relative_dirs(cls, dirs: list[str]) -> list[str]:
        for entry in dirs:
            parts = entry.split("/")
            if not entry or entry.startswith("/") or any(part in ("", ".", "..") for part in parts):
                raise ValueError(f"{entry!r} is not a relative directory inside the workspace (no '..')")
        return dirs

    @model_validator(mode="after")
    def _pinned_hosts_are_allowed(self) -> SandboxConfig:
        allowed = [split_host_port(pattern)[0] for pattern in expand_domains(self.allowed_domains)]
        for host in self.pinned_hosts:
            name = split_host_port(host)[0]
            if not any(name == p or (p.startswith("*.") and name.endswith(p[1:])) for p in allowed):
                raise PydanticCustomError(
                    CONFIG_REFERENCE,
                    "sandbox.pinned_hosts: '{host}' is pinned but no allowed_domains entry allows it",
                    {"host": host},
                )
        return self


PRESET_PREFIX = "preset:"
DOMAIN_PRESETS: dict[str, tuple[str, ...]] = {
    "pypi": ("pypi.org", "files.pythonhosted.org"),
    "npm": ("registry.npmjs.org",),
}
"""`allowed_domains = ["preset:pypi"]`: the hosts a package registry's installs need, so nobody types them."""

_HOST_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*|[0-9a-f:.]+")


def split_host_port(text: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]:port` or a bare IPv6 literal -> (lower-case host without a trailing dot, port);
    raises `ValueError` on a bad port."""
    text = text.strip().lower()
    port_text = ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":") if rest.startswith(":") else rest
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host = text
    if port_text and not (port_text.isdigit() and 0 < int(port_text) < 65536):
        raise ValueError(f"bad port in {text!r}")
    return host.removesuffix("."), int(port_text) if port_text else None


def expand_domains(domains: list[str]) -> list[str]:
    """`allowed_domains` with each `preset:NAME` replaced by its hosts (an unknown preset raises `KeyError`)."""
    expanded: list[str] = []
    for entry in domains:
        if entry.startswith(PRESET_PREFIX):
            expanded += DOMAIN_PRESETS[entry.removeprefix(PRESET_PREFIX)]
        else:
            expanded.append(entry)
    return expanded


class DomainTerms(ProtocolModel):
    """`[compliance.domains."HOST"]`: what a site's terms say about automated access (HOST, or `*.domain`)."""

    allowed: bool = Field(default=True, description="false: commands may not reach this host at all.")
    automated_access: bool = Field(
        default=True, description="false: the site's terms forbid automated access (no bots): refused."
    )
    max_requests_per_minute: int = Field(
        default=0, ge=0, description="Requests (HTTP requests and HTTPS tunnels) per minute, body-wide; 0: no cap."
    )
    terms_url: str = Field(default="", description="Where the terms say so (shown in a refusal).")


class ComplianceConfig(ProtocolModel):
    """`[compliance]`: what the body's proxy checks beyond the allow-list before a command's request goes out."""

    robots: bool = Field(
        default=True,
        description="Check every plain-HTTP request's path against the host's robots.txt (RFC 9309) for user_agent; "
        "package-registry presets (preset:pypi, preset:npm) are APIs and skip it.",
    )
    user_agent: str = Field(
        default="SwarmBot", pattern=r"^[A-Za-z_-]+$", description="The product token robots.txt rules are matched to."
    )
    robots_ttl_s: int = Field(default=3600, ge=0, le=86_400, description="How long a host's robots.txt is kept.")
    robots_timeout_s: float = Field(default=10.0, gt=0, le=120, description="Fetching one robots.txt.")
    max_exchanges_per_tunnel: int = Field(
        default=100,
        ge=2,
        description="An HTTPS tunnel counts as one API call, and must carry TLS; it is cut after the client has "
        "sent this many TLS application-data records (each request needs one; an upload one per 16 KiB), so one "
        "keep-alive connection cannot carry unlimited requests, pipelined or not (the name is older).",
    )
    max_tunnel_s: float = Field(default=300.0, gt=0, description="...and after this many seconds.")
    domains: dict[str, DomainTerms] = Field(
        default_factory=dict[str, DomainTerms],
        description="Per host (or `*.domain`): its terms (allowed, automated_access, max_requests_per_minute).",
    )

    @field_validator("domains")
    @classmethod
    def _host_names(cls, domains: dict[str, DomainTerms]) -> dict[str, DomainTerms]:
        for name in domains:
            if not _HOST_NAME.fullmatch(name.removeprefix("*.")):
                raise ValueError(f"{name!r} is not a host name or '*.domain'")
        return domains


class SnapshotsConfig(ProtocolModel):
    interval_s: int = Field(
        default=3600, ge=0, description="A running body snapshots its workspace this often; 0: never."
    )
    keep_last: int = Field(default=48, ge=1, description="Retention: the newest N snapshots...")
    keep_daily: int = Field(default=7, ge=0, description="...plus the newest of each of the last N days.")
    exclude: list[str] = Field(
        default_factory=list[str], description="Names or relative paths left out of snapshots (e.g. node_modules)."
    )


class GitConfig(ProtocolModel):
    """`[git]`: the body's git tools (git_status, git_diff, git_log, git_commit, git_push)."""

    push: bool = Field(default=False, description="Allow git_push at all; off: nothing leaves the machine.")
    branch_prefix: str = Field(
        default="swarm",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="git_push pushes only the agent's own branch, `<branch_prefix>/<agent>/...`.",
    )
    timeout_s: float = Field(default=120.0, gt=0, le=3600, description="How long one git command may take.")


class BrainConfig(ProtocolModel):
    """`[brain]`: read by `swarm brain serve` (the brain's own settings model checks the same names)."""

    host: str = Field(default="127.0.0.1", description="Address to listen on; put a TLS proxy in front for others.")
    port: int = Field(default=8765, ge=0, le=65535)
    database_url: str = Field(
        default="",
        description="Where the brain keeps its state: sqlite:///ABSOLUTE/PATH, or memory:// (gone when it stops); "
        "empty: sqlite:///$SWARM_HOME/brain.db. `swarm brain serve --db PATH` means sqlite:///PATH.",
    )
    db: str = Field(
        default="",
        deprecated='`db = PATH` is `database_url = "sqlite:///PATH"`',
        description="The key before database_url: the brain's SQLite file (relative: to the current directory).",
    )
    durability: Literal["power_loss", "crash"] = "power_loss"
    heartbeat_interval_s: float = Field(default=2.0, gt=0, description="How often linked bodies heartbeat.")
    failsafe_s: float = Field(
        default=10.0, gt=0, description="A body that cannot reach the brain this long fails closed."
    )
    decision_deadline_s: int = Field(default=3600, gt=0, description="Unanswered decisions are denied after this.")
    lease_s: int = Field(default=300, gt=0, description="A claimed task is requeued when its lease runs out.")
    keepalive_s: float = Field(default=5.0, gt=0)
    sweep_interval_s: float = Field(default=1.0, gt=0)
    event_buffer: int = Field(default=256, ge=1)
    backup_interval_s: float = Field(
        default=3600.0, ge=0, description="Back up the brain's database this often; 0: never."
    )
    backup_keep: int = Field(default=48, ge=1, description="Backups kept, in backups/ next to the database.")
    audit_retention_days: int = Field(
        default=90, ge=1, le=36_500, description="Days of the bodies' audit events the brain keeps."
    )
    telemetry_retention_days: int = Field(
        default=30, ge=1, le=36_500, description="Days of telemetry (uptime minutes) the brain keeps for its KPIs."
    )
    session_idle_s: int = Field(
        default=1800, gt=0, le=86_400, description="A dashboard login session unused this long ends."
    )
    session_max_s: int = Field(
        default=12 * 3600, gt=0, le=30 * 86_400, description="A dashboard login session ends this long after login."
    )
    session_cookie_secure: Literal["auto", "always", "never"] = Field(
        default="auto", description="The dashboard cookie's Secure flag; auto: when served over https."
    )

    max_request_bytes: int = Field(
        default=64 * 1024, ge=1024, description="The largest request body the brain's API reads (413 beyond it)."
    )
    max_audit_request_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="The largest audit batch a body may ship at once (413 beyond it)."
    )

    public_url: str = Field(
        default="",
        description="The brain's address as the outside sees it (https://brain.example.com): Twilio callbacks and "
        "answer links use it; empty: pages carry no links.",
    )

    @field_validator("database_url")
    @classmethod
    def _is_a_url(cls, url: str) -> str:
        """Only its form: which schemes name an engine, and what each takes, is the brain's to say when it loads."""
        if url and _DATABASE_URL.fullmatch(url) is None:
            raise ValueError("not a database URL (scheme://location: sqlite:///ABSOLUTE/PATH or memory://)")
        return url

    @model_validator(mode="before")
    @classmethod
    def _one_database(cls, data: object) -> object:
        if _names_both_databases(data):
            raise ValueError("set 'brain.database_url' or the older 'brain.db', not both")
        return data


def _names_both_databases(data: object) -> bool:
    if not isinstance(data, dict):
        return False
    keys = cast(dict[str, object], data)
    return bool(keys.get("db")) and bool(keys.get("database_url"))


class AuditConfig(ProtocolModel):
    durability: Literal["power_loss", "crash"] = Field(
        default="power_loss",
        description="power_loss: journal, database and anchor fsync'd; crash: nothing fsync'd before a reply "
        "(an event survives the body's crash, not the machine's).",
    )
    retention_days: int = Field(default=90, ge=1, le=36_500, description="Days of audit events a body keeps.")


ProviderName = Literal["openai", "anthropic", "scripted"]
"""openai: Chat Completions (OpenAI, or any compatible server at `base_url`); anthropic: Messages; scripted: replay
a JSONL file of model turns (no network)."""

AgentRole = Literal["worker", "reviewer", "captain"]

RUNNER_TOOLS = ("next_task", "report_outcome")
"""Body tools only the runner calls: never offered to a model, so never in an agent's `tools`."""

CONFIG_REFERENCE = "config_reference"
"""The pydantic error type of a key naming an entry that does not exist (an agent's `model`); its message names
the key itself."""

CONFIG_RULE = "config_rule"
"""The pydantic error type of a table whose keys do not fit together (a scripted model with no script)."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_HTTP_URL = re.compile(r"https?://[^\s/]+(/\S*)?")


AGENT_NAME_RULE = "an agent name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
"""What `is_agent_name` checks, said to whoever gave a bad one (`[[agents]] name`, `swarm brain token create
--agent`)."""


def _is_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def is_agent_name(name: str) -> bool:
    """Whether `name` may name an agent: `[[agents]] name`, and the agent a brain token is bound to."""
    return _is_name(name)


class ModelConfig(ProtocolModel):
    """`[models.NAME]`: one model an agent can use. Prices come from genai-prices unless set here."""

    provider: ProviderName
    model: NonEmpty = Field(
        description="The provider's model name (for scripted: the model whose prices its turns cost)."
    )
    base_url: str = Field(
        default="",
        description="An OpenAI-compatible server (Ollama http://localhost:11434/v1, vLLM, llama.cpp) or a proxy; "
        "empty: the provider's own API.",
    )
    api_key: SecretRef = Field(default="", description="env:NAME or file:/path; empty: none (a local server).")
    script: str = Field(default="", description="scripted only: the JSONL file of turns (relative: to the config).")
    timeout_s: float = Field(default=300.0, gt=0, description="One try of a call: connect, send, answer.")
    max_attempts: int = Field(default=4, ge=1, le=20, description="Tries per call (429, 5xx, timeouts).")
    retry_budget_s: float = Field(
        default=120.0, ge=0, description="No retry wait ends later than this after the first try."
    )
    max_output_tokens: int = Field(default=8192, gt=0, description="Asked of every call, and reserved before it.")
    input_usd_per_mtok: float | None = Field(default=None, ge=0, description="Overrides genai-prices' price.")
    output_usd_per_mtok: float | None = Field(default=None, ge=0)
    cache_read_usd_per_mtok: float | None = Field(default=None, ge=0)
    cache_write_usd_per_mtok: float | None = Field(default=None, ge=0)

    @field_validator("base_url")
    @classmethod
    def _is_http(cls, url: str) -> str:
        if url and _HTTP_URL.fullmatch(url) is None:
            raise ValueError("not an http(s) URL")
        return url

    @model_validator(mode="after")
    def _fits_its_provider(self) -> ModelConfig:
        if self.provider == "scripted":
            if not self.script:
                raise PydanticCustomError(CONFIG_RULE, "a scripted model needs 'script' (a JSONL file of turns)")
            if self.base_url or self.api_key:
                raise PydanticCustomError(CONFIG_RULE, "a scripted model makes no calls: no 'base_url' or 'api_key'")
        elif self.script:
            raise PydanticCustomError(
                CONFIG_RULE, "'script' is for scripted models, not {provider}", {"provider": self.provider}
            )
        elif not self.api_key and not self.base_url:
            env = "OPENAI_API_KEY" if self.provider == "openai" else "ANTHROPIC_API_KEY"
            raise PydanticCustomError(
                CONFIG_RULE,
                "{provider}'s own API needs 'api_key' (e.g. api_key = \"env:{env}\")",
                {"provider": self.provider, "env": env},
            )
        return self


class AgentConfig(ProtocolModel):
    """`[[agents]]`: one autonomous agent."""

    name: str = Field(description="Unique; letters, digits, '.', '_', '-'.")
    role: AgentRole = "worker"
    model: NonEmpty = Field(description="The NAME of a [models.NAME] entry.")
    prompt: NonEmpty = Field(description="The system prompt.")
    tools: list[NonEmpty] = Field(min_length=1, description="The body tools the model is offered (a subset).")
    max_steps: int = Field(default=50, ge=1, description="Model turns per task before it ends failed.")
    max_usd_per_task: float = Field(default=2.0, gt=0, description="LLM spend per task before it ends failed.")
    max_task_s: float = Field(
        default=1800.0, gt=0, le=86_400, description="Wall-clock seconds a task may take (parked time not counted)."
    )
    token: SecretRef = Field(
        default="",
        description="The agent's token for the brain (env:NAME or file:/path): a worker's body token, a reviewer's or "
        "captain's reviewer token; empty: SWARM_TOKEN.",
    )
    pairing: SecretRef = Field(
        default="",
        description="The pairing secret of a paired token (`swarm brain token create --pair`; env:NAME or "
        "file:/path), given to the agent's bodies as SWARM_PAIRING; empty: SWARM_PAIRING, if set.",
    )

    @field_validator("name")
    @classmethod
    def _is_a_name(cls, name: str) -> str:
        if not is_agent_name(name):
            raise ValueError(AGENT_NAME_RULE)
        return name

    @field_validator("tools")
    @classmethod
    def _model_tools_only(cls, tools: list[str]) -> list[str]:
        runner_only = sorted(set(tools) & set(RUNNER_TOOLS))
        if runner_only:
            raise ValueError(f"{', '.join(runner_only)}: the runner's own tools are never offered to a model")
        if len(set(tools)) != len(tools):
            raise ValueError("a tool is listed twice")
        return tools


class RolloutConfig(ProtocolModel):
    """`[rollout]`: how an agent's logic version goes from shadow to live (readiness, canary steps)."""

    shadow_days: float = Field(
        default=7,
        ge=0,
        description="Days a logic version works in shadow (from its first shadow task) before it may go on: "
        "readiness for it, and its first canary step (a fraction is fine: 0.001 is 86.4 s).",
    )
    min_shadow_tasks: int = Field(default=20, ge=0, description="...and the shadow runs it must have completed.")
    readiness_max_age_s: int = Field(
        default=86_400,
        gt=0,
        description="The brain lets live work through for this long after a passing `swarm readiness` report.",
    )
    steps: list[int] = Field(
        default_factory=lambda: [1, 10, 50, 100],
        min_length=1,
        description="Canary steps: the percent of operations a new logic version takes, step by step.",
    )
    min_tasks_per_step: int = Field(default=20, ge=1, description="Tasks at a step before it can be promoted.")

    @field_validator("steps")
    @classmethod
    def _rising_to_100(cls, steps: list[int]) -> list[int]:
        if any(step <= 0 or step > 100 for step in steps):
            raise ValueError("each step is a percent from 1 to 100")
        if any(later <= earlier for earlier, later in pairwise(steps)):
            raise ValueError("steps must rise")
        if steps[-1] != 100:
            raise ValueError("the last step is 100 (every operation)")
        return steps


class ConsensusConfig(ProtocolModel):
    """`[consensus]`: who votes on a decision at the consensus thresholds, and how many settle it."""

    panel: list[str] = Field(
        default_factory=lambda: list(RULE_REVIEWERS),
        min_length=1,
        description="The seats: the brain's rule reviewers (rules:cost, rules:files, rules:paths, rules:confidence, "
        "rules:value), the names of agents whose role is reviewer or captain, and human:LABEL (a human's token label).",
    )
    quorum: int = Field(
        default=DEFAULT_QUORUM, ge=1, description="Approvals (or denials) that settle it: more than half the panel."
    )
    deadline_s: int = Field(
        default=DEFAULT_DEADLINE_S,
        gt=0,
        le=7 * 86_400,
        description="Seconds the panel has; then each step of the deadlock ladder (captain agent, human captain) "
        "has as long again, and no answer means denied.",
    )

    @field_validator("panel")
    @classmethod
    def _known_seats(cls, panel: list[str]) -> list[str]:
        for seat in panel:
            if seat.startswith("rules:"):
                if seat not in RULE_REVIEWERS:
                    raise ValueError(f"{seat!r}: no such rule reviewer (known: {', '.join(RULE_REVIEWERS)})")
            elif seat.startswith(HUMAN_SEAT):
                if not seat[len(HUMAN_SEAT) :].strip():
                    raise ValueError(f"{seat!r}: a human seat names a token label (human:LABEL)")
            elif not is_agent_name(seat):
                raise ValueError(f"{seat!r}: {AGENT_NAME_RULE}")
        if len(set(panel)) != len(panel):
            raise ValueError("a seat is listed twice")
        return panel

    @model_validator(mode="after")
    def _quorum_settles_one_way(self) -> ConsensusConfig:
        if not valid_quorum(len(self.panel), self.quorum):
            raise PydanticCustomError(
                CONFIG_REFERENCE,
                "consensus.quorum: {quorum} must be more than half the panel's {seats} seats and at most all of them",
                {"quorum": self.quorum, "seats": len(self.panel)},
            )
        return self


class MetricsConfig(ProtocolModel):
    """`[metrics]`: the brain's Prometheus endpoint, `GET /metrics`."""

    public: bool = Field(
        default=False,
        description="Serve GET /metrics without a token (for a scraper on a private network); "
        "false: an approver's or captain's token.",
    )


AnomalyMetric = Literal[
    "tool_calls_per_min",
    "refusals_per_min",
    "file_changes_per_min",
    "spend_usd_per_hour",
    "llm_errors_per_min",
    "task_failure_rate",
]
"""What the brain's anomaly detector watches, per agent (README "Anomaly detection" says where each comes from)."""


class AnomalyFloors(ProtocolModel):
    """`[anomaly.floors]`: how far above its baseline median a metric must be, at least, before it counts, in the
    metric's own unit: a flat (or quiet) baseline has a spread near zero, and noise must not page anyone."""

    tool_calls_per_min: float = Field(default=20.0, gt=0, description="Tool calls a minute above the median.")
    refusals_per_min: float = Field(default=5.0, gt=0, description="Refused tool calls a minute above the median.")
    file_changes_per_min: float = Field(default=10.0, gt=0, description="Files changed a minute above the median.")
    spend_usd_per_hour: float = Field(default=10.0, gt=0, description="US dollars an hour above the median.")
    llm_errors_per_min: float = Field(default=2.0, gt=0, description="Failed model calls a minute above the median.")
    task_failure_rate: float = Field(
        default=0.7, gt=0, le=1, description="Failed share of the agent's last tasks above the median."
    )


class AnomalyConfig(ProtocolModel):
    """`[anomaly]`: the brain pauses an agent whose activity leaves its own rolling baseline."""

    enabled: bool = Field(default=True, description="Run the detector (false: agents are paused by humans only).")
    sigma: float = Field(
        default=3.0, gt=0, description="A value this many robust standard deviations above its median pauses."
    )
    interval_s: float = Field(
        default=300.0, ge=1, description="Seconds per sample: the detector closes a bin and evaluates this often."
    )
    window: int = Field(default=48, ge=3, description="Samples (of an agent's active intervals) in the baseline.")
    min_samples: int = Field(default=12, ge=3, description="No verdict on a metric until its baseline has this many.")
    failure_rate_tasks: int = Field(
        default=10, ge=2, description="The task failure rate is over the agent's last this many finished tasks."
    )
    floors: AnomalyFloors = Field(default_factory=AnomalyFloors)

    @model_validator(mode="after")
    def _enough_window(self) -> AnomalyConfig:
        if self.min_samples > self.window:
            raise PydanticCustomError(
                CONFIG_RULE,
                "min_samples ({min}) is more than window ({window})",
                {"min": self.min_samples, "window": self.window},
            )
        return self


class SwarmConfig(ProtocolModel):
    workspace: WorkspaceConfig = Field(default_factory=WorkspaceConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    compliance: ComplianceConfig = Field(default_factory=ComplianceConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    snapshots: SnapshotsConfig = Field(default_factory=SnapshotsConfig)
    git: GitConfig = Field(default_factory=GitConfig)
    brain: BrainConfig = Field(default_factory=BrainConfig)
    escalation: EscalationConfig = Field(default_factory=EscalationConfig)
    discord: DiscordConfig = Field(default_factory=DiscordConfig)
    twilio: TwilioConfig = Field(default_factory=TwilioConfig)
    ntfy: NtfyConfig = Field(default_factory=NtfyConfig)
    email: EmailConfig = Field(default_factory=EmailConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    consensus: ConsensusConfig = Field(default_factory=ConsensusConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    secrets: SecretsConfig = Field(default_factory=SecretsConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    anomaly: AnomalyConfig = Field(default_factory=AnomalyConfig)
    models: dict[str, ModelConfig] = Field(default_factory=dict[str, ModelConfig])
    agents: list[AgentConfig] = Field(default_factory=list[AgentConfig])

    @field_validator("models")
    @classmethod
    def _model_names(cls, models: dict[str, ModelConfig]) -> dict[str, ModelConfig]:
        for name in models:
            if not _is_name(name):
                raise ValueError(f"[models.{name}]: a model name is 1-64 letters, digits, '.', '_' or '-'")
        return models

    @model_validator(mode="after")
    def _secrets_stay_out_of_commands(self) -> SwarmConfig:
        named = {ref.removeprefix("env:") for _, ref in secret_references(self) if ref.startswith("env:")}
        for name in self.sandbox.env_allow:
            if name in named:
                raise PydanticCustomError(
                    CONFIG_REFERENCE,
                    "sandbox.env_allow: '{name}' holds a secret this config reads (env:{name}); it is never passed "
                    "to commands",
                    {"name": name},
                )
        return self

    @model_validator(mode="after")
    def _agents_name_known_models(self) -> SwarmConfig:
        names: set[str] = set()
        for index, agent in enumerate(self.agents):
            if agent.name in names:
                raise PydanticCustomError(
                    CONFIG_REFERENCE,
                    "agents.{index}.name: a second agent named '{name}'",
                    {"index": index, "name": agent.name},
                )
            names.add(agent.name)
            if agent.model not in self.models:
                known = ", ".join(sorted(self.models)) or "none"
                raise PydanticCustomError(
                    CONFIG_REFERENCE,
                    "agents.{index}.model: agent '{agent}' names model '{model}', but no [models.{model}] is defined "
                    "(defined: {known})",
                    {"index": index, "agent": agent.name, "model": agent.model, "known": known},
                )
        roles = {agent.name: agent.role for agent in self.agents}
        for index, seat in enumerate(self.consensus.panel):
            if seat.startswith(("rules:", HUMAN_SEAT)):
                continue
            if roles.get(seat) not in ("reviewer", "captain"):
                why = "no [[agents]] entry has that name" if seat not in roles else f"its role is {roles[seat]}"
                raise PydanticCustomError(
                    CONFIG_REFERENCE,
                    "consensus.panel.{index}: '{seat}' may not sit on the panel ({why}): a seat is an agent whose "
                    "role is reviewer or captain",
                    {"index": index, "seat": seat, "why": why},
                )
        return self


def secret_references(config: BaseModel, prefix: str = "") -> list[tuple[str, str]]:
    """Every secret key set in `config` (or a section of it) and its reference, as `(key, ref)`: `models.fast.api_key`,
    `secrets.vault.token`, ... (found by `SECRET_FIELD` in the field's type, so a new secret key is found too)."""
    found: list[tuple[str, str]] = []
    fields: dict[str, FieldInfo] = type(config).model_fields  # pyright: ignore[reportUnknownMemberType]
    for name, info in fields.items():
        if info.deprecated:
            continue  # (a replaced key: it holds no secret)
        value: object = getattr(config, name)
        key = f"{prefix}{name}"
        if SECRET_FIELD in info.metadata:
            if isinstance(value, str) and value:
                found.append((key, value))
        elif isinstance(value, BaseModel):
            found += secret_references(value, f"{key}.")
        elif isinstance(value, dict):
            for entry, item in cast(dict[str, object], value).items():
                if isinstance(item, BaseModel):
                    found += secret_references(item, f"{key}.{entry}.")
        elif isinstance(value, list):
            for index, item in enumerate(cast(list[object], value)):
                if isinstance(item, BaseModel):
                    found += secret_references(item, f"{key}.{index}.")
    return found


def approval_thresholds(config: SwarmConfig) -> ApprovalThresholds:
    """The approval rules' numbers from a config (the blast radius is the `blocked` row): a body and its brain
    classify a decision alike when they read the same `[limits]` and `[policy]`."""
    limits, policy = config.limits, config.policy
    return ApprovalThresholds(
        blocked_files=limits.max_files_per_action,
        blocked_api_calls=limits.max_api_calls_per_action,
        blocked_usd=limits.max_usd_per_action,
        consensus_files=policy.approval_min_files,
        consensus_usd=policy.approval_min_usd,
        human_usd=policy.human_above_usd,
        human_confidence=policy.human_below_confidence,
    )


class ConfigInvalid(ValueError):
    """The config file is unreadable or has an unknown key or a bad value; the message names it."""


def parse_config(data: dict[str, Any], *, source: str = "swarm.toml") -> SwarmConfig:
    if unbounded := _not_finite(data):
        # TOML has `inf` and `nan`; no setting means them (`failsafe_s = inf` would be a body that never fails closed).
        raise ConfigInvalid(
            f"{source}: " + "; ".join(f"'{key}': not a finite number (got {value})" for key, value in unbounded)
        )
    try:
        # Strict: TOML values are typed, so `true` or "5" for a number is a mistake to name, not to coerce.
        return SwarmConfig.model_validate(data, strict=True)
    except ValidationError as exc:
        problems: list[str] = []
        for err in exc.errors():
            key = ".".join(str(part) for part in err["loc"])
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown key '{key}'")
            elif err["type"] == CONFIG_REFERENCE:
                problems.append(err["msg"])
            elif err["type"] in (SECRET_LITERAL, CONFIG_RULE):
                problems.append(f"'{key}': {err['msg']}")
            else:
                problems.append(f"'{key}': {err['msg']} (got {err.get('input')!r})")
        raise ConfigInvalid(f"{source}: " + "; ".join(problems)) from None


def _not_finite(value: object, key: str = "") -> list[tuple[str, float]]:
    """Every float in `value` (TOML data) that is `inf`, `-inf` or `nan`, with its dotted key."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [(key, value)]
    if isinstance(value, dict):
        items = cast(dict[str, object], value).items()
        return [found for name, item in items for found in _not_finite(item, f"{key}.{name}" if key else name)]
    if isinstance(value, list):
        entries = cast(list[object], value)
        return [found for index, item in enumerate(entries) for found in _not_finite(item, f"{key}.{index}")]
    return []


def load_config(path: Path | None) -> SwarmConfig:
    """Read and validate `swarm.toml`; a missing file (path None) means every default."""
    if path is None:
        return SwarmConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))  # (a BOM, as some Windows editors write)
    except FileNotFoundError:
        raise ConfigInvalid(f"{path}: config file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigInvalid(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, source=str(path))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, BaseModel):
        return _toml_value(value.model_dump())
    if isinstance(value, dict):
        items = cast(dict[str, Any], value).items()
        return "{" + ", ".join(f"{key} = {_toml_value(item)}" for key, item in items) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"  # pyright: ignore[reportUnknownVariableType]
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def render_config(config: SwarmConfig) -> str:
    """The config as TOML with every value written out and each key's description as a comment. `[models.NAME]`
    and `[[agents]]` are written when there are any (an unset price override is left out: TOML has no null)."""
    lines = ["# Swarm configuration. Every default is written out; unknown keys are errors.", ""]
    for section_name in SwarmConfig.model_fields:
        section: object = getattr(config, section_name)
        if isinstance(section, BaseModel):
            lines += _render_table(f"[{section_name}]", section)
        elif isinstance(section, dict):
            entries = cast(dict[str, BaseModel], section)
            for name, entry in entries.items():
                lines += _render_table(f"[{section_name}.{name}]", entry)
        else:
            for entry in cast(list[BaseModel], section):
                lines += _render_table(f"[[{section_name}]]", entry)
    return "\n".join(lines)


def _render_table(header: str, table: BaseModel) -> list[str]:
    lines = [header]
    subtables: list[str] = []
    fields: dict[str, FieldInfo] = type(table).model_fields  # pyright: ignore[reportUnknownMemberType]
    for key, field in fields.items():
        if field.deprecated:
            continue  # still read, no longer written
        value = getattr(table, key)
        if value is None:
            continue
        if isinstance(value, BaseModel):  # (`[secrets.vault]`: a table of its own, after the parent's keys)
            subtables += _render_table(f"{header[:-1]}.{key}]", value)
            continue
        if field.description:
            lines.append(f"# {field.description}")
        lines.append(f"{key} = {_toml_value(value)}")
    lines.append("")
    return lines + subtables
