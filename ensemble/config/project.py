"""`ensemble.yaml`: the project file. Each default lives here and nowhere else."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator

from .loader import StrictModel, load_model

AnalyzerName = Literal["nori", "standard", "english", "russian"]


class CleanConfig(StrictModel):
    """KLUE-style cleaning. `clean: none` (or `mode: none`) turns every rule off."""

    mode: Literal["klue", "none"] = "klue"
    control_chars: bool = True
    emails: bool = True
    urls: bool = True
    hashtags: bool = True
    mentions: bool = True
    copyright: bool = True
    photo_captions: bool = True
    repeats: bool = True
    max_repeat: int = Field(2, ge=1, description="collapse runs of one character longer than this (ㅋㅋㅋㅋ → ㅋㅋ)")
    punctuation: bool = True
    whitespace: bool = True


class PassagesConfig(StrictModel):
    max_chars: int = Field(500, gt=0, description="upper bound of a passage; sentences are never cut unless longer")
    min_chars: int = Field(20, ge=0, description="shorter trailing pieces are merged into the previous passage")


class ElasticsearchConfig(StrictModel):
    """Connection settings. Secrets never live here: ENSEMBLE_ES_API_KEY or ENSEMBLE_ES_USERNAME/PASSWORD."""

    url: str = "http://127.0.0.1:9200"
    index: str = "ensemble-passages"
    verify_certs: bool = True
    ca_certs: str | None = None
    request_timeout: float = Field(30.0, gt=0)
    bulk_chunk: int = Field(500, gt=0)
    max_retries: int = Field(5, ge=0)
    shards: int = Field(1, ge=1)
    replicas: int = Field(0, ge=0)


class IndexConfig(StrictModel):
    backend: Literal["embedded", "elasticsearch"] = "embedded"
    path: str | None = Field(None, description="embedded index directory; default <work_dir>/index")
    analyzer: AnalyzerName = "nori"
    k1: float = Field(1.2, gt=0)
    b: float = Field(0.75, ge=0, le=1)
    elasticsearch: ElasticsearchConfig = ElasticsearchConfig()


class ProjectConfig(StrictModel):
    corpus: list[str] = Field(default_factory=list, description="files, directories or globs, relative to this file")
    clean: CleanConfig = CleanConfig()
    passages: PassagesConfig = PassagesConfig()
    index: IndexConfig = IndexConfig()
    work_dir: str = ".ensemble"
    base_model: str | None = Field(None, description="hub id or local directory; unset: <work_dir>/base")
    base_model_revision: str | None = None
    trust_remote_code: bool = False

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _source: Path | None = PrivateAttr(default=None)

    @field_validator("clean", mode="before")
    @classmethod
    def _clean_shorthand(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {"mode": v}
        return v

    @field_validator("corpus", mode="before")
    @classmethod
    def _corpus_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    # Paths in the file are relative to the file, not to the shell's current directory.
    @property
    def base_dir(self) -> Path:
        return self._base_dir

    @property
    def source(self) -> Path | None:
        return self._source

    def resolve(self, p: str | Path) -> Path:
        p = Path(p).expanduser()
        return p if p.is_absolute() else (self._base_dir / p)

    @property
    def work_path(self) -> Path:
        return self.resolve(self.work_dir)

    @property
    def index_path(self) -> Path:
        return self.resolve(self.index.path) if self.index.path else self.work_path / "index"

    @property
    def base_model_path(self) -> str:
        """What to pass to from_pretrained: the configured id/dir, else the pretrain-base output."""
        if self.base_model is None:
            return str(self.work_path / "base")
        local = self.resolve(self.base_model)
        return str(local) if local.exists() or self.base_model.startswith((".", "/", "~")) else self.base_model

    def with_base_dir(self, base_dir: Path, source: Path | None = None) -> ProjectConfig:
        clone = self.model_copy()
        clone._base_dir = Path(base_dir).resolve()
        clone._source = source
        return clone


def load_project(path: str | Path) -> ProjectConfig:
    p = Path(path)
    cfg = load_model(p, ProjectConfig)
    return cfg.with_base_dir(p.resolve().parent, p)
