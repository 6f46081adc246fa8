"""The one settings object of the node.

Loaded once at start-up, in increasing precedence: built-in defaults; the TOML file
(``--config``, or found as :mod:`node.locations` says; ``conf/node.example.toml``
documents every key; relative paths in it count from its folder); the catalog, i.e. the
node's own AE title and DIMSE port as an admin set them over REST (``PUT /config/ae``,
the ``node_config`` table), when the caller passes a reader for it (the ``precedent``
command does); ``PRECEDENT_*`` environment variables (nested with ``__``:
``PRECEDENT_NODE__AE_TITLE``); command-line flags. Nothing is read at import time:
:func:`load_settings` is called by the command line and the result is passed down;
:func:`catalog_notes` says what the catalog decided, for the start-up log.

The sections, the sources and their order are kept in this one module (a little over
the house's ~350 lines) so that the whole precedence can be read in one place.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from database import DialectValues, dialect_for, redact
from indexer.embedder import DEFAULT_MODEL, EnginePrecisionValues, EngineValues
from node.errors import SettingsError
from node.locations import DATA_DIR_ENV, default_data_dir

__all__ = [
    "CATALOG_KEYS",
    "DEFAULT_MODEL",
    "BackfillSettings",
    "CatalogReader",
    "DuplicatePolicyValues",
    "HttpSettings",
    "IndexSettings",
    "IndexerSettings",
    "KosSettings",
    "LogLevelValues",
    "ModelSettings",
    "NodeSettings",
    "RetrievalSettings",
    "Settings",
    "TlsSettings",
    "WorkerSettings",
    "catalog_notes",
    "load_settings",
    "location_notes",
    "validate_ae_title",
]

#: the ``[node]`` settings the catalog may hold (``PUT /config/ae``)
CATALOG_KEYS = ("ae_title", "dimse_port")
#: reads the catalog's ``node_config`` (key → value) given the catalog's target
CatalogReader = Callable[[str | Path], Mapping[str, str]]
_AE_TITLE = re.compile(r"^[\x21-\x5b\x5d-\x7e](?:[\x20-\x5b\x5d-\x7e]{0,14}[\x21-\x5b\x5d-\x7e])?$")


class DuplicatePolicyValues(str, Enum):
    """What happens when an instance arrives whose SOP Instance UID is stored already."""

    KEEP_FIRST = "keep_first"  #: answer success, keep the stored bytes (PACS behaviour)
    REPLACE = "replace"  #: overwrite the bytes and re-index
    REJECT = "reject"  #: answer 0xA700-range failure "duplicate" (0x0111 is for N-CREATE)


class LogLevelValues(str, Enum):
    """How much the node logs (patient names only at DEBUG)."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


def validate_ae_title(value: str) -> str:
    """Return ``value`` when it is a valid AE title (1-16 printable chars, no backslash)."""
    if not _AE_TITLE.match(value):
        raise ValueError(
            f"{value!r} is not a valid AE title: use 1 to 16 printable ASCII characters, "
            "no backslash, no leading or trailing space"
        )
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsSettings(_Section):
    """TLS on the DIMSE port (off by default)."""

    enabled: bool = False
    cert_file: Path | None = None
    key_file: Path | None = None
    #: when set, callers must present a certificate signed by this CA
    ca_file: Path | None = None

    @model_validator(mode="after")
    def _check_files(self) -> TlsSettings:
        if self.enabled and (self.cert_file is None or self.key_file is None):
            raise ValueError("cert_file and key_file must be set when enabled is true")
        for name in ("cert_file", "key_file", "ca_file"):
            path = getattr(self, name)
            if self.enabled and path is not None and not Path(path).is_file():
                raise ValueError(f"{name} {path} does not exist")
        return self


class NodeSettings(_Section):
    """The DIMSE side and the storage."""

    ae_title: str = "PRECEDENT"
    host: str = "0.0.0.0"
    dimse_port: int = Field(11112, ge=1, le=65535)
    #: default: ``$XDG_DATA_HOME/precedent`` (see :mod:`node.locations`)
    data_dir: Path = Field(default_factory=default_data_dir)
    max_associations: int = Field(16, ge=1, le=1000)
    #: connections from one host still negotiating (before A-ASSOCIATE-AC); more are closed
    max_pending_per_host: int = Field(8, ge=1, le=1000)
    #: accept any calling AE title (for a first try-out); off in production
    allow_any_source: bool = False
    duplicate_policy: DuplicatePolicyValues = DuplicatePolicyValues.KEEP_FIRST
    #: refuse new associations and answer 0xA700 below this much free disk space
    free_space_reserve_mb: int = Field(512, ge=0)
    #: a study is stable after this many seconds without a new instance
    stable_after_s: float = Field(60.0, gt=0)
    #: seconds an idle association is kept (ACSE/DIMSE/network timeouts)
    timeout_s: float = Field(60.0, gt=0)
    tls: TlsSettings = TlsSettings()

    @field_validator("ae_title")
    @classmethod
    def _check_ae(cls, v: str) -> str:
        return validate_ae_title(v)

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return Path(v).expanduser().absolute()


class HttpSettings(_Section):
    """The REST side (DICOMweb and the similar-case extension)."""

    #: loopback by default: a try-out node is reachable from its own machine only
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    #: bearer token for read routes; unset means the REST API is open for reading
    read_token: str | None = None
    #: bearer token for the admin routes and deletion; unset: the node makes one at first
    #: start and keeps it in ``data_dir/admin-token`` (readable by its owner only)
    admin_token: str | None = None
    cors_origins: list[str] = []
    #: the public base URL used in RetrieveURL attributes; default from the request
    public_url: str | None = None
    #: the largest STOW-RS request body, in bytes (413 beyond); each part is held in
    #: memory until it is stored
    max_request_bytes: int = Field(2 * 1024**3, ge=1)
    #: the most pixel values one similar-case upload may decode to (width × height ×
    #: samples, × frames for DICOM; 413 beyond); twice this may be decoding at once
    max_upload_pixels: int = Field(50_000_000, ge=1)


class ModelSettings(_Section):
    """The embedding model (any open_clip reference)."""

    #: a built-in open_clip architecture, ``hf-hub:…`` or ``local-dir:PATH``
    name: str = DEFAULT_MODEL
    #: a local checkpoint folder (or file) with the weights: works fully offline
    path: Path | None = None
    #: open_clip ``pretrained`` tag for a built-in architecture
    pretrained: str | None = None
    device: str = "auto"
    #: torch's autocast: on CUDA, and on a CPU when ``engine = "torch"``
    precision: str = "auto"
    batch_size: int = Field(32, ge=1, le=4096)
    #: the image tower's engine on a CPU: ``auto`` (OpenVINO when installed and
    #: faithful, else torch), ``openvino`` or ``torch`` (no engine: torch as before)
    engine: str = "auto"
    #: the CPU engine's precision: ``auto`` (int8, then bf16, then torch bf16, each only
    #: when it passes the fidelity check), ``int8``, ``bf16`` or ``fp32``
    engine_precision: str = "auto"

    @field_validator("engine")
    @classmethod
    def _check_engine(cls, v: str) -> str:
        if v not in EngineValues.ALL:
            raise ValueError(f"{v!r} is not an engine: use {', '.join(EngineValues.ALL)}")
        return v

    @field_validator("engine_precision")
    @classmethod
    def _check_engine_precision(cls, v: str) -> str:
        if v not in EnginePrecisionValues.ALL:
            raise ValueError(f"{v!r} is not an engine precision: use "
                             f"{', '.join(EnginePrecisionValues.ALL)}")
        return v

    @model_validator(mode="after")
    def _check_engine_pair(self) -> ModelSettings:
        if self.engine == EngineValues.TORCH and self.engine_precision == "int8":
            raise ValueError("engine_precision = \"int8\" needs engine = \"openvino\" or "
                             "\"auto\"; torch runs fp32 or bf16 (set [model] precision)")
        return self

    @field_validator("device")
    @classmethod
    def _check_device(cls, v: str) -> str:
        if v != "auto" and v != "cpu" and not re.match(r"^cuda(:\d+)?$", v):
            raise ValueError(f"{v!r} is not a device: use auto, cpu, cuda or cuda:N")
        return v

    @field_validator("precision")
    @classmethod
    def _check_precision(cls, v: str) -> str:
        if v not in {"auto", "fp32", "fp16", "bf16"}:
            raise ValueError(f"{v!r} is not a precision: use auto, fp32, fp16 or bf16")
        return v


class IndexSettings(_Section):
    """The usearch HNSW indexes."""

    dtype: str = "f16"
    #: another vector type for some levels, e.g. {instance = "i8", series = "i8"}
    level_dtype: dict[str, str] = {}
    connectivity: int = Field(16, ge=2, le=256)
    expansion_add: int = Field(128, ge=1)
    expansion_search: int = Field(64, ge=1)

    @field_validator("dtype")
    @classmethod
    def _check_dtype(cls, v: str) -> str:
        if v not in {"f32", "f16", "bf16", "i8"}:
            raise ValueError(f"{v!r} is not a vector type: use f32, f16, bf16 or i8")
        return v

    @field_validator("level_dtype")
    @classmethod
    def _check_level_dtype(cls, v: dict[str, str]) -> dict[str, str]:
        if set(v) - {"study", "series", "instance"}:
            raise ValueError(f"{sorted(v)} are not all levels: use study, series or instance")
        return {level: cls._check_dtype(dtype) for level, dtype in v.items()}


class IndexerSettings(_Section):
    """Volume sampling (conf/node.example.toml explains it)."""

    slices_per_series: int = Field(16, ge=0)  #: 0 embeds every slice, as each arrives
    slices_per_modality: dict[str, Annotated[int, Field(ge=0)]] = {}  #: {MR = 24, PT = 0}
    series_quiet_s: float = Field(10.0, ge=0)  #: or its study stable, whichever is first


class WorkerSettings(_Section):
    """The indexer worker the node runs."""

    enabled: bool = True
    batch_size: int = Field(32, ge=1, le=4096)
    #: processes that decode and normalise pixels (0: in the worker thread)
    decode_processes: int = Field(1, ge=0, le=64)
    max_attempts: int = Field(3, ge=1, le=100)
    poll_interval_s: float = Field(0.5, gt=0)


class KosSettings(_Section):
    """Similar cases back to the PACS as Key Object Selection documents."""

    #: when a study becomes stable, compute its similar cases and send a KOS
    auto_send: bool = False
    #: AE title of a configured destination for automatic and default sending
    destination: str | None = None
    limit: int = Field(10, ge=1, le=100)

    @model_validator(mode="after")
    def _check_destination(self) -> KosSettings:
        if self.auto_send and not self.destination:
            raise ValueError("destination must name a configured destination when "
                             "auto_send is true")
        return self


class RetrievalSettings(_Section):
    """What a similar-case answer states: when its majority label is a consensus, and
    how close a text query's results must be (docs/api.md)."""

    #: ``Precedent-Consensus`` is sent only when at least this many results carry the
    #: majority label …
    consensus_min_cases: int = Field(2, ge=1, le=100)
    #: … and they are at least this share of the results (0 to 1)
    consensus_min_fraction: float = Field(0.3, ge=0.0, le=1.0)
    #: text queries: the lowest image–text cosine a result may have (``minScore``
    #: overrides it; -1: no floor). A starting point for BiomedCLIP, whose matching
    #: image–text pairs score about 0.3–0.4 and others about 0.1–0.2; calibrate it
    text_min_score: float = Field(0.2, ge=-1.0, le=1.0)


class CatalogSettings(_Section):
    """Where the catalog is kept: by default a SQLite file in the data folder (one process
    per data folder); ``url = "postgresql://user@host:port/database"`` puts the whole
    catalog (studies, queue, vectors, reports, AE configuration, backfill plan) on a
    PostgreSQL server, which several ``precedent serve`` and ``precedent worker`` processes
    share (see the README's "Several machines")."""

    url: str | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        if dialect_for(v) is not DialectValues.POSTGRESQL:
            raise ValueError(
                f"{redact(v)} is not a PostgreSQL URL: give postgresql://user@host:port/"
                "database, or leave [catalog] url unset for the embedded SQLite catalog"
            )
        return v


class BackfillSettings(_Section):
    """Pulling priors from the PACS (``precedent backfill``); the flags of ``backfill
    start`` override the defaults here for one backfill."""

    #: destination AE titles retrieved with C-GET instead of C-MOVE (a PACS that cannot
    #: open an association back to the node)
    c_get_sources: list[str] = []
    #: simultaneous associations to the PACS per backfill
    concurrency: int = Field(2, ge=1, le=32)
    #: days in each C-FIND / QIDO-RS date window (split further when the PACS caps answers)
    window_days: int = Field(7, ge=1, le=3660)
    #: the most studies the PACS answers to one query (Orthanc: LimitFindResults): a window
    #: answered with this many is split; 0: only a C-FIND's final status says so (QIDO-RS
    #: servers may cut an answer short without saying)
    answer_limit: int = Field(0, ge=0)
    #: a study that fails this many times is marked failed (``backfill resume`` retries it)
    max_attempts: int = Field(5, ge=1, le=100)
    #: the first retry waits this long; each further one twice as long, up to retry_max_s
    retry_initial_s: float = Field(30.0, gt=0)
    retry_max_s: float = Field(3600.0, gt=0)
    #: how often a held backfill looks again (outside its window, disk low, PACS down)
    poll_s: float = Field(5.0, gt=0)
    #: DIMSE and HTTP timeout towards the PACS
    timeout_s: float = Field(120.0, gt=0)


class Settings(BaseSettings):
    """Everything the node reads at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="PRECEDENT_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    node: NodeSettings = NodeSettings()
    http: HttpSettings = HttpSettings()
    model: ModelSettings = ModelSettings()
    index: IndexSettings = IndexSettings()
    indexer: IndexerSettings = IndexerSettings()
    worker: WorkerSettings = WorkerSettings()
    kos: KosSettings = KosSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    backfill: BackfillSettings = BackfillSettings()
    catalog: CatalogSettings = CatalogSettings()
    log_level: LogLevelValues = LogLevelValues.INFO
    #: the ``[node]`` values the catalog held when loaded (see :func:`catalog_notes`)
    _catalog: dict[str, str] = PrivateAttr(default_factory=dict)
    #: which source decided the data folder, and the settings file (see
    #: :func:`location_notes`)
    _locations: tuple[str, str] = PrivateAttr(default=("the default", "none"))

    @field_validator("log_level", mode="before")
    @classmethod
    def _check_level(cls, v: object) -> LogLevelValues:
        try:
            return LogLevelValues(str(getattr(v, "value", v)).upper())
        except ValueError:
            raise ValueError(f"{v!r} is not a log level: use DEBUG, INFO, WARNING or "
                             "ERROR") from None

    @property
    def db_path(self) -> Path:
        """The embedded catalog's file (used when ``[catalog] url`` is unset)."""
        return self.node.data_dir / "catalog.sqlite"

    @property
    def catalog_target(self) -> str | Path:
        """What :func:`database.connect` opens: ``[catalog] url``, else :attr:`db_path`."""
        return self.catalog.url or self.db_path

    @property
    def catalog_exists(self) -> bool:
        """Whether there is a catalog to read (a read never makes the SQLite file; a
        PostgreSQL catalog is taken to be there, and says so on connecting if not)."""
        return self.shared_catalog or self.db_path.is_file()

    @property
    def shared_catalog(self) -> bool:
        """True when the catalog is on a server that several processes share."""
        return self.catalog.url is not None


class _DictSource(PydanticBaseSettingsSource):
    """Settings from a dictionary nested like the file: the TOML file, the catalog."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def _describe(error: Any) -> str:
    where = ".".join(str(p) for p in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "is not a setting (check the spelling against conf/node.example.toml)"
    return f"setting '{where}' {message}"


def _build(flags: dict[str, Any], file_data: dict[str, Any],
           catalog: dict[str, str]) -> Settings:
    """Settings from flags < environment < catalog < file < defaults (highest first)."""
    catalog_data: dict[str, Any] = {"node": dict(catalog)} if catalog else {}

    class _Loaded(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, _DictSource(settings_cls, catalog_data),
                    _DictSource(settings_cls, file_data))

    try:
        loaded = _Loaded(**flags)
    except ValidationError as exc:
        where = " (check the values set with PUT /config/ae)" if catalog else ""
        raise SettingsError("; ".join(_describe(e) for e in exc.errors()) + where) from exc
    loaded._catalog = dict(catalog)
    return loaded


def _read_file(config_file: Path) -> dict[str, Any]:
    """The settings file's values; its relative paths made to count from its folder."""
    try:
        data = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SettingsError(f"config file {config_file} does not exist") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"config file {config_file} is not valid TOML: {exc}") from exc
    except OSError as exc:
        raise SettingsError(f"config file {config_file} cannot be read ({exc.strerror})") from exc
    folder = Path(config_file).absolute().parent
    for section, key in (("node", "data_dir"), ("model", "path")):
        value = data.get(section, {}).get(key) if isinstance(data.get(section), dict) else None
        if isinstance(value, str) and not Path(value).expanduser().is_absolute():
            data[section][key] = str(folder / value)
    return data


def load_settings(
    config_file: Path | None = None, overrides: dict[str, Any] | None = None, *,
    catalog: CatalogReader | None = None, config_source: str = "--config",
) -> Settings:
    """Build the settings: defaults < ``config_file`` < catalog < environment <
    ``overrides``.

    ``overrides`` is nested like the file (``{"node": {"ae_title": "X"}}``) and holds
    the command-line flags. ``catalog`` reads the catalog's ``node_config`` (the AE
    title and DIMSE port set over REST) from the catalog file the other sources point
    to; without it the catalog is not a source. ``config_source`` says how the file was
    found (for :func:`location_notes`). Any wrong value raises :class:`SettingsError`
    naming the setting and what is allowed.
    """
    file_data = _read_file(config_file) if config_file is not None else {}
    flags = overrides or {}
    settings = _build(flags, file_data, {})
    if catalog is not None:
        # the catalog lives in the data folder, which the other sources name
        stored = {k: str(v) for k, v in catalog(settings.catalog_target).items()
                  if k in CATALOG_KEYS}
        settings = _build(flags, file_data, stored) if stored else settings
    if "data_dir" in flags.get("node", {}):
        decided = "--data-dir"
    elif os.environ.get(DATA_DIR_ENV):
        decided = DATA_DIR_ENV
    elif "data_dir" in file_data.get("node", {}):
        decided = "the settings file"
    else:
        decided = "the default"
    settings._locations = (decided, f"{config_file} ({config_source})" if config_file
                           else config_source)
    return settings


def location_notes(settings: Settings) -> str:
    """The one line saying which data folder the settings name and why, and which
    settings file was read."""
    decided, config = settings._locations
    return f"data folder {settings.node.data_dir} (from {decided}); settings file: {config}"


def catalog_notes(settings: Settings) -> list[str]:
    """One line for each ``[node]`` value the catalog held: applied, or overridden by
    the environment or a flag (for the start-up log)."""
    notes = []
    for key, stored in settings._catalog.items():
        value = getattr(settings.node, key)
        if str(value) == stored:
            notes.append(f"node.{key} = {stored} from the catalog (set with PUT /config/ae; "
                         "it overrides the config file)")
        else:
            notes.append(f"node.{key} = {value}: the catalog's {stored} (PUT /config/ae) is "
                         f"overridden by PRECEDENT_NODE__{key.upper()} or a command-line flag")
    return notes
