"""The Elasticsearch index template, built from code: the JSON files in `index/` are generated from here.

Written for Elasticsearch 9 (Lucene 10 Nori, mecab-ko-dic 2.1.1). Lucene 10 split Nori's coarse
part-of-speech families E and J into the detailed tags below and rejects E and J in `stoptags`; Lucene 8/9
(Elasticsearch 7/8) map any tag starting with E or J onto its family, so the detailed list means the same
there.

Regenerate the files after a change: `python -m ensemble.retrieval.elastic_template index/`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ..config.project import ElasticsearchConfig, IndexConfig

SCHEMA_VERSION = 1
SERVER_MAJOR = 9  # the template's stop tags, and the client extra `elasticsearch>=9,<10`
TEMPLATE_PRIORITY = 500  # above Elasticsearch's built-in templates (100-200), so ours wins on our pattern

# Lucene 10 KoreanPartOfSpeechStopFilter defaults, in Lucene's order.
NORI_STOP_TAGS: tuple[str, ...] = (
    "EP", "EF", "EC", "ETN", "ETM",
    "IC",
    "JKS", "JKC", "JKG", "JKO", "JKB", "JKV", "JKQ", "JX", "JC",
    "MAG", "MAJ", "MM",
    "SP", "SSC", "SSO", "SC", "SE",
    "XPN", "XSA", "XSN", "XSV",
    "UNA", "NA", "VSV",
)  # fmt: skip
ADVERB_TAGS: tuple[str, ...] = ("MAG", "MAJ")
NORI_ADV_STOP_TAGS: tuple[str, ...] = tuple(t for t in NORI_STOP_TAGS if t not in ADVERB_TAGS)

SIMILARITY = "ensemble_bm25"
NORI = "ensemble_nori"
NORI_ADV = "ensemble_nori_adv"
_NORI_TOKENIZER = "ensemble_nori_tokenizer"
_NORI_POS = "ensemble_nori_pos"
_NORI_POS_ADV = "ensemble_nori_pos_adv"

# config analyzer name -> (analyzer of `text`, analyzer of `text.adv`). The western ones are Elasticsearch's
# built-ins of the same names (StandardAnalyzer, EnglishAnalyzer, RussianAnalyzer), which need no settings.
FIELD_ANALYZERS: dict[str, tuple[str, str]] = {
    "nori": (NORI, NORI_ADV),
    "standard": ("standard", "standard"),
    "english": ("english", "english"),
    "russian": ("russian", "russian"),
}

# The defaults are the config's (one place defines each); the files in index/ are written with them.
DEFAULT_SHARDS = ElasticsearchConfig().shards
DEFAULT_REPLICAS = ElasticsearchConfig().replicas  # a single node cannot place replicas (health stays yellow)
DEFAULT_K1 = IndexConfig().k1
DEFAULT_B = IndexConfig().b


def nori_tokenizer() -> dict[str, Any]:
    return {"type": "nori_tokenizer", "decompound_mode": "discard", "discard_punctuation": True}


def nori_pos_filter(adverbs: bool) -> dict[str, Any]:
    """`nori_part_of_speech` with the default stop tags; `adverbs=True` keeps MAG/MAJ (the theme clause)."""
    return {
        "type": "nori_part_of_speech",
        "stoptags": list(NORI_ADV_STOP_TAGS if adverbs else NORI_STOP_TAGS),
    }


def analysis_settings(analyzer: str) -> dict[str, Any]:
    """Custom analysis for `analyzer`; empty for the western built-ins."""
    if analyzer != "nori":
        return {}
    chain = ["nori_readingform", "lowercase"]
    return {
        "tokenizer": {_NORI_TOKENIZER: nori_tokenizer()},
        "filter": {_NORI_POS: nori_pos_filter(False), _NORI_POS_ADV: nori_pos_filter(True)},
        "analyzer": {
            NORI: {"type": "custom", "tokenizer": _NORI_TOKENIZER, "filter": [_NORI_POS, *chain]},
            NORI_ADV: {"type": "custom", "tokenizer": _NORI_TOKENIZER, "filter": [_NORI_POS_ADV, *chain]},
        },
    }


def inline_analyzer(name: str) -> dict[str, Any]:
    """Arguments for `_analyze` that reproduce analyzer `name` (nori, nori_adv, standard, english, russian)
    without an index: a built-in name, or the Nori chain spelled out."""
    if name in ("nori", "nori_adv"):
        return {
            "tokenizer": nori_tokenizer(),
            "filter": [nori_pos_filter(name == "nori_adv"), "nori_readingform", "lowercase"],
        }
    if name in ("standard", "english", "russian"):
        return {"analyzer": name}
    raise ValueError(f"unknown analyzer {name!r}")


def meta(analyzer: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "analyzer": analyzer,
        "elasticsearch": f"{SERVER_MAJOR}.x",
    }
    if analyzer == "nori":
        info["nori"] = "Lucene 10 Nori (mecab-ko-dic 2.1.1), detailed E*/J* stop tags"
    return {"ensemble": info}


def index_settings(
    analyzer: str,
    *,
    k1: float = DEFAULT_K1,
    b: float = DEFAULT_B,
    shards: int = DEFAULT_SHARDS,
    replicas: int = DEFAULT_REPLICAS,
) -> dict[str, Any]:
    index: dict[str, Any] = {
        "number_of_shards": shards,
        "number_of_replicas": replicas,
        "similarity": {SIMILARITY: {"type": "BM25", "k1": k1, "b": b}},
    }
    analysis = analysis_settings(analyzer)
    if analysis:
        index["analysis"] = analysis
    return {"index": index}


def index_mappings(analyzer: str) -> dict[str, Any]:
    main, adv = FIELD_ANALYZERS[analyzer]
    return {
        "dynamic": "strict",
        "_meta": meta(analyzer),
        "properties": {
            "doc_id": {"type": "keyword"},
            "n": {"type": "integer"},
            "content_hash": {"type": "keyword"},
            "text": {
                "type": "text",
                "analyzer": main,
                "similarity": SIMILARITY,
                "fields": {"adv": {"type": "text", "analyzer": adv, "similarity": SIMILARITY}},
            },
        },
    }


def index_pattern(alias: str) -> str:
    return f"{alias}-*"


def index_template(
    alias: str,
    analyzer: str,
    *,
    k1: float = DEFAULT_K1,
    b: float = DEFAULT_B,
    shards: int = DEFAULT_SHARDS,
    replicas: int = DEFAULT_REPLICAS,
) -> dict[str, Any]:
    """Body of `PUT _index_template/<alias>`: applies to every physical index `<alias>-*` behind the alias."""
    if analyzer not in FIELD_ANALYZERS:
        raise ValueError(f"unknown analyzer {analyzer!r}")
    return {
        "index_patterns": [index_pattern(alias)],
        "priority": TEMPLATE_PRIORITY,
        "version": SCHEMA_VERSION,
        "_meta": meta(analyzer),
        "template": {
            "settings": index_settings(analyzer, k1=k1, b=b, shards=shards, replicas=replicas),
            "mappings": index_mappings(analyzer),
        },
    }


def template_file_name(analyzer: str) -> str:
    return f"passages-{analyzer}.json"


def render(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False, indent=2) + "\n"


def default_files() -> dict[str, str]:
    """file name -> content of every template in `index/`, for the default index name and BM25 parameters."""
    alias = ElasticsearchConfig().index
    return {template_file_name(a): render(index_template(alias, a)) for a in FIELD_ANALYZERS}


def write_index_files(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in default_files().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover - maintenance helper
    for p in write_index_files(Path(sys.argv[1] if len(sys.argv) > 1 else "index")):
        print(p)
