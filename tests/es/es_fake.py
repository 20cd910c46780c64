"""A stand-in Elasticsearch on 127.0.0.1 for unit tests: answers the handful of APIs the backend calls, keeps
indices, aliases and documents in memory, and records every request.

It is no claim that the backend works against a real server; it only lets the tests see what is sent, in
which order, and how the backend reacts to the answers (including canned errors). Documents become visible to
searches and aggregations only after `_refresh`, as on a real cluster, so a missing refresh shows up.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import math
import re
import threading
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ensemble.config.project import ProjectConfig

ES_ENV = ("ENSEMBLE_ES_URL", "ENSEMBLE_ES_API_KEY", "ENSEMBLE_ES_USERNAME", "ENSEMBLE_ES_PASSWORD")


def make_config(tmp_path: Path, url: str, **index: Any) -> ProjectConfig:
    """A project indexing on Elasticsearch at `url`, alias `passages` (`es=` overrides connection keys)."""
    es = {"url": url, "index": "passages", "max_retries": 2, "bulk_chunk": 3}
    es.update(index.pop("es", {}))
    data = {"index": {"backend": "elasticsearch", "elasticsearch": es, **index}}
    return ProjectConfig.model_validate(data).with_base_dir(tmp_path, tmp_path / "ensemble.yaml")


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: Any  # parsed JSON, a list of parsed NDJSON lines, or None


@dataclass
class Canned:
    method: str
    path: re.Pattern[str]
    status: int
    body: Any
    times: int  # how many more requests it answers (-1: all)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Index:
    settings: dict[str, Any]
    mappings: dict[str, Any]
    aliases: set[str] = field(default_factory=set)
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)  # what was written
    visible: dict[str, dict[str, Any]] = field(default_factory=dict)  # what searches see (as of last refresh)
    term_cache: dict[tuple[str, str], list[str]] = field(default_factory=dict)


def error_body(status: int, etype: str, reason: str, caused_by: dict[str, Any] | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"root_cause": [{"type": etype, "reason": reason}], "type": etype, "reason": reason}
    if caused_by:
        err["caused_by"] = caused_by
    return {"error": err, "status": status}


def _stringify(value: Any) -> Any:
    """Elasticsearch returns index settings as strings."""
    if isinstance(value, dict):
        return {k: _stringify(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify(v) for v in value]
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


class FakeES:
    def __init__(self, version: str = "9.5.4") -> None:
        self.version = version
        self.requests: list[Request] = []
        self.templates: dict[str, dict[str, Any]] = {}
        self.indices: dict[str, Index] = {}
        self.canned: list[Canned] = []
        self.crashes: list[str] = []  # tracebacks of requests the fake could not handle
        self.require_auth: str | None = None  # expected Authorization header value
        self.product_header = True  # False: answer like a server that is not Elasticsearch
        self._reject: list[tuple[int, str]] = []  # (status, error type) for the next bulk items
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                fake._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    def start(self) -> FakeES:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- test helpers ----------------------------------------------------------------------------------------

    def fail(
        self,
        method: str,
        path: str,
        status: int,
        body: Any,
        times: int = 1,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next `times` requests matching `method` and regex `path` with `status` and `body`."""
        self.canned.append(Canned(method, re.compile(path), status, body, times, headers or {}))

    def reject_items(self, n: int, status: int = 429, etype: str = "es_rejected_execution_exception") -> None:
        """Make the next `n` bulk items fail with `status` (not applied), as an overloaded node does."""
        self._reject.extend([(status, etype)] * n)

    def calls(self, method: str | None = None, path: str | None = None) -> list[Request]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and (path is None or re.search(path, r.path))
        ]

    def alias_targets(self, alias: str) -> list[str]:
        return sorted(n for n, ix in self.indices.items() if alias in ix.aliases)

    # -- serving ---------------------------------------------------------------------------------------------

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        path = unquote(url.path)
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        body: Any = None
        if raw:
            text = raw.decode("utf-8")
            if "ndjson" in (h.headers.get("Content-Type") or ""):
                body = [json.loads(line) for line in text.splitlines() if line.strip()]
            else:
                body = json.loads(text)
        req = Request(h.command, path, params, {k.lower(): v for k, v in h.headers.items()}, body)
        with self._lock:
            self.requests.append(req)
            try:
                status, payload, headers = self._dispatch(req)
            except Exception as e:  # a gap in the fake: make it loud in the test's failure message
                tb = traceback.format_exc()
                self.crashes.append(tb)
                status, payload, headers = 500, error_body(500, "fake_crash", f"{e!r}: {tb}"), {}
        data = b"" if payload is None else json.dumps(payload).encode()
        h.send_response(status)
        if self.product_header:
            h.send_header("X-Elastic-Product", "Elasticsearch")
        h.send_header("Content-Type", "application/vnd.elasticsearch+json;compatible-with=9")
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    def _dispatch(self, req: Request) -> tuple[int, Any, dict[str, str]]:
        for c in self.canned:
            if c.times != 0 and c.method == req.method and c.path.search(req.path):
                if c.times > 0:
                    c.times -= 1
                return c.status, c.body, c.headers
        if self.require_auth and req.headers.get("authorization") != self.require_auth:
            return 401, error_body(401, "security_exception", "unable to authenticate user"), {}
        m, p, parts = req.method, req.path, [s for s in req.path.split("/") if s]
        if p == "/" and m == "GET":
            return 200, self._info(), {}
        if m == "PUT" and len(parts) == 2 and parts[0] == "_index_template":
            self.templates[parts[1]] = req.body
            return 200, {"acknowledged": True}, {}
        if m == "DELETE" and len(parts) == 2 and parts[0] == "_index_template":
            if self.templates.pop(parts[1], None) is None:
                return 404, error_body(404, "resource_not_found_exception", f"[{parts[1]}] missing"), {}
            return 200, {"acknowledged": True}, {}
        if m == "POST" and p == "/_aliases":
            return self._aliases(req.body)
        if m == "GET" and len(parts) == 2 and parts[0] == "_alias":
            return self._get_alias_by_name(parts[1])
        if m == "GET" and len(parts) == 2 and parts[1] == "_alias":
            return 200, self._get_alias_by_index(parts[0]), {}
        if m in ("POST", "PUT") and p == "/_bulk":
            return 200, self._bulk(req.body), {}
        if m == "POST" and p == "/_analyze":
            return 200, self._analyze(req.body), {}
        if len(parts) == 1:
            return self._index_level(m, parts[0], req)
        if len(parts) == 2:
            name = parts[0]
            targets = self.alias_targets(name)
            ix = self.indices.get(targets[0] if len(targets) == 1 else name)
            if ix is None:
                return 404, error_body(404, "index_not_found_exception", f"no such index [{name}]"), {}
            op = parts[1]
            if op == "_refresh":
                ix.visible = copy.deepcopy(ix.docs)
                return 200, {"_shards": {"total": 1, "successful": 1, "failed": 0}}, {}
            if op == "_mapping" and m in ("PUT", "POST"):
                body = req.body or {}
                ix.mappings.update({k: v for k, v in body.items() if k != "properties"})
                ix.mappings.setdefault("properties", {}).update(body.get("properties") or {})
                return 200, {"acknowledged": True}, {}
            if op == "_mapping":
                return 200, {name: {"mappings": ix.mappings}}, {}
            if op == "_settings":
                return 200, {name: {"settings": _stringify(ix.settings)}}, {}
            if op == "_count":
                return 200, {"count": len(ix.visible)}, {}
            if op == "_search":
                return 200, self._search(ix, req.body or {}), {}
            if op == "_delete_by_query":
                return 200, self._delete_by_query(ix, req.body or {}), {}
        return 400, error_body(400, "fake_unsupported", f"{m} {p} is not emulated"), {}

    @staticmethod
    def _analyze(body: dict[str, Any]) -> dict[str, Any]:
        """`_analyze` with an analyzer name, or the Nori chain inline (told apart by its stop tags)."""
        from ensemble.text.analyzers import analyze

        if "analyzer" in body:
            name = body["analyzer"]
        elif (body.get("tokenizer") or {}).get("type") == "nori_tokenizer":
            stop = next(f["stoptags"] for f in body["filter"] if isinstance(f, dict))
            name = "nori" if "MAG" in stop else "nori_adv"
        else:
            raise ValueError(f"_analyze request not emulated: {body}")
        terms = analyze(body.get("text", ""), name)
        return {"tokens": [{"token": t, "position": i} for i, t in enumerate(terms)]}

    def _info(self) -> dict[str, Any]:
        return {
            "name": "fake",
            "cluster_name": "fake",
            "version": {"number": self.version, "build_flavor": "default", "lucene_version": "10.3.0"},
            "tagline": "You Know, for Search",
        }

    def _index_level(self, m: str, name: str, req: Request) -> tuple[int, Any, dict[str, str]]:
        if m == "HEAD":
            exists = name in self.indices or bool(self.alias_targets(name))
            return (200 if exists else 404), None, {}
        if m == "PUT":
            if name in self.indices:
                reason = f"index [{name}/abc] already exists"
                return 400, error_body(400, "resource_already_exists_exception", reason), {}
            settings, mappings = self._from_templates(name)
            body = req.body or {}
            settings.update(body.get("settings") or {})
            mappings.update(body.get("mappings") or {})
            self.indices[name] = Index(settings, mappings)
            return 200, {"acknowledged": True, "shards_acknowledged": True, "index": name}, {}
        if m == "DELETE":
            names = [n for n in self.indices if fnmatch.fnmatchcase(n, name)] if "*" in name else [name]
            gone = [n for n in names if self.indices.pop(n, None) is not None]
            if not gone and req.params.get("ignore_unavailable") != "true" and "*" not in name:
                return 404, error_body(404, "index_not_found_exception", f"no such index [{name}]"), {}
            return 200, {"acknowledged": True}, {}
        return 400, error_body(400, "fake_unsupported", f"{m} /{name}"), {}

    def _from_templates(self, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        best = None
        for body in self.templates.values():
            if any(fnmatch.fnmatchcase(name, pat) for pat in body.get("index_patterns", [])):
                if best is None or body.get("priority", 0) > best.get("priority", 0):
                    best = body
        t = copy.deepcopy((best or {}).get("template") or {})
        return t.get("settings") or {}, t.get("mappings") or {}

    def _aliases(self, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        actions = body.get("actions", [])
        for a in actions:  # validate all first: the real API applies all or nothing
            ((kind, spec),) = a.items()
            if spec["index"] not in self.indices:
                return (
                    404,
                    error_body(404, "index_not_found_exception", f"no such index [{spec['index']}]"),
                    {},
                )
            if kind == "remove" and spec["alias"] not in self.indices[spec["index"]].aliases:
                return (
                    404,
                    error_body(404, "aliases_not_found_exception", f"aliases [{spec['alias']}] missing"),
                    {},
                )
        for a in actions:
            ((kind, spec),) = a.items()
            target = self.indices[spec["index"]].aliases
            (target.add if kind == "add" else target.discard)(spec["alias"])
        return 200, {"acknowledged": True, "errors": False}, {}

    def _get_alias_by_name(self, alias: str) -> tuple[int, Any, dict[str, str]]:
        found = {n: {"aliases": {alias: {}}} for n in self.alias_targets(alias)}
        if not found:
            return 404, {"error": f"alias [{alias}] missing", "status": 404}, {}
        return 200, found, {}

    def _get_alias_by_index(self, pattern: str) -> dict[str, Any]:
        return {
            n: {"aliases": {a: {} for a in sorted(ix.aliases)}}
            for n, ix in self.indices.items()
            if fnmatch.fnmatchcase(n, pattern)
        }

    def _bulk(self, lines: list[dict[str, Any]]) -> dict[str, Any]:
        items = []
        i = 0
        while i < len(lines):
            ((op, meta),) = lines[i].items()
            i += 1
            ix = self.indices.get(meta["_index"])
            if op == "index":
                source = lines[i]
                i += 1
                if self._reject:
                    status, etype = self._reject.pop(0)
                    err = {"type": etype, "reason": f"rejected by the fake ({status})"}
                    items.append({op: {"_index": meta["_index"], "_id": meta["_id"], "status": status, "error": err}})
                    continue
                if ix is None:
                    items.append({op: {"_id": meta["_id"], "status": 404, "error": {"type": "index_not_found"}}})
                    continue
                status = 200 if meta["_id"] in ix.docs else 201
                ix.docs[meta["_id"]] = source
                items.append({op: {"_index": meta["_index"], "_id": meta["_id"], "status": status}})
            elif op == "delete":
                present = ix is not None and ix.docs.pop(meta["_id"], None) is not None
                items.append({op: {"_index": meta["_index"], "_id": meta["_id"], "status": 200 if present else 404}})
        return {
            "took": 1,
            "errors": any(next(iter(it.values()))["status"] >= 300 for it in items),
            "items": items,
        }

    def _search(self, ix: Index, body: dict[str, Any]) -> dict[str, Any]:
        if "aggs" in body or "aggregations" in body:
            return self._composite(ix, (body.get("aggs") or body.get("aggregations"))["docs"]["composite"])
        query = body.get("query", {"match_all": {}})
        scores = _Scorer(ix).scores(query)
        scored = [(score, pid, ix.visible[pid]) for pid, score in scores.items()]
        sort = body.get("sort") or ["_score"]
        if sort and sort[0] == "_score":
            scored.sort(key=lambda s: (-s[0], s[2]["doc_id"], s[2]["n"]))
        else:
            scored.sort(key=lambda s: (s[2]["doc_id"], s[2]["n"]))
            if "search_after" in body:
                after = tuple(body["search_after"])
                scored = [s for s in scored if (s[2]["doc_id"], s[2]["n"]) > after]
        hits = []
        for score, pid, src in scored[: body.get("size", 10)]:
            hit: dict[str, Any] = {"_index": "x", "_id": pid, "_score": score}
            wanted = body.get("_source", True)
            if wanted is not False:
                hit["_source"] = {k: v for k, v in src.items() if wanted is True or k in wanted}
            if sort and sort[0] == "_score":
                hit["sort"] = [score, src["doc_id"], src["n"]]
            else:
                hit["sort"] = [src["doc_id"], src["n"]]
            hits.append(hit)
        return {"took": 1, "timed_out": False, "hits": {"max_score": None, "hits": hits}}

    @staticmethod
    def _composite(ix: Index, comp: dict[str, Any]) -> dict[str, Any]:
        names = [next(iter(s)) for s in comp["sources"]]
        fields = [s[n]["terms"]["field"] for s, n in zip(comp["sources"], names, strict=True)]
        keys = sorted({tuple(src[f] for f in fields) for src in ix.visible.values()})
        if "after" in comp:
            after = tuple(comp["after"][n] for n in names)
            keys = [k for k in keys if k > after]
        page = keys[: comp["size"]]
        buckets = [{"key": dict(zip(names, k, strict=True)), "doc_count": 1} for k in page]
        out: dict[str, Any] = {"buckets": buckets}
        if page:
            out["after_key"] = buckets[-1]["key"]
        return {"took": 1, "hits": {"hits": []}, "aggregations": {"docs": out}}

    def _delete_by_query(self, ix: Index, body: dict[str, Any]) -> dict[str, Any]:
        doomed = list(_Scorer(ix).scores(body["query"]))
        for pid in doomed:
            ix.docs.pop(pid, None)
        return {"took": 1, "deleted": len(doomed), "failures": []}


# -- query evaluation ---------------------------------------------------------------------------------------

# The template's analyzers, played by the project's own Python analyzers (the embedded backend's).
_PY_ANALYZERS = {
    "ensemble_nori": "nori",
    "ensemble_nori_adv": "nori_adv",
    "standard": "standard",
    "english": "english",
    "russian": "russian",
}


def _norm_length(n: int) -> int:
    """A field length after Lucene's one-byte norm (SmallFloat.intToByte4, then back)."""
    if n < 24:
        return n
    v = n - 24
    shift = v.bit_length() - 4
    if shift < 0:
        return n
    return 24 + (((v >> shift) & 0x07 | 0x08) << shift)


class _Scorer:
    """Elasticsearch's query semantics as this project assumes them: `match` (or-ed terms, duplicates kept,
    no terms -> no match), `bool` (every `must` and `filter` required, at least `minimum_should_match` (an
    integer) of the `should` clauses, by default 1 when nothing else is required and 0 otherwise; the scores
    of matching `must` and `should` clauses summed, `filter` unscored), `terms` on keywords, `ids`, and BM25
    as Lucene computes it (one-byte length norms, N and avgdl over passages that have the field), times
    k1 + 1 as Elasticsearch reports `_score`."""

    def __init__(self, ix: Index) -> None:
        self.ix = ix
        sim = ((ix.settings.get("index") or {}).get("similarity") or {}).get("ensemble_bm25") or {}
        self.k1, self.b = float(sim.get("k1", 1.2)), float(sim.get("b", 0.75))

    def _analyzer(self, field: str) -> str:
        text = (self.ix.mappings.get("properties") or {}).get("text") or {}
        if field == "text.adv":
            text = (text.get("fields") or {}).get("adv") or {}
        return _PY_ANALYZERS[text.get("analyzer", "standard")]

    def _terms(self, field: str, text: str) -> list[str]:
        from ensemble.text.analyzers import analyze

        key = (field, text)
        if key not in self.ix.term_cache:
            self.ix.term_cache[key] = analyze(text, self._analyzer(field))
        return self.ix.term_cache[key]

    def _match(self, field: str, text: str) -> dict[str, float]:
        docs = {pid: self._terms(field, src["text"]) for pid, src in self.ix.visible.items()}
        docs = {pid: t for pid, t in docs.items() if t}  # a field without terms is absent for Lucene
        if not docs:
            return {}
        big_n = len(docs)
        avgdl = sum(len(t) for t in docs.values()) / big_n
        out: dict[str, float] = {}
        for term in self._terms(field, text):
            holders = {pid: t.count(term) for pid, t in docs.items() if term in t}
            idf = math.log(1 + (big_n - len(holders) + 0.5) / (len(holders) + 0.5))
            for pid, tf in holders.items():
                dl = _norm_length(len(docs[pid]))
                part = tf / (tf + self.k1 * (1 - self.b + self.b * dl / avgdl))
                out[pid] = out.get(pid, 0.0) + idf * (self.k1 + 1) * part
        return out

    def scores(self, query: dict[str, Any]) -> dict[str, float]:
        """passage id -> score of every visible passage the query matches."""
        if "match_all" in query:
            return dict.fromkeys(self.ix.visible, 1.0)
        if "terms" in query:
            ((fld, values),) = query["terms"].items()
            return {pid: 1.0 for pid, src in self.ix.visible.items() if src.get(fld) in values}
        if "match" in query:
            ((fld, text),) = query["match"].items()
            return self._match(fld, text)
        if "ids" in query:
            return dict.fromkeys((pid for pid in query["ids"]["values"] if pid in self.ix.visible), 1.0)
        if "bool" in query:
            b = query["bool"]
            must = [self.scores(q) for q in b.get("must", [])]
            required = must + [self.scores(q) for q in b.get("filter", [])]
            should = [self.scores(q) for q in b.get("should", [])]
            # Elasticsearch's default: at least one should clause when nothing else is required, else none
            msm = int(b.get("minimum_should_match", 0 if required else 1)) if should else 0
            candidates = set.intersection(*(set(m) for m in required)) if required else set(self.ix.visible)
            candidates = {pid for pid in candidates if sum(pid in c for c in should) >= msm}
            return {pid: sum(c.get(pid, 0.0) for c in must + should) for pid in candidates}
        raise ValueError(f"query not emulated: {query}")
