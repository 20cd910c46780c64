"""Reading corpus files: formats, ids, encodings, and errors that name the file, line and fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ensemble.config.project import CleanConfig, ProjectConfig
from ensemble.core.artifacts import sha256_text
from ensemble.core.errors import CorpusError
from ensemble.corpus import load
from ensemble.corpus.load import CorpusWarning, iter_sources, read_documents


def project(tmp_path: Path, *corpus: str, **kw) -> ProjectConfig:
    return ProjectConfig(corpus=list(corpus), **kw).with_base_dir(tmp_path, tmp_path / "ensemble.yaml")


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


def jsonl(*records: dict) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def test_jsonl_documents_with_title_and_source(tmp_path):
    write(
        tmp_path / "c.jsonl",
        jsonl({"id": "a", "text": "첫 글이다.", "title": "제목"}, {"id": 7, "text": "둘"}),
    )
    docs = list(read_documents(project(tmp_path, "c.jsonl")))
    assert [(d.id, d.text, d.title, d.source) for d in docs] == [
        ("a", "첫 글이다.", "제목", "c.jsonl:1"),
        ("7", "둘", None, "c.jsonl:2"),
    ]
    assert docs[0].content_hash == sha256_text("제목\n첫 글이다.")


def test_directory_is_read_recursively_sorted_with_path_ids(tmp_path):
    write(tmp_path / "corpus/b.txt", "나중 글")
    write(tmp_path / "corpus/a/notes.md", "# 메모\n\n본문")
    write(tmp_path / "corpus/a/skip.pdf", "not text")
    write(tmp_path / "corpus/.hidden/x.txt", "숨김")
    write(tmp_path / "corpus/more.jsonl", jsonl({"id": "j1", "text": "제이슨"}))
    cfg = project(tmp_path, "corpus")
    assert [p.relative_to(tmp_path).as_posix() for p in iter_sources(cfg)] == [
        "corpus/a/notes.md",
        "corpus/b.txt",
        "corpus/more.jsonl",
    ]
    docs = list(read_documents(cfg))
    assert [d.id for d in docs] == ["a/notes", "b", "j1"]
    assert docs[0].text == "# 메모\n\n본문"
    assert docs[0].source == "corpus/a/notes.md"


def test_a_file_named_directly_uses_its_stem_and_globs_work(tmp_path):
    write(tmp_path / "one.txt", "하나")
    write(tmp_path / "docs/x.md", "엑스")
    write(tmp_path / "docs/y.md", "와이")
    cfg = project(tmp_path, "one.txt", "docs/*.md", "docs/x.md")
    assert [d.id for d in read_documents(cfg)] == ["one", "x", "y"]  # docs/x.md listed twice, read once


def test_cleaning_is_applied_and_hash_follows_cleaned_text(tmp_path):
    write(tmp_path / "a.txt", "좋아요ㅋㅋㅋㅋ  메일 a@b.com\n\n\n\n끝")
    (doc,) = read_documents(project(tmp_path, "a.txt"))
    assert doc.text == "좋아요ㅋㅋ 메일 [이메일]\n\n끝"
    (raw,) = read_documents(project(tmp_path, "a.txt", clean=CleanConfig(mode="none")))
    assert raw.text == "좋아요ㅋㅋㅋㅋ  메일 a@b.com\n\n\n\n끝"
    assert raw.content_hash != doc.content_hash


def test_utf8_bom_is_tolerated(tmp_path):
    write(tmp_path / "a.txt", "\ufeff안녕".encode())
    write(tmp_path / "b.jsonl", b"\xef\xbb\xbf" + jsonl({"id": "b", "text": "하세요"}).encode())
    assert [d.text for d in read_documents(project(tmp_path, "a.txt", "b.jsonl"))] == ["안녕", "하세요"]


def test_non_utf8_file_is_an_error_naming_file_and_fix(tmp_path):
    write(tmp_path / "euckr.txt", "첫 줄\n".encode() + "한국어".encode("euc-kr"))
    with pytest.raises(CorpusError) as e:
        list(read_documents(project(tmp_path, "euckr.txt")))
    assert e.value.path.endswith("euckr.txt") and e.value.line == 2
    assert "UTF-8" in e.value.message and "--skip-bad" in e.value.message


def test_binary_file_is_an_error(tmp_path):
    write(tmp_path / "blob.txt", b"PK\x03\x04\x00\x00binary")
    with pytest.raises(CorpusError, match="binary") as e:
        list(read_documents(project(tmp_path, "blob.txt")))
    assert e.value.path.endswith("blob.txt")


def test_skip_bad_warns_and_keeps_the_good_files(tmp_path):
    write(tmp_path / "c/bad.txt", "깨진".encode("euc-kr"))
    write(tmp_path / "c/bin.md", b"\x00\x01")
    write(tmp_path / "c/good.txt", "멀쩡한 글")
    write(
        tmp_path / "c/lines.jsonl",
        jsonl({"id": "ok", "text": "좋다"}) + "{oops\n" + jsonl({"id": "ok2", "text": "또"}),
    )
    warned: list[str] = []
    docs = list(read_documents(project(tmp_path, "c"), skip_bad=True, warn=warned.append))
    assert [d.id for d in docs] == ["good", "ok", "ok2"]
    assert len(warned) == 3
    assert any("bad.txt" in w and "UTF-8" in w for w in warned)
    assert any("bin.md" in w and "binary" in w for w in warned)
    assert any("lines.jsonl:2" in w and "line skipped" in w for w in warned)
    assert not any("--skip-bad" in w for w in warned)  # the advice is for the error, not the warning


def test_skip_bad_without_warn_callback_uses_python_warnings(tmp_path):
    write(tmp_path / "bad.txt", b"\xff\xfe")
    write(tmp_path / "good.txt", "글")
    with pytest.warns(CorpusWarning, match="bad.txt"):
        docs = list(read_documents(project(tmp_path, "bad.txt", "good.txt"), skip_bad=True))
    assert [d.id for d in docs] == ["good"]


@pytest.mark.parametrize(
    ("line", "msg"),
    [
        ('{"id": "x", "text": }', "invalid JSON"),
        ('{"id": "x"}', 'missing field "text"'),
        ('{"text": "본문"}', 'missing field "id"'),
        ('["id", "text"]', "JSON object"),
        ('{"id": "x", "text": 3}', '"text" must be a string'),
        ('{"id": "", "text": "a"}', '"id" must be'),
    ],
)
def test_bad_jsonl_line_names_file_and_line(tmp_path, line, msg):
    write(tmp_path / "c.jsonl", jsonl({"id": "ok", "text": "좋다"}) + "\n" + line + "\n")
    with pytest.raises(CorpusError) as e:
        list(read_documents(project(tmp_path, "c.jsonl")))
    assert e.value.path.endswith("c.jsonl") and e.value.line == 3
    assert msg in e.value.message
    assert str(e.value).startswith(str(tmp_path / "c.jsonl") + ":3: ")


def test_missing_path_names_the_entry_and_the_path(tmp_path):
    write(tmp_path / "here.txt", "있다")
    with pytest.raises(CorpusError) as e:
        iter_sources(project(tmp_path, "here.txt", "nowhere/"))
    assert e.value.key == "corpus[1]"
    assert e.value.path == str(tmp_path / "ensemble.yaml")
    assert str(tmp_path / "nowhere") in e.value.message and "\n" not in str(e.value)


def test_missing_path_without_a_project_file_names_the_missing_path(tmp_path):
    cfg = ProjectConfig(corpus=["gone.txt"]).with_base_dir(tmp_path)
    with pytest.raises(CorpusError) as e:
        list(read_documents(cfg))
    assert e.value.path == str(tmp_path / "gone.txt")


def test_glob_matching_nothing_and_unsupported_file_are_errors(tmp_path):
    with pytest.raises(CorpusError, match="matches no"):
        iter_sources(project(tmp_path, "docs/*.txt"))
    write(tmp_path / "paper.pdf", "x")
    with pytest.raises(CorpusError, match=r"\.pdf") as e:
        iter_sources(project(tmp_path, "paper.pdf"))
    assert e.value.key == "corpus[0]"


def test_empty_corpus_is_an_error(tmp_path):
    with pytest.raises(CorpusError, match="corpus is empty"):
        list(read_documents(project(tmp_path)))
    write(tmp_path / "blank.txt", " \n\n\t\n")
    write(tmp_path / "b.jsonl", jsonl({"id": "b", "text": "ⓒ 연합뉴스 무단전재"}))
    warned: list[str] = []
    with pytest.raises(CorpusError, match="corpus is empty") as e:
        list(read_documents(project(tmp_path, "blank.txt", "b.jsonl"), warn=warned.append))
    assert e.value.key == "corpus"
    assert len(warned) == 2 and all("no text after cleaning" in w for w in warned)


def test_duplicate_ids_name_both_files(tmp_path):
    write(tmp_path / "a/x.txt", "하나")
    write(tmp_path / "b/x.txt", "둘")
    with pytest.raises(CorpusError, match="duplicate document id 'x'") as e:
        list(read_documents(project(tmp_path, "a", "b")))
    assert "a/x.txt" in str(e.value) and "b/x.txt" in str(e.value)
    write(tmp_path / "c.jsonl", jsonl({"id": "same", "text": "1"}, {"id": "same", "text": "2"}))
    for skip_bad in (False, True):  # a naming problem, not a bad file: never skipped silently
        with pytest.raises(CorpusError, match="c.jsonl:1"):
            list(read_documents(project(tmp_path, "c.jsonl"), skip_bad=skip_bad, warn=print))


def test_over_long_line_is_rejected_without_reading_it_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(load, "MAX_LINE_BYTES", 64)
    write(tmp_path / "ok.txt", ("짧은 줄\n" * 50))
    write(tmp_path / "long.txt", "가" * 100)
    assert [d.id for d in read_documents(project(tmp_path, "ok.txt"))] == ["ok"]
    with pytest.raises(CorpusError, match="line longer than") as e:
        list(read_documents(project(tmp_path, "long.txt")))
    assert e.value.line == 1


def test_documents_are_streamed(tmp_path):
    write(tmp_path / "c.jsonl", jsonl({"id": "a", "text": "하나"}) + "{broken\n")
    docs = read_documents(project(tmp_path, "c.jsonl"))
    assert next(docs).id == "a"  # the first document arrives before the bad line is read
    with pytest.raises(CorpusError):
        next(docs)
