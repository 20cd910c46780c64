"""Every way the cluster can be wrong ends in one BackendError line that says what to do (CLI: exit 2)."""

from __future__ import annotations

import base64
import socket
import sys

import pytest

pytest.importorskip("elasticsearch", reason="the es extra is not installed: pip install 'expert-ensemble[es]'")

from es_fake import error_body, make_config  # noqa: E402

from ensemble.core.errors import BackendError, EnsembleError  # noqa: E402
from ensemble.retrieval import elastic  # noqa: E402
from ensemble.retrieval.elastic import ElasticRetriever  # noqa: E402
from ensemble.retrieval.elastic_errors import check_server_version  # noqa: E402


def open_error(cfg, **kw) -> BackendError:
    with pytest.raises(BackendError) as e:
        ElasticRetriever.open(cfg, **kw)
    msg = str(e.value)
    assert "\n" not in msg, "the CLI promises one line"
    return e.value


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_says_how_to_start_one(tmp_path, fake_es):
    cfg = make_config(tmp_path, f"http://127.0.0.1:{_closed_port()}", es={"max_retries": 0})
    err = open_error(cfg, create=True)
    assert "cannot reach Elasticsearch at http://127.0.0.1:" in err.message
    assert "docker compose -f docker-compose.es.yml up -d" in err.message


def test_missing_credentials_name_the_env_vars(fake_es, es_cfg):
    fake_es.require_auth = "ApiKey right-key"
    err = open_error(es_cfg, create=True)
    assert "authentication failed" in err.message
    assert "ENSEMBLE_ES_API_KEY" in err.message and "ENSEMBLE_ES_USERNAME" in err.message


def test_rejected_api_key_names_its_variable(fake_es, es_cfg, monkeypatch):
    fake_es.require_auth = "ApiKey right-key"
    monkeypatch.setenv("ENSEMBLE_ES_API_KEY", "wrong-key")
    err = open_error(es_cfg, create=True)
    assert "credentials from ENSEMBLE_ES_API_KEY were rejected" in err.message
    assert "wrong-key" not in err.message  # never echo a secret
    monkeypatch.setenv("ENSEMBLE_ES_API_KEY", "right-key")
    ElasticRetriever.open(es_cfg, create=True).close()


def test_basic_auth_from_env(fake_es, es_cfg, monkeypatch):
    fake_es.require_auth = "Basic " + base64.b64encode(b"elastic:s3cret").decode()
    monkeypatch.setenv("ENSEMBLE_ES_USERNAME", "elastic")
    monkeypatch.setenv("ENSEMBLE_ES_PASSWORD", "nope")
    err = open_error(es_cfg, create=True)
    assert "ENSEMBLE_ES_USERNAME/ENSEMBLE_ES_PASSWORD were rejected" in err.message
    assert "nope" not in err.message
    monkeypatch.setenv("ENSEMBLE_ES_PASSWORD", "s3cret")
    ElasticRetriever.open(es_cfg, create=True).close()


def test_half_set_basic_auth_is_refused_before_connecting(fake_es, es_cfg, monkeypatch):
    monkeypatch.setenv("ENSEMBLE_ES_USERNAME", "elastic")
    err = open_error(es_cfg, create=True)
    assert "ENSEMBLE_ES_PASSWORD is not set" in err.message
    assert fake_es.requests == []


def test_permission_denied_lists_privileges(fake_es, es_cfg):
    body = error_body(403, "security_exception", "action [indices:admin/index_template/put] is unauthorized")
    fake_es.fail("PUT", r"^/_index_template/", 403, body)
    err = open_error(es_cfg, create=True)
    assert "permission denied" in err.message and "manage_index_templates" in err.message


def test_8x_server_is_named_with_the_fix(fake_es, es_cfg):
    """What an 8.x server answers to the 9.x client's compatibility header."""
    body = error_body(
        400,
        "media_type_header_exception",
        "Invalid media-type value on headers [Accept, Content-Type]",
        caused_by={
            "type": "status_exception",
            "reason": "Accept version must be either version 8 or 7, but found 9. "
            "Accept=application/vnd.elasticsearch+json; compatible-with=9",
        },
    )
    fake_es.fail("GET", "^/$", 400, body)
    err = open_error(es_cfg, create=True)
    assert "Elasticsearch 8.x" in err.message
    assert "pip install 'elasticsearch>=8,<9'" in err.message and "upgrade the server" in err.message


def test_old_server_version_in_info_is_refused(fake_es, es_cfg):
    fake_es.version = "8.19.3"
    err = open_error(es_cfg, create=True)
    assert "runs Elasticsearch 8.19.3" in err.message
    with pytest.raises(BackendError, match="did not report an Elasticsearch version"):
        check_server_version({"tagline": "You Know, for Search"}, "http://x:9200")


def test_not_elasticsearch(fake_es, es_cfg):
    fake_es.product_header = False
    err = open_error(es_cfg, create=True)
    assert "is not Elasticsearch" in err.message


@pytest.mark.parametrize(
    "reason",
    [
        "Unknown tokenizer type [nori_tokenizer] for [ensemble_nori_tokenizer]",
        "failed to find global token filter under [nori_readingform]",
    ],
)
def test_missing_nori_plugin(fake_es, es_cfg, reason):
    fake_es.fail("PUT", r"^/_index_template/", 400, error_body(400, "illegal_argument_exception", reason))
    err = open_error(es_cfg, create=True)
    assert err.message.startswith("analysis-nori plugin missing")
    assert "elasticsearch-plugin install analysis-nori" in err.message


def test_rejected_stop_tag_explains_the_nori_versions(fake_es, es_cfg):
    reason = "No enum constant org.apache.lucene.analysis.ko.POS.Tag.E"
    fake_es.fail("PUT", r"^/_index_template/", 400, error_body(400, "illegal_argument_exception", reason))
    err = open_error(es_cfg, create=True)
    assert "rejects a part-of-speech stop tag" in err.message
    assert "Elasticsearch 9" in err.message and "E and J" in err.message


def test_other_api_errors_keep_the_server_reason(fake_es, es_cfg):
    build = ElasticRetriever.open(es_cfg, create=True)
    fake_es.fail("POST", r"/_search$", 400, error_body(400, "search_phase_execution_exception", "all shards failed"))
    with pytest.raises(BackendError, match=r"refused searching .*400 search_phase_execution_exception.*all shards"):
        build.search("x")
    build.close()


def test_missing_client_package(es_cfg, monkeypatch):
    monkeypatch.setitem(sys.modules, "elasticsearch", None)  # import now raises ImportError
    with pytest.raises(BackendError, match=r"pip install 'expert-ensemble\[es\]'"):
        ElasticRetriever.open(es_cfg, create=True)
    with pytest.raises(BackendError, match=r"pip install 'expert-ensemble\[es\]'"):
        elastic.analyze_remote(es_cfg, "x", "nori")


def test_backend_errors_reach_the_cli_edge_as_ensemble_errors():
    assert issubclass(BackendError, EnsembleError)


def test_timeout_and_tls_errors_say_what_to_set():
    from elastic_transport import ConnectionTimeout, TlsError

    from ensemble.retrieval.elastic_errors import translate

    slow = translate(ConnectionTimeout("read timed out"), url="http://h:9200", action="searching")
    assert "did not answer in time while searching" in slow.message and "request_timeout" in slow.message
    tls = translate(TlsError("certificate verify failed"), url="https://h:9200", action="connecting")
    assert "TLS error" in tls.message and "ca_certs" in tls.message


def test_tls_options_only_for_https(tmp_path):
    (tmp_path / "ca.pem").write_text("x")
    http = make_config(tmp_path, "http://127.0.0.1:9200", es={"ca_certs": "ca.pem"})
    assert "ca_certs" not in elastic.client_options(http, env={})[1]
    https = make_config(tmp_path, "https://es.example:9200", es={"ca_certs": "ca.pem", "verify_certs": False})
    url, opts, auth = elastic.client_options(https, env={"ENSEMBLE_ES_API_KEY": "k"})
    assert opts["ca_certs"] == str(tmp_path / "ca.pem")  # relative to ensemble.yaml
    assert opts["verify_certs"] is False and opts["api_key"] == "k" and auth == "ENSEMBLE_ES_API_KEY"
    assert opts["request_timeout"] == 30.0 and opts["max_retries"] == 2
