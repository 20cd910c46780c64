"""KLUE-style corpus cleaning: one pure `str -> str` function per rule, composed by `clean_text`."""

from __future__ import annotations

import functools
import re

import regex

from ..config.project import CleanConfig

# Each pattern uses whichever engine scans it faster (measured): `regex` skips ahead to a literal such as
# '@' or '#', the stdlib `re` is faster on patterns that must try every position.

EMAIL_TOKEN = "[이메일]"
URL_TOKEN = "[웹주소]"

# Control (Cc), format (Cf: zero-width spaces, BOM, bidi marks, soft hyphen) and lone surrogate
# characters, plus U+FFFD left behind by a bad decode.
_BAD_CHARS = regex.compile(r"[^\n\P{Cc}]|[\p{Cf}\p{Cs}\uFFFD]")
_LINE_BREAKS = regex.compile(r"\r\n?|[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def strip_control_chars(text: str) -> str:
    """Drop control/format/invalid characters; line breaks become \\n, tabs become spaces."""
    if _printable(text) and "\ufffd" not in text:
        return text
    return _BAD_CHARS.sub("", _LINE_BREAKS.sub("\n", text).replace("\t", " "))


_EMAIL = regex.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")


def replace_emails(text: str) -> str:
    return _EMAIL.sub(EMAIL_TOKEN, text)


_TLDS = "com|net|org|edu|gov|io|ai|me|info|biz|kr|co\\.kr|or\\.kr|go\\.kr|ac\\.kr|jp|cn|uk|de|fr|ru"
_URL = regex.compile(
    r"(?:\b(?:https?|ftp)://|\bwww\.)[^\s<>\"'“”‘’]+"
    rf"|(?<![\w@.])[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:{_TLDS})\b(?:/[^\s<>\"'“”‘’]*)?",
    regex.IGNORECASE,
)
_URL_TRAILING = ".,;:!?)]}>'\"…"


def replace_urls(text: str) -> str:
    def sub(m: regex.Match[str]) -> str:
        url = m.group()
        stripped = url.rstrip(_URL_TRAILING)
        # Keep a closing bracket that belongs to the URL (wiki/Foo_(bar)), drop one that closes the prose.
        if stripped.count("(") > stripped.count(")") and url[len(stripped) :].startswith(")"):
            stripped += ")"
        return URL_TOKEN + url[len(stripped) :]

    return _URL.sub(sub, text)


_HASHTAG = regex.compile(r"[ \t]*(?<![\w&#])#(?=\w)[\w_]+")
_MENTION = regex.compile(r"[ \t]*(?<![\w.@])@(?=\w)[\w.]*\w")


def remove_hashtags(text: str) -> str:
    return _HASHTAG.sub("", text)


def remove_mentions(text: str) -> str:
    return _MENTION.sub("", text)


_COPYRIGHT = regex.compile(
    r"ⓒ|©|\(c\)\s*\d{4}|copyright|all rights reserved"
    r"|무단\s*전재|재\s*배포\s*금지|무단\s*복제|저작권자\s*[ⓒ©(]",
    regex.IGNORECASE,
)
_COPYRIGHT_LINE_MAX = 200


def remove_copyright(text: str) -> str:
    """Drop copyright notices: a short line holding one goes, a long line loses its tail from the marker."""
    out = []
    for line in text.split("\n"):
        m = _COPYRIGHT.search(line)
        if m is None:
            out.append(line)
        elif len(line.strip()) <= _COPYRIGHT_LINE_MAX:
            continue
        elif len(line) - m.start() <= _COPYRIGHT_LINE_MAX:
            out.append(line[: m.start()].rstrip(" <[(-=|/"))
        else:
            out.append(line)
    return "\n".join(out)


_CAPTION_WORDS = r"(?:사진|자료\s*사진|그래픽|영상|이미지|캡처|화면\s*캡처)"
_INLINE_CAPTION = re.compile(
    rf"[ \t]*(?:\(\s*{_CAPTION_WORDS}[^()\n]*\)"
    rf"|\[\s*{_CAPTION_WORDS}[^\[\]\n]*\]"
    rf"|<\s*{_CAPTION_WORDS}[^<>\n]*>)"
)
_CAPTION_HINTS = ("사진", "그래픽", "영상", "이미지", "캡처")  # every caption word contains one
_CAPTION_LINE = re.compile(r"^\s*[▲△▶▷]")


def remove_photo_captions(text: str) -> str:
    """Drop (사진=…), [사진: …], <사진 제공=…> and lines that are captions (▲ 행사 모습)."""
    if any(mark in text for mark in "▲△▶▷"):
        text = "\n".join(line for line in text.split("\n") if not _CAPTION_LINE.match(line))
    if any(word in text for word in _CAPTION_HINTS):
        text = _INLINE_CAPTION.sub("", text)
    return text


def collapse_repeats(text: str, max_repeat: int = 2) -> str:
    """ㅋㅋㅋㅋ → ㅋㅋ, !!!!! → !! ; digits and whitespace are left alone (1000000 is a number)."""
    if max_repeat < 1:
        raise ValueError("max_repeat must be at least 1")
    return _repeats(max_repeat).sub(lambda m: m.group(1) * max_repeat, text)


@functools.cache
def _repeats(max_repeat: int) -> re.Pattern[str]:
    return re.compile(r"([^\d\s])\1{" + str(max_repeat) + ",}")


_FULLWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}
_PUNCT_MAP = str.maketrans(
    {
        **_FULLWIDTH,
        0x3000: " ",  # ideographic space
        "“": '"',
        "”": '"',
        "„": '"',
        "‟": '"',
        "″": '"',
        "〝": '"',
        "〞": '"',
        "‘": "'",
        "’": "'",
        "‚": "'",
        "‛": "'",
        "′": "'",
        "‐": "-",
        "‑": "-",
        "‒": "-",
        "–": "-",
        "―": "—",
        "ㆍ": "·",
        "・": "·",
        "･": "·",
        "•": "·",
        "｡": ".",
        "～": "~",
    }
)
_PUNCT_RUNS = re.compile("[" + re.escape("".join(map(chr, _PUNCT_MAP))) + "]+")
_ELLIPSIS = regex.compile(r"\.{3,}|…+|⋯+|‥+|。{2,}")


def normalize_punctuation(text: str) -> str:
    """Full-width ASCII → ASCII, curly quotes → straight, dashes and middle dots unified, ... → …"""
    # Translating only the runs that need it: str.translate walks every char through a dict.
    return _ELLIPSIS.sub("…", _PUNCT_RUNS.sub(lambda m: m.group().translate(_PUNCT_MAP), text))


_HSPACE = re.compile(r"[^\S\n]+")
_BLANK_LINES = regex.compile(r"\n{3,}")


_LINE_END_SPACE = regex.compile(r" ?\n ?")


def normalize_whitespace(text: str) -> str:
    """One space between words, no spaces at line ends, paragraphs separated by exactly one blank line."""
    if _printable(text) and not any(s in text for s in ("  ", " \n", "\n ", "\n\n\n")) and text == text.strip():
        return text
    text = _HSPACE.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))
    return _BLANK_LINES.sub("\n\n", _LINE_END_SPACE.sub("\n", text)).strip()


def _printable(text: str) -> bool:
    """No whitespace but ' ' and '\\n', no control, format or unassigned characters (a C-speed check that
    lets most rules skip their scan)."""
    return text.replace("\n", "").isprintable()


def clean_text(text: str, cfg: CleanConfig | None = None) -> str:
    """Apply every rule `cfg` turns on, in an order where each one sees what it expects."""
    cfg = cfg or CleanConfig()
    if cfg.mode == "none":
        return text
    if cfg.control_chars:
        text = strip_control_chars(text)
    # Line rules first: copyright lines often carry an email or URL that would otherwise be replaced.
    if cfg.copyright:
        text = remove_copyright(text)
    if cfg.photo_captions:
        text = remove_photo_captions(text)
    if cfg.emails:
        text = replace_emails(text)
    if cfg.urls:
        text = replace_urls(text)
    if cfg.hashtags:
        text = remove_hashtags(text)
    if cfg.mentions:
        text = remove_mentions(text)
    # Punctuation before repeats, so "......" becomes one ellipsis rather than "..".
    if cfg.punctuation:
        text = normalize_punctuation(text)
    if cfg.repeats:
        text = collapse_repeats(text, cfg.max_repeat)
    if cfg.whitespace:
        text = normalize_whitespace(text)
    return text
