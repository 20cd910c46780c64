"""Elasticsearch client failures → one-line BackendErrors that say what to do."""

from __future__ import annotations

import re
from typing import Any

from ..core.errors import BackendError

INSTALL_HINT = "pip install 'expert-ensemble[es]'"
START_HINT = "start the local one with `docker compose -f docker-compose.es.yml up -d --build`"
REBUILD_HINT = "run `ensemble build-index --rebuild` to build a new index with the current template"
CREDENTIAL_VARS = "ENSEMBLE_ES_API_KEY, or ENSEMBLE_ES_USERNAME and ENSEMBLE_ES_PASSWORD"


def import_client() -> Any:
    """The `elasticsearch` package, or a BackendError saying how to install it."""
    try:
        import elasticsearch
    except ImportError:
        raise BackendError(
            f"index.backend is elasticsearch but the Elasticsearch client is not installed: {INSTALL_HINT}"
        ) from None
    return elasticsearch


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def _error_dict(body: Any) -> dict[str, Any]:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"]
    return {}


def error_type(exc: Any) -> str:
    err = _error_dict(getattr(exc, "body", None))
    return str(err.get("type") or getattr(exc, "message", "") or "")


def error_reason(exc: Any) -> str:
    """The most specific reason the server gave: the root cause, then what caused it."""
    body = getattr(exc, "body", None)
    err = _error_dict(body)
    if not err:
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return one_line(body["error"])
        return one_line(getattr(exc, "message", None) or exc)
    parts: list[str] = []
    roots = err.get("root_cause") or []
    for e in (roots[0] if roots and isinstance(roots[0], dict) else {}, err, err.get("caused_by") or {}):
        reason = e.get("reason") if isinstance(e, dict) else None
        if reason and reason not in parts:
            parts.append(str(reason))
    return one_line("; ".join(parts) or err.get("type") or exc)


def _all_text(exc: Any) -> str:
    return f"{error_type(exc)} {error_reason(exc)} {getattr(exc, 'body', '')}"


def version_error(server: str, client: str, url: str) -> BackendError:
    return BackendError(
        f"the server at {url} runs Elasticsearch {server}, but the installed client "
        f"(elasticsearch-py {client}) "
        f"speaks only to {client.split('.')[0]}.x servers: upgrade the server "
        f"(docker-compose.es.yml pins a 9.x release), or for an 8.x server install an 8.x client with "
        f"pip install 'elasticsearch>=8,<9' (the templates in index/ are written for Elasticsearch 9's Nori)"
    )


def _client_version() -> str:
    try:
        import elasticsearch

        return ".".join(str(p) for p in elasticsearch.__version__)
    except Exception:  # pragma: no cover - only used for a message
        return "?"


def check_server_version(info: Any, url: str) -> str:
    """The server's version number; a BackendError when the client cannot talk to its major version."""
    try:
        number = str(info["version"]["number"])
        major = int(number.split(".")[0])
    except (KeyError, TypeError, ValueError):
        raise BackendError(
            f"the server at {url} did not report an Elasticsearch version; is it Elasticsearch?"
        ) from None
    client = _client_version()
    client_major = int(client.split(".")[0]) if client[:1].isdigit() else major
    if major < client_major:
        raise version_error(number, client, url)
    return number


def translate(exc: BaseException, *, url: str, action: str, auth: str | None = None) -> BackendError:
    """A BackendError for a client exception raised while doing `action` against `url`.

    `auth` names the credentials in use ("ENSEMBLE_ES_API_KEY", "ENSEMBLE_ES_USERNAME/PASSWORD" or None)."""
    es = import_client()
    if isinstance(exc, es.ConnectionTimeout):
        return BackendError(
            f"Elasticsearch at {url} did not answer in time while {action}: "
            f"raise index.elasticsearch.request_timeout or check the server's load ({one_line(exc)})"
        )
    if isinstance(exc, es.SSLError):
        return BackendError(
            f"TLS error talking to Elasticsearch at {url}: {one_line(exc)}; set index.elasticsearch.ca_certs "
            f"to the cluster's CA certificate (or verify_certs: false for a local test server)"
        )
    if isinstance(exc, es.ConnectionError):
        return BackendError(
            f"cannot reach Elasticsearch at {url} ({one_line(exc)}): {START_HINT}, "
            f"or point index.elasticsearch.url / ENSEMBLE_ES_URL at your cluster"
        )
    if isinstance(exc, es.UnsupportedProductError):
        return BackendError(f"the server at {url} is not Elasticsearch (or is older than 7.14): {one_line(exc)}")
    if isinstance(exc, es.AuthenticationException):
        if auth:
            what = f"the credentials from {auth} were rejected; check them"
        else:
            what = f"the server requires credentials: set {CREDENTIAL_VARS}"
        return BackendError(f"authentication failed at {url} while {action}: {what}")
    if isinstance(exc, es.AuthorizationException):
        return BackendError(
            f"permission denied at {url} while {action}: {error_reason(exc)}; the user or API key needs "
            "the manage_index_templates cluster privilege and create_index, manage, read and write "
            "on the index"
        )
    if isinstance(exc, es.ApiError):
        text = _all_text(exc)
        if "media_type_header_exception" in text or "compatible-with" in text:
            m = re.search(r"either version (\d+)", text)
            server = f"{m.group(1)}.x" if m else "of another major version"
            return version_error(server, _client_version(), url)
        if re.search(r"nori", text, re.I) and re.search(
            r"unknown [\w ]{0,20}type|failed to find .{0,30}(tokenizer|filter|analyzer)",
            text,
            re.I,
        ):
            return BackendError(
                f"analysis-nori plugin missing on the cluster at {url}: {error_reason(exc)}; "
                f"install it on every node with `bin/elasticsearch-plugin install analysis-nori` and restart "
                f"(docker-compose.es.yml does this), or set index.analyzer to standard, english or russian"
            )
        if "POS.Tag" in text or re.search(r"no enum constant.*\bTag\b", text, re.I):
            return BackendError(
                f"the server's Nori rejects a part-of-speech stop tag ({error_reason(exc)}): "
                "the template is written for Elasticsearch 9 (Lucene 10 Nori: detailed tags EP, EF, EC, "
                "ETN, ETM, JKS … JC); Elasticsearch 9 rejects the coarse tags E and J of templates written "
                "for 7/8, so use the files in index/ (or upgrade the server to 9.x)"
            )
        status = getattr(exc, "status_code", None) or getattr(getattr(exc, "meta", None), "status", "?")
        return BackendError(
            f"Elasticsearch refused {action} at {url} ({status} {error_type(exc)}): {error_reason(exc)}"
        )
    return BackendError(f"Elasticsearch error while {action} at {url}: {type(exc).__name__}: {one_line(exc)}")
