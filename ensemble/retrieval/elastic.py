"""The Elasticsearch backend: the same passages, fields and bool query as the embedded index, on a cluster.

Layout on the server: an alias `<index>` (from ensemble.yaml) points at one physical index
`<index>-<UTC stamp>` made from the index template `<index>` (see `elastic_template`). A rebuild fills a new
physical index and swaps the alias in one `_aliases` call on commit, so searches never see a half-built index;
a build stopped before its commit leaves that index unaliased, and the next build resumes it.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..core.errors import ArtifactError, BackendError, ConfigError, EnsembleError
from . import elastic_template as tpl
from .base import Hit, index_settings, is_blank
from .elastic_errors import CREDENTIAL_VARS, REBUILD_HINT, check_server_version, import_client, translate

if TYPE_CHECKING:
    from ..config.project import ProjectConfig
    from ..corpus.types import Document, Passage

ENV_URL = "ENSEMBLE_ES_URL"
ENV_API_KEY = "ENSEMBLE_ES_API_KEY"
ENV_USERNAME = "ENSEMBLE_ES_USERNAME"
ENV_PASSWORD = "ENSEMBLE_ES_PASSWORD"

# 429: the cluster asks us to slow down; 502-504: a proxy or node is briefly unavailable.
RETRY_STATUSES = (429, 502, 503, 504)
BULK_BACKOFF = (2.0, 60.0)  # seconds: first wait, longest wait (doubling in between)
TRANSPORT_BACKOFF = (0.5, 30.0)  # jittered waits between the client's own retries of one request
PAGE = 1000  # terms per query, buckets per composite page, hits per search_after page

_INVALID_INDEX_CHARS = re.compile(r'[\\/*?"<>| ,#:]')


@dataclass
class Connection:
    client: Any
    url: str
    auth: str | None  # which env variables supplied credentials, for error messages
    version: str = ""

    @contextlib.contextmanager
    def errors(self, action: str) -> Iterator[None]:
        """Turn client exceptions raised inside into one-line BackendErrors about `action`."""
        es = import_client()
        try:
            yield
        except EnsembleError:
            raise
        except (es.ApiError, es.TransportError) as e:
            raise translate(e, url=self.url, action=action, auth=self.auth) from None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()


def server_url(cfg: ProjectConfig, env: dict[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return (env.get(ENV_URL) or "").strip() or cfg.index.elasticsearch.url


def auth_options(env: dict[str, str] | None = None) -> tuple[dict[str, Any], str | None]:
    """Client keyword arguments for the credentials in the environment, and a name for them."""
    env = os.environ if env is None else env
    api_key = env.get(ENV_API_KEY, "")
    user, password = env.get(ENV_USERNAME, ""), env.get(ENV_PASSWORD, "")
    if api_key:
        return {"api_key": api_key}, ENV_API_KEY
    if user or password:
        if not (user and password):
            missing = ENV_PASSWORD if user else ENV_USERNAME
            raise BackendError(f"{missing} is not set: set both {ENV_USERNAME} and {ENV_PASSWORD} (or {ENV_API_KEY})")
        return {"basic_auth": (user, password)}, f"{ENV_USERNAME}/{ENV_PASSWORD}"
    return {}, None


def client_options(cfg: ProjectConfig, env: dict[str, str] | None = None) -> tuple[str, dict[str, Any], str | None]:
    es_cfg = cfg.index.elasticsearch
    url = server_url(cfg, env)
    auth, auth_name = auth_options(env)
    opts: dict[str, Any] = {
        **auth,
        "verify_certs": es_cfg.verify_certs,
        "request_timeout": es_cfg.request_timeout,
        "max_retries": es_cfg.max_retries,
        "retry_on_status": RETRY_STATUSES,
        "retry_on_timeout": True,
    }
    if _client_accepts("retry_backoff_base"):  # newer clients can wait between their own retries
        opts["retry_backoff_base"], opts["retry_backoff_cap"] = TRANSPORT_BACKOFF
    if es_cfg.ca_certs and url.lower().startswith("https:"):  # the client refuses TLS options for http://
        opts["ca_certs"] = str(cfg.resolve(es_cfg.ca_certs))
    return url, opts, auth_name


def _client_accepts(option: str) -> bool:
    es = import_client()
    return option in inspect.signature(es.Elasticsearch.__init__).parameters


def connect(cfg: ProjectConfig, env: dict[str, str] | None = None) -> Connection:
    """A client for the configured cluster, once it is known to be an Elasticsearch this client speaks to."""
    es = import_client()
    url, opts, auth_name = client_options(cfg, env)
    try:
        client = es.Elasticsearch(url, **opts)
    except ValueError as e:  # malformed URL
        raise ConfigError(f"invalid Elasticsearch URL {url!r}: {e}", key="index.elasticsearch.url") from None
    conn = Connection(client, url, auth_name)
    try:
        with conn.errors("connecting"):
            conn.version = check_server_version(client.info().body, url)
    except BaseException:
        conn.close()
        raise
    return conn


def check_index_name(cfg: ProjectConfig) -> str:
    name = cfg.index.elasticsearch.index
    if (
        not name
        or name != name.lower()
        or _INVALID_INDEX_CHARS.search(name)
        or name[0] in "-_+."
        or len(name.encode()) > 200
    ):
        raise ConfigError(
            f"{name!r} is not a valid Elasticsearch index name: use lowercase letters, digits, '-' and '_' "
            "(not first), at most 200 bytes",
            path=cfg.source,
            key="index.elasticsearch.index",
        )
    return name


def physical_name(alias: str, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return f"{alias}-{now:%Y%m%d%H%M%S%f}"


def physical_pattern(alias: str) -> re.Pattern[str]:
    return re.compile(re.escape(alias) + r"-\d{20}")


def clause_queries(query: str, theme: str | None) -> list[tuple[str, dict[str, Any]]]:
    """The clauses of a passage search by name ("theme", "query"): a blank query with a theme leaves the
    theme alone."""
    match = ("query", {"match": {"text": query}})
    if theme is None:
        return [match]
    # an empty theme analyzes to nothing, so (as in the embedded backend) nothing matches
    must = ("theme", {"match": {"text.adv": theme}})
    return [must] if is_blank(query) else [must, match]


def search_body(query: str, theme: str | None, k: int) -> dict[str, Any]:
    """The body of a passage search: the contract's bool query, plus a stable order among equal scores."""
    clauses = dict(clause_queries(query, theme))
    q: dict[str, Any]
    if theme is None:
        q = clauses["query"]
    elif "query" not in clauses:
        q = {"bool": {"must": [clauses["theme"]]}}
    else:
        q = {"bool": {"must": [clauses["theme"]], "should": [clauses["query"]], "minimum_should_match": 1}}
    return {
        "query": q,
        "size": k,
        "sort": ["_score", {"doc_id": "asc"}, {"n": "asc"}],
        "track_scores": True,
        "track_total_hits": False,
        "_source": ["doc_id", "text"],
    }


def clause_body(clause: dict[str, Any], ids: Sequence[str]) -> dict[str, Any]:
    """One clause alone, over the passages `ids` only: each hit's score is that clause's part of its score."""
    return {
        "query": {"bool": {"filter": [{"ids": {"values": list(ids)}}], "must": [clause]}},
        "size": len(ids),
        "track_total_hits": False,
        "_source": False,
    }


def bulk_actions(
    index: str, docs: Sequence[tuple[Document, Sequence[Passage]]], stale_ids: Iterable[str] = ()
) -> Iterator[dict[str, Any]]:
    """One `index` action per passage (id as `_id`: re-indexing overwrites) and one `delete` per stale id."""
    for doc, passages in docs:
        for p in passages:
            yield {
                "_op_type": "index",
                "_index": index,
                "_id": p.id,
                "_source": {"doc_id": doc.id, "n": p.n, "text": p.text, "content_hash": doc.content_hash},
            }
    for pid in stale_ids:
        yield {"_op_type": "delete", "_index": index, "_id": pid}


def swap_actions(alias: str, old: Sequence[str], new: str) -> list[dict[str, Any]]:
    """`_aliases` actions that move `alias` from `old` to `new` in one atomic step."""
    return [*({"remove": {"index": o, "alias": alias}} for o in old), {"add": {"index": new, "alias": alias}}]


def settings_meta(analyzer: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The mapping's `_meta`: the template's, plus the settings the index was built with."""
    out = tpl.meta(analyzer)
    out["ensemble"]["settings"] = settings
    return out


def recorded_settings_in(mapping: dict[str, Any]) -> dict[str, Any]:
    info = (mapping.get("_meta") or {}).get("ensemble") or {}
    if not info:
        return {}
    return {"analyzer": info.get("analyzer"), **(info.get("settings") or {})}


def mapping_problem(mapping: dict[str, Any], settings: dict[str, Any], cfg: ProjectConfig) -> str | None:
    """Why an existing index cannot serve this project (None when it can)."""
    analyzer = cfg.index.analyzer
    main, adv = tpl.FIELD_ANALYZERS[analyzer]
    props = mapping.get("properties") or {}
    text = props.get("text") or {}
    if text.get("type") != "text":
        return "it has no `text` field"
    have = text.get("analyzer", "standard")
    if have != main:
        return f"`text` is analyzed with {have!r}, the project asks for {main!r} (index.analyzer: {analyzer})"
    sub = (text.get("fields") or {}).get("adv")
    if not sub:
        return "`text` has no `text.adv` sub-field"
    if sub.get("analyzer", "standard") != adv:
        return f"`text.adv` is analyzed with {sub.get('analyzer', 'standard')!r}, expected {adv!r}"
    for field in ("doc_id", "content_hash"):
        if (props.get(field) or {}).get("type") != "keyword":
            return f"`{field}` is not a keyword field"
    sim = ((settings.get("index") or {}).get("similarity") or {}).get(tpl.SIMILARITY) or {}
    for key in ("k1", "b"):
        want = getattr(cfg.index, key)
        try:
            have_v = float(sim.get(key))
        except (TypeError, ValueError):
            return f"it lacks the {tpl.SIMILARITY} similarity"
        if abs(have_v - want) > 1e-9:
            return f"BM25 {key} is {have_v:g}, the project asks for {want:g}"
    return None


class ElasticRetriever:
    """Retriever over an Elasticsearch alias. Open it with `ElasticRetriever.open(cfg, create=, rebuild=)`."""

    def __init__(
        self,
        conn: Connection,
        cfg: ProjectConfig,
        alias: str,
        target: str,
        *,
        swap_from: Sequence[str] | None = None,
        fresh: bool = False,
        backoff: tuple[float, float] | None = None,
    ) -> None:
        self._conn = conn
        self._client = conn.client
        self._es_cfg = cfg.index.elasticsearch
        self._analyzer = cfg.index.analyzer
        self.alias = alias
        self.target = target  # the physical index written and read through this object
        self._swap_from = list(swap_from) if swap_from is not None else None  # set: alias moves on commit
        self._fresh = fresh  # created by us: nothing in it we did not write
        self._written: set[str] = set()  # doc ids upserted through this object
        # Writes not yet refreshed, so invisible to searches and aggregations. An index we did not just create
        # may hold such writes from a build that stopped, so the first read refreshes it.
        self._dirty = not fresh
        self._backoff = backoff or BULK_BACKOFF
        self._closed = False

    # -- opening ---------------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        cfg: ProjectConfig,
        *,
        create: bool = False,
        rebuild: bool = False,
        env: dict[str, str] | None = None,
    ) -> ElasticRetriever:
        alias = check_index_name(cfg)
        conn = connect(cfg, env)
        try:
            current = alias_targets(conn, alias)
            if rebuild or (create and not current):
                staged = staged_index(conn, cfg, alias, current)
                if staged:  # an earlier build stopped before its commit: resume it
                    return cls(conn, cfg, alias, staged, swap_from=current)
                target = create_physical(conn, cfg, alias)
                return cls(conn, cfg, alias, target, swap_from=current, fresh=True)
            if not current:
                raise ArtifactError(f"no Elasticsearch index {alias!r} at {conn.url}: run `ensemble build-index` first")
            if len(current) > 1:
                raise BackendError(
                    f"alias {alias!r} points at {len(current)} indices ({', '.join(current)}); {REBUILD_HINT}"
                )
            check_mapping(conn, cfg, alias, current[0])
            return cls(conn, cfg, alias, current[0])
        except BaseException:
            conn.close()
            raise

    # -- the Retriever protocol ------------------------------------------------------------------------------

    def doc_hashes(self) -> dict[str, str]:
        """doc_id → content hash, from a composite aggregation over (doc_id, content_hash).

        A document whose passages carry two hashes (an update cut short) maps to "" so it is indexed again."""
        self._refresh_if_dirty()
        out: dict[str, str] = {}
        after: dict[str, Any] | None = None
        while True:
            composite: dict[str, Any] = {
                "size": PAGE,
                "sources": [
                    {"doc_id": {"terms": {"field": "doc_id"}}},
                    {"hash": {"terms": {"field": "content_hash"}}},
                ],
            }
            if after:
                composite["after"] = after
            with self._conn.errors("reading document hashes"):
                resp = self._client.search(
                    index=self.target, size=0, track_total_hits=False, aggs={"docs": {"composite": composite}}
                ).body
            agg = (resp.get("aggregations") or {}).get("docs") or {}
            buckets = agg.get("buckets") or []
            for bucket in buckets:
                doc_id, h = bucket["key"]["doc_id"], bucket["key"]["hash"]
                out[doc_id] = h if doc_id not in out else ""
            after = agg.get("after_key")
            if not buckets or not after:
                return out

    def upsert(self, docs: Sequence[tuple[Document, Sequence[Passage]]]) -> None:
        docs = list(docs)
        if not docs:
            return
        new_ids = {p.id for _, passages in docs for p in passages}
        doc_ids = [d.id for d, _ in docs]
        stale: list[str] = []
        if not self._fresh or self._written.intersection(doc_ids):
            stale = sorted(self._passage_ids(doc_ids) - new_ids)
        self._bulk(bulk_actions(self.target, docs, stale), what="indexing passages")
        self._written.update(doc_ids)

    def delete(self, doc_ids: Iterable[str]) -> None:
        ids = list(dict.fromkeys(doc_ids))
        if not ids:
            return
        self._refresh_if_dirty()
        for start in range(0, len(ids), PAGE):
            chunk = ids[start : start + PAGE]
            with self._conn.errors("deleting documents"):
                resp = self._client.delete_by_query(
                    index=self.target, query={"terms": {"doc_id": chunk}}, conflicts="proceed", refresh=False
                ).body
            failures = resp.get("failures") or []
            if failures:
                raise BackendError(
                    f"{len(failures)} passage(s) could not be deleted from {self.target!r}: {_first_reason(failures)}"
                )
        self._dirty = True

    def commit(self) -> None:
        with self._conn.errors("refreshing the index"):
            self._client.indices.refresh(index=self.target)
        self._dirty = False
        if self._swap_from is None:
            return
        old = self._swap_from
        with self._conn.errors(f"moving alias {self.alias!r} to {self.target!r}"):
            self._client.indices.update_aliases(actions=swap_actions(self.alias, old, self.target))
        self._swap_from = None
        self._fresh = False
        self._drop_old_indices(old)

    def search(self, query: str, theme: str | None = None, k: int = 10) -> list[Hit]:
        if k <= 0:
            raise ConfigError(f"k must be a positive number of passages, got {k}", key="k")
        self._refresh_if_dirty()
        body = search_body(query, theme, k)
        kwargs = {("source" if key == "_source" else key): v for key, v in body.items()}
        with self._conn.errors("searching"):
            # dfs: BM25 statistics over all shards, so a multi-shard index ranks like a single one
            resp = self._client.search(index=self.target, search_type="dfs_query_then_fetch", **kwargs).body
        hits = []
        for h in resp.get("hits", {}).get("hits", []):
            src = h.get("_source") or {}
            score = h.get("_score")
            if score is None and h.get("sort"):
                score = h["sort"][0]
            hits.append(
                Hit(
                    id=h["_id"],
                    doc_id=src.get("doc_id", ""),
                    score=float(score or 0.0),
                    text=src.get("text", ""),
                )
            )
        return hits

    def clause_scores(self, ids: Sequence[str], query: str, theme: str | None = None) -> dict[str, dict[str, float]]:
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        self._refresh_if_dirty()
        out: dict[str, dict[str, float]] = {}
        for name, clause in clause_queries(query, theme):
            body = clause_body(clause, ids)
            kwargs = {("source" if key == "_source" else key): v for key, v in body.items()}
            with self._conn.errors("explaining a search"):
                resp = self._client.search(index=self.target, search_type="dfs_query_then_fetch", **kwargs).body
            out[name] = {h["_id"]: float(h.get("_score") or 0.0) for h in resp.get("hits", {}).get("hits", [])}
        return out

    def recorded_settings(self) -> dict[str, Any]:
        return recorded_settings_in(_mapping(self._conn, self.target))

    def record_settings(self, settings: dict[str, Any]) -> None:
        _record(self._conn, self.target, self._analyzer, settings)

    def passage_count(self) -> int:
        self._refresh_if_dirty()
        with self._conn.errors("counting passages"):
            return int(self._client.count(index=self.target).body["count"])

    def checkpoint(self) -> None:
        """Durable progress without publishing a rebuild. Acknowledged bulk writes are already durable (the
        translog), and the alias must not move before `commit`, so there is nothing to do."""

    def close(self) -> None:
        """Release the client. An uncommitted rebuild stays on the server, unaliased: the next build resumes
        it, and the next alias swap deletes it if it was abandoned."""
        if not self._closed:
            self._closed = True
            self._conn.close()

    def __enter__(self) -> ElasticRetriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ---------------------------------------------------------------------------------------------

    def _refresh_if_dirty(self) -> None:
        if self._dirty:
            with self._conn.errors("refreshing the index"):
                self._client.indices.refresh(index=self.target)
            self._dirty = False

    def _passage_ids(self, doc_ids: Sequence[str]) -> set[str]:
        """Ids of the passages stored for these documents (paged with search_after, no scroll state)."""
        self._refresh_if_dirty()
        found: set[str] = set()
        for start in range(0, len(doc_ids), PAGE):
            chunk = list(doc_ids[start : start + PAGE])
            after: list[Any] | None = None
            while True:
                kwargs: dict[str, Any] = {
                    "index": self.target,
                    "query": {"terms": {"doc_id": chunk}},
                    "size": PAGE,
                    "sort": [{"doc_id": "asc"}, {"n": "asc"}],
                    "source": False,
                    "track_total_hits": False,
                }
                if after is not None:
                    kwargs["search_after"] = after
                with self._conn.errors("reading stored passages"):
                    hits = self._client.search(**kwargs).body.get("hits", {}).get("hits", [])
                found.update(h["_id"] for h in hits)
                if len(hits) < PAGE:
                    break
                after = hits[-1]["sort"]
        return found

    def _bulk(self, actions: Iterable[dict[str, Any]], *, what: str) -> None:
        import_client()
        from elasticsearch.helpers import streaming_bulk

        failures: list[dict[str, Any]] = []
        with self._conn.errors(what):
            for ok, item in streaming_bulk(
                # one retry policy: streaming_bulk's for statuses; the client's own would nest inside it
                self._client.options(retry_on_status=()),
                actions,
                chunk_size=self._es_cfg.bulk_chunk,
                max_retries=self._es_cfg.max_retries,
                initial_backoff=self._backoff[0],
                max_backoff=self._backoff[1],
                retry_on_status=RETRY_STATUSES,
                raise_on_error=False,
                yield_ok=False,
            ):
                self._dirty = True
                if ok:
                    continue
                op, info = next(iter(item.items()))
                if op == "delete" and info.get("status") == 404:  # already gone
                    continue
                failures.append(info)
        self._dirty = True
        if failures:
            raise BackendError(
                f"{len(failures)} bulk action(s) failed on {self.target!r} while {what}: {_first_reason(failures)}"
            )

    def _drop_old_indices(self, old: Sequence[str]) -> None:
        """After a swap: delete the indices the alias left, and older ones orphaned by failed builds."""
        doomed = set(old)
        pattern = physical_pattern(self.alias)
        with contextlib.suppress(Exception):
            listing = self._client.indices.get_alias(index=tpl.index_pattern(self.alias)).body
            for name, info in listing.items():
                if pattern.fullmatch(name) and name < self.target and not (info or {}).get("aliases"):
                    doomed.add(name)
        for name in sorted(doomed - {self.target}):
            with contextlib.suppress(Exception):
                self._client.indices.delete(index=name, ignore_unavailable=True)


def _first_reason(failures: list[dict[str, Any]]) -> str:
    f = failures[0]
    err = f.get("error") or f.get("reason") or f
    if isinstance(err, dict):
        cause = err.get("caused_by") or {}
        reason = err.get("reason") or err.get("type") or err
        return " ".join(f"{f.get('status', '')} {reason} {cause.get('reason', '')}".split())
    return " ".join(f"{f.get('status', '')} {err}".split())


def _mapping(conn: Connection, physical: str) -> dict[str, Any]:
    with conn.errors(f"reading the mapping of {physical!r}"):
        return conn.client.indices.get_mapping(index=physical).body.get(physical, {}).get("mappings", {})


def _record(conn: Connection, physical: str, analyzer: str, settings: dict[str, Any]) -> None:
    with conn.errors(f"recording the settings of {physical!r}"):
        conn.client.indices.put_mapping(index=physical, meta=settings_meta(analyzer, settings))


def stored_settings(cfg: ProjectConfig, env: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The settings recorded in the index the alias points at (None: no index yet, or not one to judge)."""
    alias = check_index_name(cfg)
    conn = connect(cfg, env)
    try:
        current = alias_targets(conn, alias)
        return recorded_settings_in(_mapping(conn, current[0])) if len(current) == 1 else None
    finally:
        conn.close()


def alias_targets(conn: Connection, alias: str) -> list[str]:
    """Physical indices behind `alias` ([] when there is no such alias)."""
    es = import_client()
    with conn.errors(f"looking up alias {alias!r}"):
        try:
            body = conn.client.indices.get_alias(name=alias).body
        except es.NotFoundError:
            body = {}
        if not body and conn.client.indices.exists(index=alias):
            raise BackendError(
                f"{alias!r} at {conn.url} is an index, not an alias managed by ensemble: delete it "
                f"(curl -X DELETE {conn.url.rstrip('/')}/{alias}) "
                "or set index.elasticsearch.index to another name"
            )
    return sorted(body)


def staged_index(conn: Connection, cfg: ProjectConfig, alias: str, current: Sequence[str]) -> str | None:
    """The newest unaliased index of ours made after the live one (a build that never committed), if it still
    fits this project; unfit ones are deleted."""
    newest_live = max(current, default="")
    pattern = physical_pattern(alias)
    with conn.errors(f"listing the indices of {alias!r}"):
        listing = conn.client.indices.get_alias(index=tpl.index_pattern(alias)).body
    candidates = sorted(
        (
            n
            for n, info in listing.items()
            if pattern.fullmatch(n) and n > newest_live and not (info or {}).get("aliases")
        ),
        reverse=True,
    )
    for name in candidates:
        if index_problem(conn, cfg, name) is None:
            return name
        with contextlib.suppress(Exception):
            conn.client.indices.delete(index=name, ignore_unavailable=True)
    return None


def create_physical(conn: Connection, cfg: ProjectConfig, alias: str) -> str:
    """Install the index template for this project, then create an empty physical index from it."""
    body = tpl.index_template(
        alias,
        cfg.index.analyzer,
        k1=cfg.index.k1,
        b=cfg.index.b,
        shards=cfg.index.elasticsearch.shards,
        replicas=cfg.index.elasticsearch.replicas,
    )
    with conn.errors(f"installing index template {alias!r}"):
        conn.client.indices.put_index_template(
            name=alias,
            index_patterns=body["index_patterns"],
            priority=body["priority"],
            version=body["version"],
            meta=body["_meta"],
            template=body["template"],
        )
    es = import_client()
    name = physical_name(alias)
    with conn.errors(f"creating index {name!r}"):
        for attempt in range(3):
            try:
                conn.client.indices.create(index=name)
                break
            except es.BadRequestError as e:  # same stamp as a concurrent build: take the next microsecond
                if "resource_already_exists" not in str(getattr(e, "body", "")) or attempt == 2:
                    raise
                name = physical_name(alias)
    problem = index_problem(conn, cfg, name)
    if problem:
        with contextlib.suppress(Exception):
            conn.client.indices.delete(index=name, ignore_unavailable=True)
        raise BackendError(
            f"the index created from template {alias!r} does not have this project's mapping ({problem}): "
            f"another index template with a priority above {tpl.TEMPLATE_PRIORITY} matches "
            f"{tpl.index_pattern(alias)!r}; remove it, or choose another index.elasticsearch.index"
        )
    _record(conn, name, cfg.index.analyzer, index_settings(cfg))  # before any passage: they agree
    return name


def index_problem(conn: Connection, cfg: ProjectConfig, physical: str) -> str | None:
    """Why the existing index `physical` cannot serve this project (None when it can)."""
    mapping = _mapping(conn, physical)
    with conn.errors(f"reading the settings of {physical!r}"):
        settings = conn.client.indices.get_settings(index=physical).body.get(physical, {}).get("settings", {})
    return mapping_problem(mapping, settings, cfg)


def check_mapping(conn: Connection, cfg: ProjectConfig, alias: str, physical: str) -> None:
    problem = index_problem(conn, cfg, physical)
    if problem:
        raise BackendError(f"index {alias!r} ({physical}) does not fit this project: {problem}; {REBUILD_HINT}")


def analyze_remote(cfg: ProjectConfig, text: str, analyzer: str, env: dict[str, str] | None = None) -> list[str]:
    """Terms of `text` under `analyzer` (nori, nori_adv, standard, english, russian), computed by the
    cluster's `_analyze` API with the same definitions as the index template (no index needed)."""
    try:
        spec = tpl.inline_analyzer(analyzer)
    except ValueError:
        raise ConfigError(
            f"unknown analyzer {analyzer!r}; use one of: nori, nori_adv, standard, english, russian",
            key="analyzer",
        ) from None
    conn = connect(cfg, env)
    try:
        with conn.errors(f"analyzing with {analyzer!r}"):
            resp = conn.client.indices.analyze(text=text, **spec).body
        return [t["token"] for t in resp.get("tokens", [])]
    finally:
        conn.close()


__all__ = [
    "CREDENTIAL_VARS",
    "Connection",
    "ElasticRetriever",
    "analyze_remote",
    "bulk_actions",
    "clause_body",
    "clause_queries",
    "connect",
    "search_body",
    "swap_actions",
]
