"""KLUE-style corpus cleaning: one pure `str -> str` function per rule, composed by `clean_text`."""

from __future__ import annotations

import regex as re

from ..config.project import CleanConfig

EMAIL_TOKEN = "[이메일]"
URL_TOKEN = "[웹주소]"

# Control (Cc), format (Cf: zero-width spaces, BOM, bidi marks, soft hyphen) and lone surrogate
# characters, plus U+FFFD left behind by a bad decode.
_BAD_CHARS = re.compile(r"[^\n\P{Cc}]|[\p{Cf}\p{Cs}\uFFFD]")
_LINE_BREAKS = re.compile(r"\r\n?|[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def strip_control_chars(text: str) -> str:
    """Drop control/format/invalid characters; line breaks become \\n, tabs become spaces."""
    return _BAD_CHARS.sub("", _LINE_BREAKS.sub("\n", text).replace("\t", " "))


_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")


def replace_emails(text: str) -> str:
    return _EMAIL.sub(EMAIL_TOKEN, text)


_TLDS = "com|net|org|edu|gov|io|ai|me|info|biz|kr|co\\.kr|or\\.kr|go\\.kr|ac\\.kr|jp|cn|uk|de|fr|ru"
_URL = re.compile(
    r"(?:\b(?:https?|ftp)://|\bwww\.)[^\s<>\"'“”‘’]+"
    rf"|(?<![\w@.])[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:{_TLDS})\b(?:/[^\s<>\"'“”‘’]*)?",
    re.IGNORECASE,
)
_URL_TRAILING = ".,;:!?)]}>'\"…"


def replace_urls(text: str) -> str:
    def sub(m: re.Match[str]) -> str:
        url = m.group()
        stripped = url.rstrip(_URL_TRAILING)
        # Keep a closing bracket that belongs to the URL (wiki/Foo_(bar)), drop one that closes the prose.
        if stripped.count("(") > stripped.count(")") and url[len(stripped) :].startswith(")"):
            stripped += ")"
        return URL_TOKEN + url[len(stripped) :]

    return _URL.sub(sub, text)


_HASHTAG = re.compile(r"[ \t]*(?<![\w&#])#(?=\w)[\w_]+")
_MENTION = re.compile(r"[ \t]*(?<![\w.@])@(?=\w)[\w.]*\w")


def remove_hashtags(text: str) -> str:
    return _HASHTAG.sub("", text)


def remove_mentions(text: str) -> str:
    return _MENTION.sub("", text)


_COPYRIGHT = re.compile(
    r"ⓒ|©|\(c\)\s*\d{4}|copyright|all rights reserved"
    r"|무단\s*전재|재\s*배포\s*금지|무단\s*복제|저작권자\s*[ⓒ©(]",
    re.IGNORECASE,
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
_CAPTION_LINE = re.compile(r"^\s*[▲△▶▷]")


def remove_photo_captions(text: str) -> str:
    """Drop (사진=…), [사진: …], <사진 제공=…> and lines that are captions (▲ 행사 모습)."""
    lines = [line for line in text.split("\n") if not _CAPTION_LINE.match(line)]
    return _INLINE_CAPTION.sub("", "\n".join(lines))


def collapse_repeats(text: str, max_repeat: int = 2) -> str:
    """ㅋㅋㅋㅋ → ㅋㅋ, !!!!! → !! ; digits and whitespace are left alone (1000000 is a number)."""
    if max_repeat < 1:
        raise ValueError("max_repeat must be at least 1")
    pattern = re.compile(r"([^\d\s])\1{" + str(max_repeat) + ",}")
    return pattern.sub(lambda m: m.group(1) * max_repeat, text)


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
_ELLIPSIS = re.compile(r"\.{3,}|…+|⋯+|‥+|。{2,}")


def normalize_punctuation(text: str) -> str:
    """Full-width ASCII → ASCII, curly quotes → straight, dashes and middle dots unified, ... → …"""
    return _ELLIPSIS.sub("…", text.translate(_PUNCT_MAP))


_HSPACE = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_whitespace(text: str) -> str:
    """One space between words, no spaces at line ends, paragraphs separated by exactly one blank line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [_HSPACE.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


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
